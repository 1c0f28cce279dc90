"""rmm_mp/attest/_cbor.py loads_exact against cbor2 on drawn CBOR items (hypothesis, derandomized).

The items are drawn as trees and encoded here with drawn choices cbor2's encoder never makes:
heads wider than needed, indefinite-length strings (in chunks), arrays and maps. loads_exact
walks the heads itself before cbor2 builds the value, so the walk and cbor2 must agree on
where an item ends, and every refusal must be a TokenFormatError (the attest CLI turns that
into a usage error; anything else is a traceback).
"""

from __future__ import annotations

import io
import re
import struct
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.attest._cbor import MAX_DEPTH, loads_exact
from rmm_mp.attest.errors import TokenFormatError

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=300)

Tree = tuple[Any, ...]
"""("uint" | "nint", n), ("bytes", b), ("text", s), ("float", f), ("simple", 20..23),
("array", [trees]), ("map", [(key tree, value tree)]), ("tag", number, tree)."""

TAGS = (1000, 55799, 65000)
"""Tags cbor2 keeps as CBORTag (or, 55799, drops) whatever they hold: semantic tags such as 1
(epoch time) refuse most contents, which would make most drawn items refusals. loads_exact
accepts 55799 in front of the outermost item only, and there only with ``marker`` (a whole
token, not CBOR a byte string carries): anywhere else it draws a refusal."""


def trees() -> st.SearchStrategy[Tree]:
    leaves = st.one_of(
        st.tuples(st.sampled_from(["uint", "nint"]), st.integers(0, (1 << 64) - 1)),
        st.tuples(st.just("bytes"), st.binary(max_size=12)),
        st.tuples(st.just("text"), st.text(max_size=6)),
        st.tuples(st.just("float"), st.floats()),
        st.tuples(st.just("simple"), st.integers(20, 23)),
    )
    return st.recursive(leaves, lambda inner: st.one_of(
        st.tuples(st.just("array"), st.lists(inner, max_size=3)),
        st.tuples(st.just("map"), st.lists(st.tuples(inner, inner), max_size=3)),
        st.tuples(st.just("tag"), st.sampled_from(TAGS), inner),
    ), max_leaves=8)


def _head(major: int, arg: int, draw: st.DrawFn) -> bytes:
    """A head for `arg`: the shortest form or, drawn, any wider one that holds it."""
    shortest = 0 if arg < 24 else next(w for w in (1, 2, 4, 8) if arg < 1 << (8 * w))
    width = draw(st.sampled_from([w for w in (0, 1, 2, 4, 8) if w >= shortest]))
    if width == 0:
        return bytes([major << 5 | arg])
    return bytes([major << 5 | (24 + (1, 2, 4, 8).index(width))]) + arg.to_bytes(width, "big")


def _string(major: int, raw: bytes, draw: st.DrawFn) -> bytes:
    if not draw(st.booleans()):
        return _head(major, len(raw), draw) + raw
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=3)))
    if major == 3:      # a chunk of an indefinite text string is whole UTF-8 itself
        cuts = [c for c in cuts if c == len(raw) or (raw[c] & 0xC0) != 0x80]
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    return bytes([major << 5 | 31]) + b"".join(_head(major, len(c), draw) + c for c in chunks) + b"\xff"


def _container(major: int, count: int, body: bytes, draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return bytes([major << 5 | 31]) + body + b"\xff"
    return _head(major, count, draw) + body


def encode(tree: Tree, draw: st.DrawFn) -> bytes:
    """One of the encodings of `tree`, chosen by `draw`."""
    kind = tree[0]
    if kind in ("uint", "nint"):
        return _head(0 if kind == "uint" else 1, tree[1], draw)
    if kind == "bytes":
        return _string(2, tree[1], draw)
    if kind == "text":
        return _string(3, tree[1].encode(), draw)
    if kind == "float":
        return b"\xfb" + struct.pack(">d", tree[1])
    if kind == "simple":
        return bytes([0xE0 | tree[1]])
    if kind == "array":
        return _container(4, len(tree[1]), b"".join(encode(t, draw) for t in tree[1]), draw)
    if kind == "map":
        return _container(5, len(tree[1]), b"".join(encode(k, draw) + encode(v, draw) for k, v in tree[1]), draw)
    return _head(6, tree[1], draw) + encode(tree[2], draw)


def cbor2_item(data: bytes) -> tuple[Any, int]:
    """cbor2's value for the first item of `data` and the bytes it read."""
    fp = io.BytesIO(data)
    return cbor2.CBORDecoder(fp).decode(), fp.tell()


def _outcome(data: bytes, marker: bool) -> Any:
    """loads_exact's value for ``data``, or the TokenFormatError class for a refusal."""
    try:
        return loads_exact(data, "item", marker=marker)
    except TokenFormatError:
        return TokenFormatError


@FIXED
@given(tree=trees(), draw=st.data(), tail=st.binary(min_size=1, max_size=2), marker=st.booleans())
def test_an_accepted_item_is_what_cbor2_reads_and_every_refusal_is_a_token_format_error(
        tree: Tree, draw: st.DataObject, tail: bytes, marker: bool) -> None:
    """A drawn item in any encoding, decoded as a whole token (``marker``) or as CBOR a byte
    string carries, is either refused with a TokenFormatError or accepted as exactly cbor2's
    value, cbor2 having read all of it; an item that starts with tag 55799 is refused unless
    ``marker`` (in any head width); the same item with bytes after it, and every proper prefix
    of it, is a TokenFormatError."""
    data = encode(tree, draw.draw)
    got = _outcome(data, marker)
    if got is not TokenFormatError:
        assert marker or tree[:2] != ("tag", 55799), data.hex()
        expected, used = cbor2_item(data)
        assert used == len(data)
        assert repr(got) == repr(expected)
    if marker and tree[:2] == ("tag", 55799):
        # The marker changes nothing: the item behind it (after a 3, 5 or 9-byte head) reads
        # as it does alone, accepted or refused.
        inner = data[{25: 3, 26: 5, 27: 9}[data[0] & 31]:]
        assert repr(got) == repr(_outcome(inner, False)), data.hex()
    with pytest.raises(TokenFormatError):
        loads_exact(data + tail, "item", marker=marker)
    for cut in range(len(data)):
        with pytest.raises(TokenFormatError):
            loads_exact(data[:cut], "item", marker=marker)


@FIXED
@given(key=trees(), data=st.data())
def test_a_key_written_twice_in_two_encodings_is_refused(key: Tree, data: st.DataObject) -> None:
    """A map {K: 0, K: 1} whose two K are drawn encodings of one tree (a wider head, an
    indefinite-length string, array or map) is refused: cbor2 would keep one entry of the two.
    When K is acceptable as the key of a one-entry map, the refusal is the duplicate key (a key
    is tested where it stands, in a map: tag 55799 is accepted in front of a whole token only)."""
    first = encode(key, data.draw)
    second = encode(key, data.draw)
    with pytest.raises(TokenFormatError) as refused:
        loads_exact(b"\xa2" + first + b"\x00" + second + b"\x01", "map")
    try:
        loads_exact(b"\xa1" + first + b"\x00", "map")
        loads_exact(b"\xa1" + second + b"\x01", "map")
    except TokenFormatError:
        return
    assert "more than once" in str(refused.value)


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 65535, 65536])
@pytest.mark.parametrize("major", [2, 3, 4])
def test_lengths_at_the_head_boundaries_read_in_every_head_width(major: int, length: int) -> None:
    """A byte string, text string or array of 23/24, 255/256 or 65535/65536 elements (where the
    shortest head grows a byte) is read in its shortest head and every wider one, to the
    value cbor2 writes; one element (or, for none, one head byte) short is truncated CBOR."""
    value: Any = {2: b"\xab" * length, 3: "x" * length, 4: [0] * length}[major]
    shortest = cbor2.dumps(value)
    body = shortest[len(shortest) - length:]
    heads = [shortest[:len(shortest) - length]] + [
        bytes([major << 5 | (24 + i)]) + length.to_bytes(width, "big")
        for i, width in enumerate((1, 2, 4, 8)) if length < 1 << (8 * width)]
    for head in heads:
        assert loads_exact(head + body, "item") == value
        with pytest.raises(TokenFormatError, match="truncated CBOR"):
            loads_exact(head + body[:-1] if length else head[:-1], "item")


def test_tag_keys_holding_arrays_are_refused_without_a_traceback() -> None:
    """{1000([1]): 0, 1000([2]): 0}: cbor2's C CBORTag hash kept the id of a tag that failed to
    hash (a list inside), so the key check's hash of the first key made the next tag at that
    address raise RuntimeError out of loads_exact. Keys are now built as cbor2 builds map keys
    (arrays as tuples), and these distinct keys are accepted; the same keys twice are refused."""
    distinct = bytes.fromhex("a2" "d903e88101" "00" "d903e88102" "00")
    for _ in range(3):      # the old failure needed a freed tag's address to be reused
        assert loads_exact(distinct, "map") == {cbor2.CBORTag(1000, (1,)): 0, cbor2.CBORTag(1000, (2,)): 0}
    with pytest.raises(TokenFormatError, match="more than once"):
        loads_exact(bytes.fromhex("a2" "d903e88101" "00" "d903e8980101" "00"), "map")


@pytest.mark.parametrize("item, refused", [
    ("a2 f97e00 00 f97e00 01", True),                       # NaN twice (half precision)
    ("a2 fb7ff8000000000000 00 f97e00 01", True),           # NaN as a double and as a half
    ("a2 81f97e00 00 81f97e00 01", True),                   # [NaN] twice
    ("a2 d903e8f97e00 00 d903e8f97e00 01", True),           # tag 1000(NaN) twice
    ("a2 a101f97e00 00 a101f97e00 01", True),               # {1: NaN} twice
    ("a2 d9010281f97e00 00 d9010281f97e00 01", True),       # set 258([NaN]) twice (a frozenset)
    ("a2 d9a7f882f97e00f90000 00 d9a7f882f97e00f90000 01", True),   # complex 43000([NaN, 0.0]) twice
    ("a2 d9a7f882f93c00f90000 00 01 01", True),             # complex 1+0j and 1: cbor2 merges them
    ("a2 d9010281f97e00 00 81f97e00 01", False),            # set {NaN} and [NaN]: two keys
    ("a2 d9a7f882f97e00f90000 00 d9a7f882f90000f97e00 01", False),  # NaN+0j and 0+NaNj: two keys
    ("a2 f97e00 00 01 01", False),                          # NaN and 1: two keys
    ("a2 8101 00 d903e88101 01", False),                    # [1] and tag 1000([1]): two keys
    ("a2 81f97e00 00 d903e881f97e00 01", False),            # [NaN] and tag 1000([NaN]): two keys
])
def test_nan_keys_count_as_one_key(item: str, refused: bool) -> None:
    """NaN != NaN in Python, so a set lookup alone let a map hold the NaN key twice (also
    inside an array, tag, map, set (tag 258) or complex (tag 43000) key); every NaN is now one
    key, and tag, map and set keys still differ from array keys that hold the same values."""
    data = bytes.fromhex(item.replace(" ", ""))
    if refused:
        with pytest.raises(TokenFormatError, match="more than once"):
            loads_exact(data, "map")
    else:
        assert len(loads_exact(data, "map")) == 2


@pytest.mark.parametrize("item, refused", [
    ("d9010282 01 01", True),                               # 258([1, 1])
    ("d9010282 01 1801", True),                             # 258([1, non-minimal 1])
    ("d9010282 01 f5", True),                               # 258([1, true]): cbor2 keeps one
    ("d9010282 8101 9f01ff", True),                         # 258([[1], indefinite [1]])
    ("d9010282 f97e00 fb7ff8000000000000", True),           # 258([NaN, NaN]): cbor2 keeps both
    ("d901029f 6161 7f6161ff ff", True),                    # indefinite 258(["a", chunked "a"])
    ("a1 d9010282 01 01 00", True),                         # the same set as a map key
    ("81 d9010282 02 02", True),                            # inside an array
    ("d9010282 01 02", False),                              # 258([1, 2])
    ("d9010282 8101 d903e88101", False),                    # [1] and tag 1000([1]): two members
    ("d9010280", False),                                    # the empty set
])
def test_a_set_member_written_twice_is_refused(item: str, refused: bool) -> None:
    """A set (tag 258) with one member twice, in one or two encodings, was accepted: cbor2's
    frozenset drops the copy (or, for NaN, keeps both), so two verifiers could read two values
    from one payload. The set registration makes such a set invalid, as a map with a key twice
    is; sets of distinct members are still read."""
    data = bytes.fromhex(item.replace(" ", ""))
    if refused:
        with pytest.raises(TokenFormatError, match="more than once"):
            loads_exact(data, "item")
    else:
        assert loads_exact(data, "item") == cbor2.loads(data)


def test_a_refused_set_names_the_tag_the_member_and_its_byte() -> None:
    """The refusal of 258([7, 7]) names the set's tag and byte, the member's encoding and the byte
    of its second copy, and says what was expected."""
    with pytest.raises(TokenFormatError) as refused:
        loads_exact(bytes.fromhex("d901028207 07"), "payload")
    message = str(refused.value)
    assert message.startswith("payload: set (CBOR tag 258 at byte 0) has member 7 (CBOR 07) more than once "
                              "(at byte 5)")
    assert "expected distinct members" in message


@pytest.mark.parametrize("tag", ["d903e8", "d90102"], ids=["tag-1000", "set-258"])
@pytest.mark.parametrize("array", ["80", "8101"], ids=["empty", "one-member"])
def test_a_set_is_nested_as_deep_as_any_tagged_array(tag: str, array: str) -> None:
    """A tagged array inside MAX_DEPTH arrays puts the array one level too deep: refused, naming
    the array's byte, for a set (tag 258) as for any other tag. The set's own walk (which checks
    its members) skipped the depth check of the array itself, so 258([]) there was accepted and
    258([1]) was refused at its member's byte instead."""
    data = b"\x81" * MAX_DEPTH + bytes.fromhex(tag + array)
    with pytest.raises(TokenFormatError, match=f"nested deeper than {MAX_DEPTH} levels at byte {MAX_DEPTH + 3}$"):
        loads_exact(data, "item")


@pytest.mark.parametrize("item, value", [
    ("c2410a", 10),                                         # 2(h'0a')
    ("c243000001", 1),                                      # leading zeros
    ("c240", 0),                                            # 2(h''): zero
    ("c248ffffffffffffffff", (1 << 64) - 1),                # the largest major type 0 argument
    ("c35f4100410aff", -11),                                # chunked 3(h'000a')
    ("c34122", -35),                                        # 3(h'22'): COSE alg ES384
    ("a1c2410a00", 10),                                     # as a map key
])
def test_a_bignum_that_fits_a_cbor_integer_is_refused(item: str, value: int) -> None:
    """A bignum (tag 2 or 3) from -2^64 to 2^64-1 was read as a plain int by cbor2, so 2(h'0a')
    passed for claim label 10 where a CBOR-data-model decoder sees a tag; it is refused, naming
    the tag, its byte, the value and the major type expected instead."""
    with pytest.raises(TokenFormatError) as refused:
        loads_exact(bytes.fromhex(item), "item")
    tag = 2 if value >= 0 else 3
    assert f"CBOR tag {tag} " in str(refused.value)
    assert f"holds {value}, which fits a CBOR integer; expected it as major type {tag - 2}" in str(refused.value)


@pytest.mark.parametrize("item, value", [
    ("c249010000000000000000", 1 << 64),                    # one past the largest head argument
    ("c349010000000000000000", -1 - (1 << 64)),
    ("c25f4101480000000000000000ff", 1 << 64),              # chunked
])
def test_a_bignum_beyond_64_bits_is_read(item: str, value: int) -> None:
    """A bignum that no major type 0/1 head can hold is still a bignum, read as cbor2 reads it."""
    assert loads_exact(bytes.fromhex(item), "item") == value


@pytest.mark.parametrize("item, shown", [
    ("a2 19acd1 00 19acd1 01", "key 44241 (CBOR 19acd1) more than once (at byte 5)"),
    ("a2 0a 00 180a 01", "key 10 (CBOR 180a) more than once (at byte 3)"),
    ("a2 29 00 29 01", "key -10 (CBOR 29) more than once (at byte 3)"),
    ("a2 63616263 00 7f6161626263ff 01", "key 'abc' (CBOR 7f6161626263ff) more than once (at byte 6)"),
    ("a2 8101 00 8101 01", "key encoded 8101 more than once (at byte 4)"),
])
def test_a_repeated_key_is_named_by_its_value(item: str, shown: str) -> None:
    """The refusal of a map with a key twice named the key by its encoding only, in hex, so
    realm claim 10 read "key 0a" and the realm token's 44241 "key 19acd1" (the number 0x19acd1
    to a reader). An integer or text key is now named by its value, then the encoding of its
    second copy; any other key by its encoding, said to be one."""
    with pytest.raises(TokenFormatError) as refused:
        loads_exact(bytes.fromhex(item.replace(" ", "")), "payload")
    assert str(refused.value).startswith(f"payload: map has {shown}; a CBOR map must not repeat a key")


def test_a_long_repeated_text_key_is_elided() -> None:
    """A text key of 100 characters written twice is named by its first 40 characters and '...'
    (its encoding follows in full)."""
    key = cbor2.dumps("k" * 100)
    with pytest.raises(TokenFormatError) as refused:
        loads_exact(b"\xa2" + key + b"\x00" + key + b"\x01", "payload")
    assert f"map has key '{'k' * 40}...' (CBOR {key.hex()}) more than once" in str(refused.value)


@pytest.mark.parametrize("item, message", [
    ("c005", "payload: CBOR tag 0 (date/time string) at byte 0 holds 5; expected a text string in RFC 3339 "
             "date-time form"),
    ("c1c105", "payload: CBOR tag 1 (epoch-based date/time) at byte 0 holds 1(5); expected an integer or a float"),
    ("d82541aa", "payload: CBOR tag 37 (UUID) at byte 0 holds h'aa'; expected a 16-byte string"),
    ("d81e820100", "payload: CBOR tag 30 (rational number) at byte 0 holds [1, 0]; expected an array [numerator, "
                   "denominator] of two integers, the denominator positive"),
    ("d9010205", "payload: CBOR tag 258 (set) at byte 0 holds 5; expected an array of distinct members"),
    ("a2 0a 40 19acce 82 40 c0 05", "payload: CBOR tag 0 (date/time string) at byte 8 (item 1 of the value of map key "
                                    "44238) holds 5"),
    ("d2 84 40 a1 01 d86461 78 40 40", "payload: CBOR tag 100 (days since 1970-01-01) at byte 5 (the value of map "
                                        "key 1 of item 1 of the content of tag 18) holds \"x\"; expected an integer"),
    ("a1 c1 61 78 00", "payload: CBOR tag 1 (epoch-based date/time) at byte 1 (a map key) holds \"x\""),
    ("a1 01 d90102 81 c0 01", "payload: CBOR tag 0 (date/time string) at byte 6 (member 0 of the content of tag 258 "
                              "of the value of map key 1) holds 1"),
    ("c0 78 1b 1b5b324a" + "41" * 23, "holds \"\\u001b[2JAAAAAAAAAAAAAAAAAAAAAAA\"; expected a text string"),
], ids=["datetime", "nested-epoch", "uuid", "rational", "set", "claim", "in-cose-sign1", "map-key", "set-member",
        "escaped-text"])
def test_a_tag_cbor2_refuses_is_named_with_its_place_and_content(item: str, message: str) -> None:
    """A tag cbor2 turns into a value (a date, a UUID, a rational, a set...) holding what is not
    its content, on its own, inside another tag, as a claim's value, in a COSE_Sign1's header, as
    a map key or a set member: the TokenFormatError names the tag, its name, its byte, where it
    stands, what it holds in CBOR diagnostic notation (text escaped) and what it must hold. It
    came out in cbor2's words ('not valid CBOR (invalid datetime value: 5)', 'error decoding
    UUID value', 'invalid timestamp value datetime.datetime(...)'), naming none of them."""
    with pytest.raises(TokenFormatError) as info:
        loads_exact(bytes.fromhex(item.replace(" ", "")), "payload")
    assert message in str(info.value) and str(info.value).isprintable(), str(info.value)
    assert "not valid CBOR" not in str(info.value), str(info.value)


@pytest.mark.parametrize("item, message", [
    ("a2 0a 40 19acce a1 c1 61 78 00",
     "payload: CBOR tag 1 (epoch-based date/time) at byte 7 (a map key of the value of map key 44238) holds \"x\""),
    ("82 00 a1 82 01 c0 01 00",
     "payload: CBOR tag 0 (date/time string) at byte 5 (item 1 of a map key of item 1) holds 1"),
    ("a1 01 d90102 82 00 c0 01",
     "payload: CBOR tag 0 (date/time string) at byte 7 (member 1 of the content of tag 258 of the value of map key "
     "1) holds 1"),
    ("a1 a1 d82541aa 00 00",
     "payload: CBOR tag 37 (UUID) at byte 2 (a map key of a map key) holds h'aa'"),
], ids=["key-in-claim", "key-in-array", "set-member-in-claim", "key-of-a-key"])
def test_a_tag_refused_in_a_map_key_or_set_member_names_the_path_to_it(item: str, message: str) -> None:
    """A tag cbor2 refuses inside a map key or set member that is itself inside a claim, an
    array or another key: the place names the whole path to the key (a map key of the value of
    map key 44238), as it does for a tag in a value. Only "(a map key)" or "(a set member)"
    was named, so the reader could not tell which of a token's maps held the key. Found by
    review."""
    with pytest.raises(TokenFormatError) as info:
        loads_exact(bytes.fromhex(item.replace(" ", "")), "payload")
    assert message in str(info.value) and str(info.value).isprintable(), str(info.value)


NETWORK_PREFIX = "d90105 a1 44 0a000000 18 18"
"""261({h'0a000000': 24}): the IPv4 network 10.0.0.0/24 (RFC 9164), which cbor2 builds alone."""


@pytest.mark.parametrize("item, message", [
    ("a1" + NETWORK_PREFIX + "01", "payload: CBOR tag 261 (network address prefix) at byte 1 (a map key) holds "
                                   "{h'0a000000': 24}, which cbor2 builds on its own but not inside a map key or "
                                   "set member"),
    ("a1 81" + NETWORK_PREFIX + "01", "payload: CBOR tag 261 (network address prefix) at byte 2 (item 0 of a map "
                                      "key) holds {h'0a000000': 24}"),
    ("d90102 81" + NETWORK_PREFIX, "payload: CBOR tag 261 (network address prefix) at byte 4 (member 0 of the "
                                   "content of tag 258) holds {h'0a000000': 24}"),
], ids=["map-key", "in-map-key", "set-member"])
def test_a_network_prefix_in_a_map_key_or_set_member_is_refused_in_our_words(item: str, message: str) -> None:
    """A valid network address prefix (tag 261) as a map key, inside one, or as a set member:
    cbor2 builds it alone and as a map value, but inside a key it builds the prefix's map as a
    FrozenDict, which its tag 261 decoder refuses. It was refused in cbor2's words ("CBOR that
    cbor2 cannot build (CBORDecodeValueError: invalid ipnetwork value FrozenDict({b'\\n\\x00..."),
    which name neither the tag nor its byte and read as if the content were wrong. Found by
    review. The refusal now names the tag, its byte and place, and says why; a decoder that
    keeps tags would accept it (docs/attestation.md says so), and no CCA claim holds one."""
    assert str(loads_exact(bytes.fromhex(("a1 01" + NETWORK_PREFIX).replace(" ", "")), "payload")[1]) == "10.0.0.0/24"
    with pytest.raises(TokenFormatError) as info:
        loads_exact(bytes.fromhex(item.replace(" ", "")), "payload")
    assert message in str(info.value) and str(info.value).isprintable(), str(info.value)
    assert "FrozenDict" not in str(info.value) and "cbor2 cannot build" not in str(info.value), str(info.value)


SEMANTIC_TAGS = (0, 1, 4, 5, 30, 35, 37, 100, 258, 260, 261, 1004, 43000)
"""Tags cbor2 builds into values (all of _cbor_tags.TAG_CONTENT but 36, MIME, whose parser
accepts any text)."""


@FIXED
@given(tag=st.sampled_from(SEMANTIC_TAGS), content=trees(), draw=st.data(),
       wrap=st.sampled_from(["alone", "claim", "key", "item", "set member"]))
def test_every_tag_cbor2_refuses_is_named_at_its_byte(tag: int, content: Tree, draw: st.DataObject,
                                                       wrap: str) -> None:
    """A semantic tag around a drawn content, alone, as a claim's value, as a map key, an
    array item or a set member: accepted, or refused with a TokenFormatError in one printable
    line that either names a tag, at a byte where that tag's head stands, or is the walk's own
    refusal of a key or member written twice (the only one these trees can draw that names no
    tag). A refusal in cbor2's words ("CBOR that cbor2 cannot build (...)"), which names no tag,
    fails: the check used to pass any message that named no tag, so it could not fail."""
    tagged = ("tag", tag, content)
    tree = {"alone": tagged, "claim": ("map", [(("uint", 10), tagged)]), "key": ("map", [(tagged, ("uint", 0))]),
            "item": ("array", [("uint", 1), tagged]), "set member": ("tag", 258, ("array", [tagged]))}[wrap]
    data = encode(tree, draw.draw)
    try:
        loads_exact(data, "payload")
    except TokenFormatError as exc:
        message = str(exc)
        assert message.isprintable() and len(message) < 1000, message
        found = re.search(r"CBOR tag (\d+) \([^)]*\) at byte (\d+)", message)
        if found is None:
            assert "more than once" in message, (message, data.hex())
            return
        number, at = int(found[1]), int(found[2])
        assert data[at] >> 5 == 6 and _tag_number(data, at) == number, (message, data.hex())


def _tag_number(data: bytes, at: int) -> int:
    info = data[at] & 31
    if info < 24:
        return info
    size = 1 << (info - 24)
    return int.from_bytes(data[at + 1:at + 1 + size], "big")


@pytest.mark.parametrize("item, message", [
    ("62ff41", "payload: text string at byte 0 is not valid UTF-8 (invalid start byte: 0xff at byte 1)"),
    ("a1 0a 63 41c328", "payload: text string at byte 2 is not valid UTF-8 (invalid continuation byte: 0xc3 at "
                        "byte 4)"),
    ("a1 63 41ed a080 00", "payload: text string at byte 1 is not valid UTF-8"),        # a UTF-16 surrogate, as a key
    ("7f 61c3 61a9 ff", "payload: chunk at byte 1 of the indefinite-length text string at byte 0 is not valid UTF-8 "
                        "(unexpected end of data: 0xc3 at byte 2)"),
    ("82 00 7f 6161 6241ff ff", "payload: chunk at byte 5 of the indefinite-length text string at byte 2 is not "
                                "valid UTF-8 (invalid start byte: 0xff at byte 7)"),
], ids=["alone", "claim", "map-key", "split-chunks", "second-chunk"])
def test_text_that_is_not_utf8_is_named_at_its_byte(item: str, message: str) -> None:
    """A text string (major type 3) that is not UTF-8, alone, as a claim, as a map key, or
    split between two chunks of an indefinite-length string (each chunk must be UTF-8 on its
    own, RFC 8949 3.2.3): the TokenFormatError names the byte of the string's head (and of the
    chunk's), the bad byte and why. cbor2 said only 'error decoding unicode string' (found by
    fuzzing the vectors); the string was then named by its first content byte, one past its
    head, unlike every other item a message names (found by reading the offsets against the hex)."""
    with pytest.raises(TokenFormatError) as info:
        loads_exact(bytes.fromhex(item.replace(" ", "")), "payload")
    assert message in str(info.value) and "cbor2" not in str(info.value), str(info.value)


@pytest.mark.parametrize("item, byte", [("f814", 0), ("f800", 0), ("a2 f814 00 f4 01", 1), ("82 01 f81f", 2)])
def test_a_simple_value_below_32_in_two_bytes_is_malformed(item: str, byte: int) -> None:
    """f8 00 to f8 1f (a simple value below 32 in the two-byte form) is not well formed (RFC
    8949 3.3, appendix F.1), and it was accepted: cbor2 reads f8 14 as simple(20), a key distinct
    from false (f4), where a decoder that reads it as false sees one key twice. Refused, naming
    the value, its byte and its one-byte form; f8 20 (simple value 32) is still read."""
    with pytest.raises(TokenFormatError) as info:
        loads_exact(bytes.fromhex(item.replace(" ", "")), "payload")
    assert "malformed CBOR: simple value" in str(info.value) and f"at byte {byte} in two bytes" in str(info.value)
    assert loads_exact(bytes.fromhex("f820"), "payload") == cbor2.CBORSimpleValue(32)


@pytest.mark.parametrize("depth", [1000, 20_000])
def test_a_regular_expression_nested_too_deep_is_refused_not_a_traceback(depth: int) -> None:
    """A regular expression tag (35) holding parentheses nested 1,000 or 20,000 deep, alone or as
    a map key: cbor2 compiles it with Python's re module, which parses it recursively, and the
    RecursionError escaped loads_exact as a traceback (found by probing the tags cbor2 builds).
    It is now a TokenFormatError naming the tag and its byte."""
    pattern = "(" * depth + ")" * depth
    for item in (cbor2.CBORTag(35, pattern), {cbor2.CBORTag(35, pattern): 0}):
        with pytest.raises(TokenFormatError) as info:
            loads_exact(cbor2.dumps(item), "payload")
        assert "CBOR tag 35 (regular expression) at byte " in str(info.value), str(info.value)[:300]
        assert "... (" in str(info.value) and len(str(info.value)) < 600, str(info.value)[:300]


def test_a_mime_message_nested_deep_is_shown_without_a_traceback() -> None:
    """A MIME message tag (36) of multiparts nested 300 deep, which the email package parses
    but writes back recursively: the claims JSON and diagnostic notation name it as a MIME
    message instead of raising RecursionError (as_tag writes such values back as their tag);
    one nested 1,500 deep is refused as a TokenFormatError naming the tag."""
    from rmm_mp.attest._cbor import diag, to_json

    def nested(depth: int) -> str:
        return "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth))
    value = loads_exact(cbor2.dumps({1: cbor2.CBORTag(36, nested(300))}), "payload")[1]
    assert to_json(value) == "<a Message>" and diag(value) == "<a Message>"
    with pytest.raises(TokenFormatError, match=r"^payload: CBOR tag 36 \(MIME message\) at byte 0 holds "):
        loads_exact(cbor2.dumps(cbor2.CBORTag(36, nested(1500))), "payload")


def test_a_set_holding_a_mime_message_nested_deep_is_shown_without_a_traceback() -> None:
    """A set (tag 258) holding a MIME message of multiparts nested 300 deep and the integer 1:
    the claims JSON orders the set's members by their encoding, which cbor2 writes recursively
    for such a message; the RecursionError escaped to_json as a traceback. The message is now
    ordered by its notation."""
    from rmm_mp.attest._cbor import to_json
    nested = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(300))
    value = loads_exact(cbor2.dumps(cbor2.CBORTag(258, [cbor2.CBORTag(36, nested), 1])), "payload")
    assert to_json(value) == {"tag": 258, "value": [1, "<a Message>"]}


@pytest.mark.parametrize("item, message", [
    ("a2 d8246161 01 d8246161 02", "map has key encoded d8246161 more than once (at byte 6)"),
    ("a2 81d8246161 01 81d8246161 02", "map has key encoded 81d8246161 more than once (at byte 7)"),
    ("d90102 82 d8246161 d8246161", "set (CBOR tag 258 at byte 0) has member encoded d8246161 more than once "
                                    "(at byte 8)"),
], ids=["map-key", "in-array-key", "set-member"])
def test_a_mime_message_key_twice_is_refused(item: str, message: str) -> None:
    """A map with the MIME message key 36("a") twice (alone or inside an array key), and a set
    with that member twice: refused as any key or member twice is. cbor2 builds tag 36 as an
    email Message, which equals only itself, so the two were two keys to cbor2's dict where a
    tag-keeping decoder sees one key twice (found by probing each tag cbor2 builds as a map key
    twice). Two different messages are still two keys."""
    with pytest.raises(TokenFormatError) as info:
        loads_exact(bytes.fromhex(item.replace(" ", "")), "payload")
    assert message in str(info.value), str(info.value)
    assert len(loads_exact(bytes.fromhex("a2 d8246161 01 d8246162 02".replace(" ", "")), "payload")) == 2


@pytest.mark.parametrize("key, shown", [
    ("\x1b" * 10, '"' + "\\u001b" * 6 + "..."),
    ("ab" + "\x1b" * 10, '"ab' + "\\u001b" * 6 + "..."),
    ("\U0001F600" * 5, '"' + "\\ud83d\\ude00" * 3 + "..."),
], ids=["escapes", "escapes-after-two", "surrogate-pairs"])
def test_a_long_map_key_naming_a_place_is_cut_between_escapes(key: str, shown: str) -> None:
    """A tag cbor2 refuses as the value of a text map key whose notation is longer than 40
    characters and all escapes (ESC, or characters beyond U+FFFF as surrogate pairs): the place
    names the key by its start, cut between two escapes. It was cut at 40 characters whatever
    stood there, ending in '\\u0' or a lone backslash before the '...' (found by reading the
    places of the new tag messages for escaped keys)."""
    with pytest.raises(TokenFormatError) as info:
        loads_exact(cbor2.dumps({key: cbor2.CBORTag(0, 5)}), "payload")
    assert f"(the value of map key {shown}) holds 5" in str(info.value), str(info.value)


@pytest.mark.parametrize("item, expected, accepted", [
    (cbor2.CBORTag(43000, [1, 2]), "expected an array [real, imaginary] of two floats",
     cbor2.CBORTag(43000, [1.0, 2.0])),
    (cbor2.CBORTag(0, "2013-03-21t20:04:00z"), "its T and Z upper case", cbor2.CBORTag(0, "2013-03-21T20:04:00Z")),
    (cbor2.CBORTag(0, "2016-12-31T23:59:60Z"), "no leap second (:60)", cbor2.CBORTag(0, "2016-12-31T23:59:59Z")),
], ids=["complex-of-integers", "lower-case-t-z", "leap-second"])
def test_a_refused_tag_expects_what_cbor2_accepts(item: cbor2.CBORTag, expected: str,
                                                  accepted: cbor2.CBORTag) -> None:
    """A complex number (tag 43000) of two integers, and a date/time string (tag 0) with a lower
    case t and z or a leap second: cbor2 refuses each, and the message said what it holds was
    what the tag must hold ('holds [1, 2]; expected ... two numbers', 'expected a text string in
    RFC 3339 date-time form', which allows both). It now names what cbor2 reads (two floats; T
    and Z upper case, as RFC 4287 3.3 requires of RFC 8949's date/time; no :60), and the
    corrected item is read (found by feeding each tag edge values of its content)."""
    with pytest.raises(TokenFormatError) as info:
        loads_exact(cbor2.dumps(item), "payload")
    assert expected in str(info.value), str(info.value)
    loads_exact(cbor2.dumps(accepted), "payload")
