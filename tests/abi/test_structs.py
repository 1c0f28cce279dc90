"""The structure layouts of rmm_mp/abi/structs.py: what pack, unpack, values and get produce.

Layout compiles one struct per set of fields it packs and one for the whole structure it
unpacks; these tests check them against a reference written here from the field list alone
(each field put at its offset with its own format, every other byte zero), for every layout and
random field values and subsets (hypothesis, derandomized).
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.abi.structs import (
    RMI_REALM_PARAMS, RMI_REC_ENTER, RMI_REC_ENTER_RAW, RMI_REC_EXIT, RMI_REC_EXIT_RAW, RMI_REC_PARAMS, RSI_HOST_CALL,
    RSI_HOST_CALL_RAW, RSI_REALM_CONFIG, Field, Layout, LayoutError,
)

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=60)
LAYOUTS = [RMI_REALM_PARAMS, RMI_REC_PARAMS, RMI_REC_ENTER, RMI_REC_EXIT, RSI_REALM_CONFIG, RSI_HOST_CALL]
BITS = {"B": 8, "H": 16, "I": 32, "Q": 64}


def value_of(fld: Field) -> st.SearchStrategy[object]:
    """A value for one field: bytes for 's' fields, signed ints for 'q', a sequence (possibly
    shorter than the array) for arrays."""
    if fld.fmt.endswith("s"):
        return st.binary(max_size=int(fld.fmt[:-1]))
    scalar = (st.integers(-(1 << 63), (1 << 63) - 1) if fld.fmt == "q"
              else st.integers(0, (1 << BITS[fld.fmt]) - 1))
    if fld.count > 1:
        return st.lists(scalar, max_size=fld.count).map(tuple)
    return scalar


@st.composite
def field_values(draw: st.DrawFn, layout: Layout) -> dict[str, object]:
    names = draw(st.lists(st.sampled_from(sorted(layout.fields)), unique=True))
    return {name: draw(value_of(layout.fields[name])) for name in names}


def reference(layout: Layout, values: dict[str, object]) -> bytes:
    """The structure built field by field from the field list."""
    data = bytearray(layout.size)
    for name, value in values.items():
        fld = layout.fields[name]
        fmt = "<" + (f"{fld.count}{fld.fmt}" if fld.count > 1 else fld.fmt)
        if fld.count > 1:
            items = list(value) + [0] * (fld.count - len(value))      # type: ignore[arg-type]
            struct.pack_into(fmt, data, fld.offset, *items)
        else:
            struct.pack_into(fmt, data, fld.offset, value)
    return bytes(data)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
@FIXED
@given(data=st.data())
def test_pack_matches_the_field_by_field_reference(layout: Layout, data: st.DataObject) -> None:
    """pack(**values) of any subset of fields, in any order, with short arrays: exactly the
    reference bytes (zeros everywhere else), as a bytearray of the structure's size; pack_into
    at an offset writes the same bytes there."""
    values = data.draw(field_values(layout))
    packed = layout.pack(**values)
    assert isinstance(packed, bytearray) and len(packed) == layout.size
    assert bytes(packed) == reference(layout, values)
    buf = bytearray(layout.size + 24)
    for name, value in values.items():
        layout.pack_into(buf, 24, name, value)
    assert bytes(buf[24:]) == reference(layout, values)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
@FIXED
@given(data=st.data())
def test_unpack_and_values_read_what_get_reads(layout: Layout, data: st.DataObject) -> None:
    """unpack(buf, base) is {name: get(buf, name, base)} for every field (tuples for arrays,
    bytes for byte strings), over seeded random bytes; values() is the same values flat, in offset order."""
    base = data.draw(st.integers(0, 64))
    raw = random.Random(data.draw(st.integers(0, 2**32))).randbytes(base + layout.size)
    unpacked = layout.unpack(raw, base)
    assert unpacked == {name: layout.get(raw, name, base) for name in layout.fields}
    flat: list[object] = []
    for fld in sorted(layout.fields.values(), key=lambda f: f.offset):
        got = unpacked[fld.name]
        flat.extend(got if fld.count > 1 else [got])    # type: ignore[arg-type]
    assert list(layout.values(raw, base)) == flat


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
@FIXED
@given(data=st.data())
def test_pack_values_with_whole_arrays_matches_the_reference(layout: Layout, data: st.DataObject) -> None:
    """pack_values(dict) of any subset of fields with every array at its full length (the
    one-call path a REC exit takes) and the same with the arrays cut short (the padding path):
    the reference bytes, as pack(**values) and pack_bytes (as bytes) give them, and as
    pack_values_into writes them over whatever a buffer held (pad bytes zeroed, nothing outside
    the structure touched); an integer one past a full array field's range is refused naming
    that field, by all three."""
    values = data.draw(field_values(layout))
    whole = {name: tuple(value) + (0,) * (layout.fields[name].count - len(value))    # type: ignore[arg-type]
             if layout.fields[name].count > 1 else value for name, value in values.items()}
    for chosen in (whole, values):
        packed = layout.pack_values(chosen)
        assert isinstance(packed, bytearray) and bytes(packed) == reference(layout, chosen)
        assert packed == layout.pack(**chosen)
        raw = layout.pack_bytes(chosen)
        assert type(raw) is bytes and raw == packed
        buf = bytearray(b"\xa5" * (layout.size + 24))
        layout.pack_values_into(memoryview(buf), 8, chosen)
        assert buf[8:8 + layout.size] == packed and buf[:8] + buf[8 + layout.size:] == b"\xa5" * 24
    arrays = sorted(name for name in whole if layout.fields[name].count > 1 and layout.fields[name].fmt != "q")
    if arrays:
        name = data.draw(st.sampled_from(arrays))
        fld = layout.fields[name]
        for pack in (layout.pack_values, layout.pack_bytes,
                     lambda values: layout.pack_values_into(bytearray(layout.size), 0, values)):
            with pytest.raises(LayoutError, match=rf"^{layout.name}\.{name}\b"):
                pack({**whole, name: (0,) * (fld.count - 1) + (1 << BITS[fld.fmt],)})


def test_pack_refuses_what_it_cannot_place() -> None:
    """A field the layout does not have is a KeyError; an array longer than the field is a
    struct.error; neither is silently dropped."""
    with pytest.raises(KeyError):
        RMI_REC_EXIT.pack(exit_reason=1, no_such_field=2)
    with pytest.raises(struct.error):
        RMI_REC_EXIT.pack(gprs=(0,) * 32)
    with pytest.raises(struct.error):
        RMI_REC_EXIT.pack_into(bytearray(RMI_REC_EXIT.size), 0, "gicv3_lrs", (1,) * 17)


def test_unpack_needs_only_the_bytes_up_to_the_last_field() -> None:
    """The whole-structure unpack ends at the last field, as reading field by field did: an
    RsiHostCall (imm, gprs) unpacks from its 256 bytes; fewer is an error."""
    raw = struct.pack("<H6x31Q", 7, *range(31))
    assert RSI_HOST_CALL.unpack(raw) == {"imm": 7, "gprs": tuple(range(31))}
    with pytest.raises(struct.error):
        RSI_HOST_CALL.unpack(raw[:-1])


def out_of_range(fld: Field) -> st.SearchStrategy[object]:
    """A value one field cannot hold: an integer just past either end of its range (anywhere
    in an array), or a byte string longer than the field."""
    if fld.fmt.endswith("s"):
        return st.integers(1, 8).map(lambda extra: b"\x01" * (fld.size + extra))
    low, high = ((-(1 << 63), (1 << 63) - 1) if fld.fmt == "q" else (0, (1 << BITS[fld.fmt]) - 1))
    bad = st.one_of(st.integers(high + 1, high + (1 << 70)), st.integers(low - (1 << 70), low - 1))
    if fld.count > 1:
        return st.tuples(st.integers(0, fld.count - 1), bad).map(lambda at: (0,) * at[0] + (at[1],))
    return bad


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.name)
@FIXED
@given(data=st.data())
def test_a_value_that_does_not_fit_is_refused_naming_its_field(layout: Layout, data: st.DataObject) -> None:
    """pack(**values) and pack_into with one field out of range (an integer just past its
    width or signedness, a byte string longer than the field, which struct.pack would cut short
    without a word) and the other fields valid: a LayoutError (a struct.error) that names the
    structure and the field, never a structure holding something else."""
    good = data.draw(field_values(layout))
    name = data.draw(st.sampled_from(sorted(layout.fields)))
    bad = data.draw(out_of_range(layout.fields[name]))
    with pytest.raises(LayoutError, match=rf"^{layout.name}\.{name}\b"):
        layout.pack(**{**good, name: bad})
    with pytest.raises(LayoutError, match=rf"^{layout.name}\.{name}\b"):
        layout.pack_into(bytearray(layout.size), 0, name, bad)
    assert issubclass(LayoutError, struct.error)


def test_the_refusal_says_what_was_expected() -> None:
    """The message gives the value and the field's range, or the byte string's length and the
    field's size."""
    with pytest.raises(LayoutError, match=r"^RmiRealmParams\.s2sz = 256: expected an integer in 0x0\.\.0xff"):
        RMI_REALM_PARAMS.pack(flags=0, s2sz=256)
    with pytest.raises(LayoutError, match=r"^RmiRecParams\.gprs = \(1, -1\): expected at most 8 integers in "
                                          r"0x0\.\.0xffffffffffffffff"):
        RMI_REC_PARAMS.pack(gprs=(1, -1))
    with pytest.raises(LayoutError, match=r"^RsiRealmConfig\.rpv is 65 bytes; expected at most 64$"):
        RSI_REALM_CONFIG.pack(ipa_width=40, rpv=bytes(65))
    with pytest.raises(LayoutError, match=r"^RmiRealmParams\.rpv = 'abc': expected bytes"):
        RMI_REALM_PARAMS.pack(rpv="abc")


def test_a_byte_string_whose_length_cannot_be_taken_is_refused_naming_its_field() -> None:
    """A byte-string field given a value whose len() fails with something other than TypeError
    (a range too long for a C ssize_t: OverflowError) is refused as any other non-bytes value
    is, a LayoutError naming the field and what was expected, by pack and pack_bytes alike, and
    the second time too (the cached plan). pack_bytes' one-call packer takes len() of byte
    strings too since it serves them; it let that OverflowError out instead of falling back to
    the loop that names the field."""
    huge = range(1 << 70)
    for _ in range(2):
        with pytest.raises(LayoutError, match=r"^RmiRealmParams\.rpv = range\(0, \d+\): expected bytes, at most 64"):
            RMI_REALM_PARAMS.pack(rpv=huge)
        with pytest.raises(LayoutError, match=r"^RsiRealmConfig\.rpv = range\(0, \d+\): expected bytes, at most 64"):
            RSI_REALM_CONFIG.pack_bytes({"ipa_width": 40, "rpv": huge})


@pytest.mark.parametrize("layout, raw", [(RMI_REC_ENTER, RMI_REC_ENTER_RAW), (RMI_REC_EXIT, RMI_REC_EXIT_RAW),
                                         (RSI_HOST_CALL, RSI_HOST_CALL_RAW)])
def test_a_raw_array_is_its_bytes(layout: Layout, raw: Layout) -> None:
    """Layout.raw("gprs") (how the RMM copies a host call's registers; the run page's halves take
    gicv3_lrs as bytes too, raw("gprs").raw("gicv3_lrs")): unpack gives the arrays'
    little-endian bytes and the other fields as the plain layout does; pack takes those bytes, or
    fewer (zero-padded as a shorter array is), and writes what the plain layout writes for the
    ints; more bytes than the field holds are refused naming the field."""
    rng = random.Random(7)
    gprs = tuple(rng.getrandbits(64) for _ in range(31))
    others = {name: 1 for name, fld in layout.fields.items() if fld.count == 1 and name != "gprs"}
    # The run page's halves take gicv3_lrs as their bytes too (REC_ENTER copies them to the exit).
    lrs = tuple(rng.getrandbits(64) for _ in range(16)) if "gicv3_lrs" in layout.fields else None
    arrays = {"gprs": gprs} if lrs is None else {"gprs": gprs, "gicv3_lrs": lrs}
    image = layout.pack(**others, **arrays)
    as_bytes = struct.pack("<31Q", *gprs)
    raw_arrays = {"gprs": as_bytes} if lrs is None else {"gprs": as_bytes, "gicv3_lrs": struct.pack("<16Q", *lrs)}
    assert raw.unpack(image) == {**layout.unpack(image), **raw_arrays}
    assert raw.pack(**others, **raw_arrays) == image
    assert raw.pack_bytes({**others, "gprs": as_bytes[:16]}) == layout.pack_bytes({**others, "gprs": gprs[:2]})
    into = bytearray(b"\xff" * layout.size)
    raw.pack_values_into(into, 0, {**others, "gprs": as_bytes[:16]})     # short bytes: zero-padded in place
    assert into == layout.pack_bytes({**others, "gprs": gprs[:2]})
    assert raw.extent == layout.extent and raw.size == layout.size
    for pack in (lambda values: raw.pack(**values), lambda values: raw.pack_values_into(into, 0, values)):
        with pytest.raises(LayoutError, match=rf"^{layout.name}\.gprs is 256 bytes; expected at most 248$"):
            pack({"gprs": as_bytes + bytes(8)})
    with pytest.raises(ValueError, match="imm: not an integer array"):
        RSI_HOST_CALL.raw("imm")
