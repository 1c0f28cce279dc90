"""Strict decoding of one CBOR data item (RFC 8949), and the shapes of decoded values.

cbor2 accepts two things a verifier must not: bytes after the first data item (it stops
reading) and duplicate map keys (it keeps the last one). Either lets two verifiers see two
different claim sets in one signed payload, so every CBOR item this package reads from a
token goes through `loads_exact`: a walk over the item heads checks that the bytes are one
well-formed item, no deeper than MAX_DEPTH, with no map key twice, no set (tag 258) with a
member twice (cbor2's frozenset would drop the copy, as its dict drops a key), no value-sharing tag
(cbor2 would build a cyclic value from one), no self-described-CBOR tag inside another item
(cbor2 drops it, a tag-keeping decoder does not) and no bignum longer than MAX_BIGNUM_BYTES or
short enough to be a plain CBOR integer (cbor2 would build the same int from both); only then
does cbor2 build the values.

cbor2 5 decodes arrays to lists and maps to dicts; cbor2 6 gives tuples and frozendicts inside
tags. `is_array` / `is_map` accept both, so the checks do not depend on the cbor2 version.
`to_json` turns a decoded value into something `json.dumps` accepts (bytes as hex).
"""

from __future__ import annotations

import email.message
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

import cbor2

from rmm_mp.attest._cbor_tags import CBOR2_REFUSALS, as_tag, content_error, place_of
from rmm_mp.attest.errors import TokenFormatError

MAX_DEPTH: Final = 32
"""Nesting limit; a CCA claim set nests 4 deep (map, sw-components array, component map)."""

_TINY_ITEM: Final = 32
"""A first item shorter than this, with bytes after it, suggests the input is not CBOR (the
smallest CCA token is hundreds of bytes)."""

REFUSED_TAGS: Final = {28: "shareable value", 29: "shared-value reference",
                       25: "string reference", 256: "string-reference namespace"}
"""Tags cbor2 resolves into references to other values (http://cbor.schmorp.de/value-sharing,
http://cbor.schmorp.de/stringref). A token has no use for them; value sharing can make a value
contain itself, and a string reference makes cbor2 read a claim as a copy of another string
where a verifier without stringref support (t_cose, QCBOR) sees a tag: two claim sets from
one signed payload."""

BIGNUM_TAGS: Final = {2: "unsigned bignum", 3: "negative bignum"}
MAX_BIGNUM_BYTES: Final = 64
"""Longest bignum accepted. No CCA claim is a number anywhere near 512 bits, and Python
refuses to print an int of more than 4300 digits (about 1,800 bytes), so a bigger one would
turn the message that names it into a traceback."""

SELF_DESCRIBED_TAG: Final = 55799
"""Self-described CBOR (RFC 8949 3.4.6): a marker meant for the start of a file or stream. cbor2
drops it wherever it stands, so 55799(10) would read as claim label 10 where a decoder that
keeps tags sees a tag: it is accepted in front of the whole token only (``loads_exact``'s
``marker``), not around an item inside it, nor in front of CBOR a byte string carries."""

SET_TAG: Final = 258
"""A mathematical finite set, written as an array (https://github.com/input-output-hk/cbor-sets-spec).
Its registration makes a set like a map's keys: one with a member twice is well-formed but not
valid. cbor2 builds a frozenset and silently drops the second copy, while a verifier that keeps
the array sees both, so a member twice is refused as a map key twice is (RFC 8949 5.6)."""

_MAX_HEAD_ARGUMENT: Final = (1 << 64) - 1
"""The largest argument of a CBOR head: every integer from -2^64 to 2^64-1 has a major type
0 or 1 form. cbor2 builds a bignum (tag 2 or 3) as a plain int, so 2(h'0a') would read as
claim label 10, where a CBOR-data-model decoder (QCBOR, fxamacker/cbor) sees a tag and no
claim 10: two claim sets from one signed payload, as with duplicate keys. RFC 8949 3.4.3 makes
major type 0/1 the preferred form of such an integer, and CDDL's `int` does not match a
bignum (RFC 8610 3.8.1), so a bignum in that range is refused."""

_BREAK: Final = 0xFF


def is_array(value: object) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    """True for a decoded CBOR array (list with cbor2 5, possibly tuple with cbor2 6); cbor2's
    CBORSimpleValue is a tuple too, but no array."""
    return isinstance(value, (list, tuple)) and not isinstance(value, cbor2.CBORSimpleValue)


def is_map(value: object) -> TypeGuard[Mapping[Any, Any]]:
    """True for a decoded CBOR map (dict, or cbor2 6's frozendict)."""
    return isinstance(value, Mapping)


def to_json(value: Any) -> Any:
    """A JSON-friendly copy of a decoded CBOR value: bytes become hex strings, map keys
    strings (an integer or text key as itself, any other key in CBOR diagnostic notation,
    `diag`; `json_keys` when two would read the same), tags {"tag": n, "value": ...}, a set
    (tag 258, which cbor2 builds as a frozenset) {"tag": 258, "value": [...]} (members in
    `set_members`' order), a value cbor2 built from another tag it knows (a date, a UUID, a
    rational...) as that tag again (`_cbor_tags.as_tag`), simple values {"simple": n}
    (undefined is simple value 23), NaN and the infinities {"float": "nan" | "inf" | "-inf"}
    (json.dumps would write NaN or Infinity, which JSON has no token for); ints, text, bools,
    finite floats and None stay."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if is_map(value):
        return {name: to_json(v) for name, v in zip(json_keys(value), value.values())}
    if is_array(value):
        return [to_json(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"tag": SET_TAG, "value": [to_json(v) for v in set_members(value)]}
    if isinstance(value, cbor2.CBORTag):
        return {"tag": value.tag, "value": to_json(value.value)}
    if isinstance(value, cbor2.CBORSimpleValue):
        return {"simple": value.value}
    if value is cbor2.undefined:
        return {"simple": _UNDEFINED}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    tagged = as_tag(value)
    return to_json(tagged) if tagged is not None else f"<a {type(value).__name__}>"


def set_members(value: set[Any] | frozenset[Any]) -> list[Any]:
    """The members of a decoded set (tag 258) in one order whatever the token's: RFC 8949
    4.2.1's, bytewise by their deterministic encoding. cbor2 keeps no order, and a Python
    set's depends on the order its members were added in and, for text and bytes, on the
    process's hash seed, so the same token was shown differently from run to run."""
    def encoding(member: Any) -> bytes:
        try:
            return cbor2.dumps(member, canonical=True)
        except (cbor2.CBOREncodeError, TypeError, ValueError, RecursionError):
            # A value cbor2 built but cannot write back (a MIME message of multiparts nested
            # hundreds deep, which the email package writes recursively): its notation.
            return diag(member).encode()
    return sorted(value, key=encoding)


_UNDEFINED: Final = 23
"""The simple value undefined (RFC 8949 3.3)."""


def key_text(key: Any) -> str:
    """A decoded map key as a JSON object key or a name: an integer or text key as itself
    (claim 10 is "10"), any other in CBOR diagnostic notation (`diag`): str() of a key cbor2
    built would be Python's repr (b'\\x00', (0,), FrozenDict({...}))."""
    return str(key) if type(key) is int or isinstance(key, str) else diag(key)


def json_keys(value: Mapping[Any, Any]) -> list[str]:
    """The JSON object keys of a decoded map, in its order: each `key_text`, unless two keys
    would read the same there (the integer 1 and the text "1"; the array [0] and the text
    "[0]"), where one JSON key would keep one value and silently drop the other. Then every key
    of that map is written in CBOR diagnostic notation (`diag`: 1 and "\"1\"", text always
    quoted), which tells them apart; two keys even that cannot (two values of a type `diag`
    only names) are told apart by their position in the map, `#N` after the key."""
    names = [key_text(k) for k in value]
    if len(set(names)) == len(names):
        return names
    names = [diag(k) for k in value]
    if len(set(names)) == len(names):
        return names
    return [f"{name} #{i}" for i, name in enumerate(names)]


def label_text(key: Any) -> str:
    """A claim or field label as a name ("unknown claim 1234567", "unknown claim 'x'"): text
    quoted, any other non-integer label in CBOR diagnostic notation (`key_text`)."""
    return repr(key) if isinstance(key, str) else key_text(key)


def diag(value: Any) -> str:
    """`value` in CBOR diagnostic notation (RFC 8949 8, with RFC 8610 G's h'' for bytes): what a
    token's author can read, whatever decoder they use; a value cbor2 built from a tag it
    knows (a date, a UUID, a rational...) is written as that tag again (`_cbor_tags.as_tag`),
    one it cannot write back is named by its type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is cbor2.undefined:
        return "undefined"
    if type(value) is int:
        return str(value)
    if isinstance(value, float):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (bytes, bytearray)):
        return f"h'{bytes(value).hex()}'"
    if isinstance(value, cbor2.CBORSimpleValue):
        return f"simple({value.value})"
    if isinstance(value, cbor2.CBORTag):
        return f"{value.tag}({diag(value.value)})"
    if is_array(value):
        return "[" + ", ".join(diag(v) for v in value) + "]"
    if is_map(value):
        return "{" + ", ".join(f"{diag(k)}: {diag(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (set, frozenset)):
        return f"{SET_TAG}([" + ", ".join(diag(v) for v in set_members(value)) + "])"
    tagged = as_tag(value)
    return diag(tagged) if tagged is not None else f"<a {type(value).__name__}>"


def loads_exact(data: bytes, what: str, marker: bool = False) -> Any:
    """Decode `data` as exactly one well-formed CBOR item with no duplicate map keys.

    Args:
        data: the encoded item.
        what: the name of the part, for error messages ("realm token payload").
        marker: whether tag 55799 may stand in front of the item: `data` is a whole file
            or stream (the CCA token), not CBOR carried inside a byte string of another item
            (a COSE payload or header, an inner token), where the marker means nothing.

    Raises:
        TokenFormatError: truncated or malformed input, text that is not UTF-8, bytes after
            the item, nesting deeper than MAX_DEPTH, a map with the same key twice, a set (tag
            258) with the same member twice, a REFUSED_TAGS tag, tag 55799 anywhere but in
            front of a ``marker`` item, a bignum longer than MAX_BIGNUM_BYTES or whose value
            fits a major type 0/1 integer, or a tag cbor2 cannot turn into a value (a decimal
            fraction whose exponent overflows, a bad date, ...: `_cbor_tags.content_error`).
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TokenFormatError(f"{what}: expected CBOR bytes, got {type(data).__name__}")
    data = bytes(data)
    if not marker and data:
        major, arg, _ = _head(data, 0, what)
        if major == 6 and arg == SELF_DESCRIBED_TAG:
            raise TokenFormatError(f"{what}: CBOR tag 55799 (self-described CBOR) at byte 0 of CBOR carried "
                                   "inside another item; expected it only in front of the whole token "
                                   "(RFC 8949 3.4.6)")
    end = _skip(data, 0, what, 0)
    if end != len(data):
        # A file that is not CBOR at all often reads as a tiny first item (a text file's first
        # letter is a short string's head); a real token followed by a stray byte does not.
        hint = " (is this CBOR at all?)" if end < _TINY_ITEM else ""
        raise TokenFormatError(f"{what}: the first CBOR item ends at byte {end} but the input has "
                               f"{len(data)} bytes; expected exactly one CBOR item{hint}")
    return _build(data, what)


def _build(data: bytes, what: str) -> Any:
    """cbor2's value for `data` (already walked by `_skip`); what cbor2 cannot build is a
    TokenFormatError naming the tag it refused (`_cbor_tags.content_error`)."""
    try:
        return cbor2.loads(data)
    except CBOR2_REFUSALS as exc:
        raise TokenFormatError(_build_error(data, what, exc)) from None


def _build_error(data: bytes, what: str, exc: Exception) -> str:
    """Why cbor2 refused well-formed `data`: the tag it refused, where and holding what; cbor2's
    own words only if no tag alone is refused."""
    return content_error(data, what) or f"{what}: CBOR that cbor2 cannot build ({type(exc).__name__}: {exc})"


def _head(data: bytes, pos: int, what: str) -> tuple[int, int | None, int]:
    """(major type, argument or None for indefinite length / break, position after the head)."""
    if pos >= len(data):
        raise TokenFormatError(f"{what}: truncated CBOR: expected a data item at byte {pos}, "
                               f"input has {len(data)} bytes")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info <= 27:
        size = 1 << (info - 24)
        if pos + 1 + size > len(data):
            raise TokenFormatError(f"{what}: truncated CBOR: head at byte {pos} needs {size} more bytes")
        arg = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
        if major == 7 and info == 24 and arg < 32:
            # RFC 8949 3.3 and appendix F.1: not well formed. cbor2 reads f8 14 as simple(20),
            # distinct from false (f4), where a decoder that takes it for false sees a key twice.
            raise TokenFormatError(f"{what}: malformed CBOR: simple value {arg} at byte {pos} in two bytes (f8 "
                                   f"{arg:02x}); expected one below 32 in one byte ({0xE0 | arg:02x}), RFC 8949 3.3")
        return major, arg, pos + 1 + size
    if info == 31 and major in (2, 3, 4, 5, 7):
        return major, None, pos + 1
    raise TokenFormatError(f"{what}: malformed CBOR: byte {data[pos]:#04x} at {pos} uses reserved "
                           f"additional information {info}")


def _skip(data: bytes, pos: int, what: str, depth: int) -> int:
    """Position after the item that starts at `pos`, checking it on the way."""
    if depth > MAX_DEPTH:
        raise TokenFormatError(f"{what}: CBOR nested deeper than {MAX_DEPTH} levels at byte {pos}")
    start = pos
    major, arg, pos = _head(data, pos, what)
    if major in (0, 1):
        return pos
    if major in (2, 3):
        return _skip_string(data, start, pos, major, arg, what)
    if major == 4:
        return _skip_items(data, pos, arg, what, depth)
    if major == 5:
        return _skip_map(data, pos, arg, what, depth)
    if major == 6:
        if arg in REFUSED_TAGS:
            raise TokenFormatError(f"{what}: CBOR tag {arg} ({REFUSED_TAGS[arg]}) at byte {start} is not "
                                   "allowed in an attestation token")
        if arg == SELF_DESCRIBED_TAG and depth > 0:
            raise TokenFormatError(f"{what}: CBOR tag 55799 (self-described CBOR) at byte {start} inside "
                                   "another item; expected it only in front of the outermost item "
                                   "(RFC 8949 3.4.6)")
        if arg == SET_TAG and pos < len(data) and data[pos] >> 5 == 4:
            return _skip_set(data, start, pos, what, depth + 1)
        end = _skip(data, pos, what, depth + 1)
        if arg is not None and arg in BIGNUM_TAGS:     # a tag's head always has an argument
            _check_bignum(data, arg, start, pos, what)
        return end
    if arg is None:
        raise TokenFormatError(f"{what}: malformed CBOR: 'break' (0xff) at byte {start} outside an "
                               "indefinite-length item")
    return pos


def _check_bignum(data: bytes, tag: int, start: int, pos: int, what: str) -> None:
    """Refuse the bignum of tag `tag` at `start` (its byte string at `pos`) if it exceeds
    MAX_BIGNUM_BYTES or its value has a major type 0/1 form (_MAX_HEAD_ARGUMENT)."""
    major, size, content = _head(data, pos, what)
    if major != 2:      # its head's argument is a count or a value, not a length: no "N-byte number"
        raise TokenFormatError(f"{what}: CBOR tag {tag} ({BIGNUM_TAGS[tag]}) at byte {start} holds a CBOR item "
                               f"of major type {major}; expected a byte string (RFC 8949 3.4.3)")
    chunks = [(content, size)] if size is not None else []
    if size is None:                            # chunked: count the chunks' bytes, not their heads
        while data[content] != _BREAK:
            _, chunk, content = _head(data, content, what)
            chunks.append((content, chunk or 0))
            content += chunk or 0
    length = sum(n for _, n in chunks)
    if length > MAX_BIGNUM_BYTES:
        raise TokenFormatError(f"{what}: CBOR tag {tag} ({BIGNUM_TAGS[tag]}) at byte {start} holds a "
                               f"{length}-byte number; expected at most {MAX_BIGNUM_BYTES} bytes (no claim "
                               "of a CCA token is a number that large)")
    magnitude = int.from_bytes(b"".join(data[at:at + n] for at, n in chunks), "big")
    if magnitude <= _MAX_HEAD_ARGUMENT:
        value = magnitude if tag == 2 else -1 - magnitude
        raise TokenFormatError(f"{what}: CBOR tag {tag} ({BIGNUM_TAGS[tag]}) at byte {start} holds {value}, "
                               f"which fits a CBOR integer; expected it as major type {0 if tag == 2 else 1} "
                               "(RFC 8949 3.4.3): a claim label or value written as a bignum is a tag, not "
                               "an int, to other decoders")


def _skip_string(data: bytes, start: int, pos: int, major: int, arg: int | None, what: str,
                 chunk_of: int | None = None) -> int:
    """Position after the byte or text string whose head is at `start` and content at `pos`
    (`chunk_of`: the head of the indefinite-length string it is a chunk of)."""
    if arg is not None:
        if pos + arg > len(data):
            raise TokenFormatError(f"{what}: truncated CBOR: string at byte {pos} claims {arg} bytes, "
                                   f"{len(data) - pos} remain")
        if major == 3:
            _check_utf8(data, start, pos, arg, what, chunk_of)
        return pos + arg
    while pos < len(data) and data[pos] != _BREAK:
        chunk_start = pos
        chunk_major, size, pos = _head(data, pos, what)
        if chunk_major != major or size is None:
            raise TokenFormatError(f"{what}: malformed CBOR: indefinite string chunk before byte {pos} "
                                   "is not a definite string of the same type")
        pos = _skip_string(data, chunk_start, pos, major, size, what, chunk_of=start)
    return _expect_break(data, pos, what)


def _check_utf8(data: bytes, start: int, pos: int, length: int, what: str, chunk_of: int | None) -> None:
    """Refuse the text string (or chunk of one, `chunk_of`) whose head is at `start` and whose
    `length` bytes are at `pos` unless it is UTF-8 (RFC 8949 3.1, major type 3; 3.2.3: each
    chunk on its own). Checked in the walk, where the byte is known: cbor2 said only 'error
    decoding unicode string'. The string is named by its head's byte, as every other item a
    message names is (a tag, a map key): its first content byte read as the string's own."""
    try:
        data[pos:pos + length].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[pos + exc.start:pos + exc.end]
        where = (f"text string at byte {start}" if chunk_of is None else
                 f"chunk at byte {start} of the indefinite-length text string at byte {chunk_of}")
        raise TokenFormatError(f"{what}: {where} is not valid UTF-8 ({exc.reason}: "
                               f"{' '.join(f'{b:#04x}' for b in bad)} at byte {pos + exc.start}); expected UTF-8 text "
                               "(RFC 8949 3.1: major type 3 is UTF-8, each chunk of an indefinite-length "
                               "one on its own)") from None


def _skip_items(data: bytes, pos: int, count: int | None, what: str, depth: int) -> int:
    done = 0
    while (done < count) if count is not None else (pos < len(data) and data[pos] != _BREAK):
        pos = _skip(data, pos, what, depth + 1)
        done += 1
    return pos if count is not None else _expect_break(data, pos, what)


def _skip_map(data: bytes, pos: int, count: int | None, what: str, depth: int) -> int:
    return _skip_distinct(data, pos, count, what, depth, "map key", True, lambda item, at: (
        f"{what}: map has key {item} more than once (at byte {at}); a CBOR map must not repeat a key"))


def _skip_set(data: bytes, start: int, pos: int, what: str, depth: int) -> int:
    """Position after the set (tag 258) at `start`, whose array starts at `pos` at nesting level
    `depth`; no member twice."""
    if depth > MAX_DEPTH:       # as _skip checks the array of any other tag
        raise TokenFormatError(f"{what}: CBOR nested deeper than {MAX_DEPTH} levels at byte {pos}")
    major, count, pos = _head(data, pos, what)
    return _skip_distinct(data, pos, count, what, depth, "set member", False, lambda item, at: (
        f"{what}: set (CBOR tag 258 at byte {start}) has member {item} more than once (at byte {at}); "
        "expected distinct members, as a set's registration requires"))


def _skip_distinct(data: bytes, pos: int, count: int | None, what: str, depth: int, role: str,
                   with_values: bool, twice: Callable[[str, int], str]) -> int:
    """Position after the ``count`` items (None: up to a break) of a map (``with_values``: each
    key followed by its value) or a set's array at `pos`, refusing an item whose value cbor2
    builds equal to an earlier one's (``twice(the item as _shown_item words it, its byte
    offset)`` says so)."""
    seen: set[object] = set()
    done = 0
    while (done < count) if count is not None else (pos < len(data) and data[pos] != _BREAK):
        item_start = pos
        pos = _skip(data, pos, what, depth + 1)
        item = _key_identity(data, item_start, pos, what, role)
        if item in seen:
            raise TokenFormatError(twice(_shown_item(item, data[item_start:pos]), item_start))
        seen.add(item)
        if with_values:
            pos = _skip(data, pos, what, depth + 1)
        done += 1
    return pos if count is not None else _expect_break(data, pos, what)


_SHOWN_TEXT_MAX: Final = 40
"""Characters of a text key a duplicate-key message prints before it elides the rest."""


def _shown_item(item: object, encoded: bytes) -> str:
    """A repeated map key or set member for a message: its value when it is an integer or a
    text string (claim labels are), then its encoding. The encoding alone misleads: claim 44241
    is written 19acd1, which reads as the number 0x19acd1."""
    if type(item) is int:
        return f"{item} (CBOR {encoded.hex()})"
    if isinstance(item, str):
        text = item if len(item) <= _SHOWN_TEXT_MAX else item[:_SHOWN_TEXT_MAX] + "..."
        return f"{text!r} (CBOR {encoded.hex()})"
    return f"encoded {encoded.hex()}"


def _key_identity(data: bytes, start: int, end: int, what: str, role: str) -> object:
    """What cbor2 makes of the item from `start` to `end` in `data` as a map key (or set
    member, `role`: cbor2 builds those the same way, immutable), so that 1 and a non-minimal
    1, or [1] and an indefinite-length [1], count as one key.

    The key is built inside a one-entry map, where cbor2 builds keys immutable (arrays as
    tuples, maps as FrozenDicts): built alone, an array key is an unhashable list, and hashing
    a CBORTag around one leaves cbor2's C CBORTag hash guard holding the tag's id, so a later
    tag at that address fails to hash with a RuntimeError.
    """
    # The same decoding (and the same refusals) as a whole item: a key is built before the
    # item it belongs to, so an error missed here would escape as a traceback. The refusal
    # names the tag by its byte in `data`, not in the one-entry map; only the key and what
    # precedes it are known to be well formed yet, so the tag is looked for in the key alone,
    # and the path to the key (place_of) in what precedes it.
    encoded = data[start:end]
    try:
        (key,) = cbor2.loads(b"\xa1" + encoded + b"\xf6")
    except CBOR2_REFUSALS as exc:
        place = place_of(data, start, f"a {role}")
        raise TokenFormatError(content_error(encoded, what, start, place, as_key=True) or
                               f"{what}: {role} {encoded.hex()} at byte {start} ({place}): CBOR that cbor2 cannot "
                               f"build ({type(exc).__name__}: {exc})") from None
    return _comparable(key)


_NAN: Final = object()
"""Every NaN in a key. NaN != NaN, so two NaN keys (or [NaN] and [NaN]) would both pass a set
lookup and cbor2's dict would keep both, while a verifier that compares keys by value sees one
key twice. Every NaN, whatever its width or payload, counts as the same key: the strict reading."""


@dataclass(frozen=True)
class _TagKey:
    tag: int
    value: object


@dataclass(frozen=True)
class _MapKey:
    items: frozenset[tuple[object, object]]


@dataclass(frozen=True)
class _ComplexNaNKey:
    """A complex number (tag 43000) with a NaN part: it equals no other Python number, so it
    needs no merging with one, only its NaN parts made comparable."""
    real: object
    imag: object


def _comparable(key: object) -> object:
    """`key` with every NaN in it replaced by _NAN, so that equal keys compare equal. Tags and
    maps become their own types, so a tag or map key never equals an array key. What Python
    already treats as equal stays equal (1 and true, 0.0 and -0.0): cbor2 would build one dict
    entry from two such keys, so they must count as a duplicate too. A MIME message (tag 36),
    which Python compares by identity, is compared by its text."""
    if isinstance(key, float):
        return _NAN if math.isnan(key) else key
    if isinstance(key, complex):
        # cbor2 builds tag 43000 as a complex; one without a NaN part stays itself (1+0j
        # equals 1, and cbor2's dict merges the two).
        if math.isnan(key.real) or math.isnan(key.imag):
            return _ComplexNaNKey(_comparable(key.real), _comparable(key.imag))
        return key
    if isinstance(key, (set, frozenset)):
        # cbor2 builds tag 258 (a set) as a frozenset; a frozenset never equals an array's tuple.
        return frozenset(_comparable(item) for item in key)
    if isinstance(key, cbor2.CBORTag):
        return _TagKey(key.tag, _comparable(key.value))
    if is_map(key):
        return _MapKey(frozenset((_comparable(k), _comparable(v)) for k, v in key.items()))
    if is_array(key):
        return tuple(_comparable(item) for item in key)
    if isinstance(key, email.message.Message):
        # cbor2 builds tag 36 (a MIME message) as an email Message, which equals only itself:
        # 36("a") twice was two keys to cbor2's dict, where a tag-keeping decoder sees one key
        # twice. It is compared as the tag cbor2 writes it back as (as_tag), so two texts the
        # email package reads as one message count as one key, as two dates of one instant do.
        # One nested too deep to write back (hundreds of multiparts) stays itself.
        tagged = as_tag(key)
        return _TagKey(tagged.tag, tagged.value) if tagged is not None else key
    return key


def _expect_break(data: bytes, pos: int, what: str) -> int:
    if pos >= len(data):
        raise TokenFormatError(f"{what}: truncated CBOR: indefinite-length item has no 'break' (0xff)")
    return pos + 1
