"""Byte layouts of the structures passed by address (DEN0137 1.0-rel0 B4.4 and B5.4).

Each layout is data: named fields at explicit byte offsets with the spec's width, little-endian,
in a zero-filled structure of the spec's size. Unused bytes are SBZ (host to RMM) or MBZ (RMM to
host); readers here take each field at the spec's width and ignore the rest, which is where
TF-RMM rel0 differs for some UInt8 fields it reads as 32 bits (docs/deviations.md).

    RMI_REALM_PARAMS  RmiRealmParams (REALM_CREATE X2), 0x1000 bytes
    RMI_REC_PARAMS    RmiRecParams (REC_CREATE X3), 0x1000 bytes
    RMI_REC_ENTER     RmiRecEnter, the first 0x800 bytes of RmiRecRun (REC_ENTER X2)
    RMI_REC_EXIT      RmiRecExit, at offset 0x800 of RmiRecRun
    RSI_REALM_CONFIG  RsiRealmConfig (RSI_REALM_CONFIG X1), 0x1000 bytes
    RSI_HOST_CALL     RsiHostCall (RSI_HOST_CALL X1), 0x100 bytes
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Callable


class LayoutError(struct.error, ValueError):
    """A value that does not fit its field, naming the structure, the field, the value and the
    field's range (a struct.error, as the struct module's own refusals were)."""


@dataclass(frozen=True)
class Field:
    """One member: ``fmt`` is a struct code ('Q', 'B', 'H', 'I', 'q', '64s'); ``count`` > 1
    makes an array (gprs[31] is Field("gprs", 0x200, "Q", 31))."""

    name: str
    offset: int
    fmt: str
    count: int = 1

    @property
    def struct(self) -> struct.Struct:
        return struct.Struct("<" + (f"{self.count}{self.fmt}" if self.count > 1 else self.fmt))

    @property
    def size(self) -> int:
        return self.struct.size


class Layout:
    """A structure of ``size`` bytes with fields at fixed offsets.

    The structs are compiled once: one per field, and one for the whole structure (the fields
    in offset order with pad bytes between) that ``unpack`` reads with a single call. ``pack``
    starts from a zero-filled structure and writes only the fields it is given.
    """

    def __init__(self, name: str, size: int, fields: tuple[Field, ...]) -> None:
        self.name = name
        self.size = size
        self.fields = {f.name: f for f in fields}
        self._structs = {f.name: f.struct for f in fields}
        ends = sorted((f.offset, f.offset + f.size, f.name) for f in fields)
        for (_, end, a), (start, _, b) in zip(ends, ends[1:]):
            if start < end:
                raise ValueError(f"{name}: {a} overlaps {b}")
        if ends and ends[-1][1] > size:
            raise ValueError(f"{name}: {ends[-1][2]} runs past {size:#x}")
        # name -> (struct, offset, element count of an array or 0 for a single value)
        self._packers = {f.name: (f.struct, f.offset, f.count if f.count > 1 and f.fmt != "s" else 0)
                         for f in fields}
        self._strings = frozenset(f.name for f in fields if f.fmt.endswith("s"))
        self.whole, self._items = _whole_struct(sorted(fields, key=lambda f: f.offset))
        """The struct of all the fields in offset order: what values() unpacks with, for a caller
        that reads one in its own code (RSI_HOST_CALL's imm and gprs)."""
        self._as_dict = _dict_maker(self._items)
        self.extent = self.whole.size
        """Bytes from the start to the end of the last field: all that unpack and values read."""
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def offset(self, name: str) -> int:
        return self.fields[name].offset

    def raw(self, name: str) -> "Layout":
        """This layout with integer array ``name`` taken as its bytes: unpack gives them as one
        bytes object, pack takes one (a shorter one padded with zero bytes, as a shorter array
        is with zeros). The RMM copies the host call's registers between RsiHostCall and the
        run page this way, without making 31 ints of them and packing them again."""
        fld = self.fields[name]
        if fld.count <= 1 or fld.fmt.endswith("s"):
            raise ValueError(f"{self.name}.{name}: not an integer array")
        raw = Field(name, fld.offset, f"{fld.size}s")
        return Layout(self.name, self.size, tuple(raw if f.name == name else f for f in self.fields.values()))

    def pack(self, **values: Any) -> bytearray:
        """A zero-filled structure with the given fields set (arrays as sequences, shorter ones
        padded with zeros): pack_values of them."""
        return self.pack_values(values)

    def pack_values(self, values: dict[str, Any]) -> bytearray:
        """pack(**values), from a dict the caller already has: the same bytes and errors,
        without the keyword arguments' copy of the dict (pack_bytes, in a bytearray)."""
        return bytearray(self.pack_bytes(values))

    def pack_bytes(self, values: dict[str, Any]) -> bytes:
        """pack_values' bytes as an immutable bytes object, for a caller that only copies them
        on (REC_ENTER writes a RmiRecExit into the run page on every REC exit): no copy of the
        whole structure into a bytearray.

        One struct per set of field names (compiled the first time that set is packed: the
        fields in offset order, zero pad bytes between and after) packs the whole structure in
        one call.

        Raises:
            KeyError: a field the layout does not have.
            LayoutError: a value that does not fit its field (out of range, an array or byte
                string longer than the field; struct would cut a byte string short silently).
        """
        plan = self._plans.get(tuple(values))
        if plan is None:
            plan = self._plan(tuple(values))
        packer, order, strings, direct, _ = plan
        if direct is not None:
            try:
                packed = direct(values)
            except struct.error:
                if not strings:
                    raise self._refusal(values) from None
                packed = None       # the loop below refuses them as it always did
            except Exception:
                # len() of a byte-string field's value failed (no byte string: TypeError; a
                # range too long for a C ssize_t: OverflowError): the loop refuses it naming the
                # field, as before the direct packer served byte strings. Without byte strings
                # the error is the caller's, as it always was.
                if not strings:
                    raise
                packed = None
            if packed is not None:
                return packed
        for name in strings:
            self._check_length(name, values[name])
        args: list[Any] = []
        for name, count in order:
            value = values[name]
            if not count:
                args.append(value)
            elif len(value) == count:
                args += value
            else:
                args += value
                args += [0] * (count - len(value))
        try:
            return packer.pack(*args)
        except struct.error:
            raise self._refusal(values) from None

    def pack_values_into(self, buf: Any, at: int, values: dict[str, Any]) -> None:
        """pack_bytes(values) written into ``buf`` at ``at`` (all ``size`` bytes, pad bytes zero),
        packed there in one call when the direct packer serves the values, with no bytes object
        made and copied (REC_ENTER writes a RmiRecExit into the run page on every REC exit:
        about 2,200 instructions fewer). A value that does not fit raises what pack_bytes
        raises, and part of the structure may have been written by then."""
        plan = self._plans.get(tuple(values))
        if plan is None:
            plan = self._plan(tuple(values))
        try:
            if plan[4](buf, at, values):
                return
        except Exception:   # pack_bytes below refuses the values as it always has
            pass
        buf[at:at + self.size] = self.pack_bytes(values)

    def _plan(self, names: tuple[str, ...]) -> _Plan:
        chosen = sorted((self.fields[name] for name in names), key=lambda f: f.offset)   # KeyError: no such field
        whole, _ = _whole_struct(chosen)
        pad = self.size - (chosen[-1].offset + chosen[-1].size) if chosen else self.size
        packer = struct.Struct(whole.format + (f"{pad}x" if pad else ""))
        order = tuple((f.name, self._packers[f.name][2]) for f in chosen)
        strings = tuple(f.name for f in chosen if f.name in self._strings)
        sizes = tuple((name, self.fields[name].size) for name in strings)
        plan = (packer, order, strings, _direct_packer(packer, order, sizes),
                _direct_packer(packer, order, sizes, into=True))
        if len(self._plans) < 64:   # callers use a handful of sets; never grow without bound
            self._plans[names] = plan
        return plan

    def _check_length(self, name: str, value: Any) -> None:
        """Refuse a byte string longer than its field, which struct would cut short silently."""
        fld = self.fields[name]
        if not isinstance(value, (bytes, bytearray)):
            raise LayoutError(f"{self.name}.{name} = {_shown(value)}: {_expected(fld)}")
        if len(value) > fld.size:
            raise LayoutError(f"{self.name}.{name} is {len(value)} bytes; expected at most {fld.size}")

    def _refusal(self, values: dict[str, Any]) -> Exception:
        """The error naming the first of ``values`` that its own field's struct refuses."""
        for name, value in values.items():
            fld = self.fields[name]
            try:
                self.pack_into(bytearray(fld.offset + fld.size), 0, name, value)
            except struct.error as exc:
                return exc
        return LayoutError(f"{self.name}: cannot pack {values!r}")

    def pack_into(self, buf: Any, base: int, name: str, value: Any) -> None:
        """Write one field at ``base`` + its offset (an array shorter than the field padded with
        zeros); a value that does not fit is a LayoutError naming it."""
        packer, offset, count = self._packers[name]
        try:
            if not count:
                if name in self._strings:
                    self._check_length(name, value)
                packer.pack_into(buf, base + offset, value)
            elif len(value) == count:
                packer.pack_into(buf, base + offset, *value)
            else:
                packer.pack_into(buf, base + offset, *value, *([0] * (count - len(value))))
        except struct.error as exc:
            if isinstance(exc, LayoutError):
                raise
            raise LayoutError(f"{self.name}.{name} = {_shown(value)}: {_expected(self.fields[name])} ({exc})") from None

    def get(self, buf: Any, name: str, base: int = 0) -> Any:
        """One field from ``buf`` (a scalar, bytes, or a tuple for arrays)."""
        fld = self.fields[name]
        values = self._structs[name].unpack_from(buf, base + fld.offset)
        return values if fld.count > 1 else values[0]

    def values(self, buf: Any, base: int = 0) -> tuple[Any, ...]:
        """Every field's values in offset order, flat (arrays spread out), in one unpack."""
        return self.whole.unpack_from(buf, base)

    def unpack(self, buf: Any, base: int = 0) -> dict[str, Any]:
        """Every field, read with one unpack of the structure up to its last field."""
        return self._as_dict(self.whole.unpack_from(buf, base))


_Plan = tuple[struct.Struct, tuple[tuple[str, int], ...], tuple[str, ...],
              "Callable[[dict[str, Any]], bytes | None] | None", "Callable[[Any, int, dict[str, Any]], bool]"]
"""(struct of the whole structure, (name, array length or 0) per field in offset order, the
byte-string fields among them, its direct packer and its direct packer into a buffer:
_direct_packer)."""


def _dict_maker(items: tuple[tuple[str, int, int], ...]) -> "Callable[[tuple[Any, ...]], dict[str, Any]]":
    """The function unpack builds its dict with from the flat values (_whole_struct's items):
    one dict display with each field's value or slice in place, generated as source as
    _direct_packer is (a comprehension over the items costs a third more; REC_ENTER unpacks a
    RmiRecEnter on every entry)."""
    entries = ", ".join(f"{name!r}: v[{start}]" if stop == 0 else f"{name!r}: v[{start}:{stop}]"
                        for name, start, stop in items)
    namespace: dict[str, Any] = {}
    exec(f"def as_dict(v):\n    return {{{entries}}}\n", namespace)
    return namespace["as_dict"]  # type: ignore[no-any-return]


def _direct_packer(packer: struct.Struct, order: tuple[tuple[str, int], ...],
                   strings: tuple[tuple[str, int], ...] = (), into: bool = False) -> "Callable[..., Any]":
    """For one set of field names: a function of the values dict that packs them with one call
    when every array has exactly its field's length (the usual case: a REC exit's gprs) and no
    byte string (``strings``: name and size) is longer than its field, and returns None
    otherwise (pack_bytes' loop pads shorter arrays and refuses longer ones, and refuses a long
    byte string, which struct would cut short). Generated as source, as dataclasses makes its
    __init__: one expression with each field's value in place, with no Python loop over the
    fields per pack (REC_ENTER packs a RmiRecExit on every REC exit). ``into``: the function
    (buf, at, values) packs into buf at ``at`` instead (pack_values_into), and returns whether
    it did."""
    checks = [f"len(v[{name!r}]) == {count}" for name, count in order if count]
    checks += [f"len(v[{name!r}]) <= {size}" for name, size in strings]
    lengths = " and ".join(checks) or "True"
    args = ", ".join(f"*v[{name!r}]" if count else f"v[{name!r}]" for name, count in order)
    namespace: dict[str, Any] = {"pack": packer.pack, "pack_into": packer.pack_into}
    if into:
        exec(f"def direct(buf, at, v):\n    if not ({lengths}):\n        return False\n"
             f"    pack_into(buf, at, {args})\n    return True\n", namespace)
    else:
        exec(f"def direct(v):\n    return pack({args}) if {lengths} else None\n", namespace)
    return namespace["direct"]  # type: ignore[no-any-return]


_RANGES = {"B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFF_FFFF), "Q": (0, (1 << 64) - 1),
           "q": (-(1 << 63), (1 << 63) - 1)}


def _expected(fld: Field) -> str:
    if fld.fmt.endswith("s"):
        return f"expected bytes, at most {fld.size} of them"
    low, high = _RANGES[fld.fmt]
    what = f"integers in {low:#x}..{high:#x}"
    return f"expected at most {fld.count} {what}" if fld.count > 1 else f"expected an integer in {low:#x}..{high:#x}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _whole_struct(ordered: list[Field]) -> tuple[struct.Struct, tuple[tuple[str, int, int], ...]]:
    """One struct over fields sorted by offset (pad bytes between them; it ends with the last
    field), and per field (name, index of its first value, index past its last value or 0 for
    a field that unpacks to a single value)."""
    fmt, pos, index, items = "<", 0, 0, []
    for f in ordered:
        if f.offset > pos:
            fmt += f"{f.offset - pos}x"
        fmt += f"{f.count}{f.fmt}" if f.count > 1 else f.fmt
        pos = f.offset + f.size
        width = len(f.struct.unpack(bytes(f.size)))
        items.append((f.name, index, index + width if f.count > 1 else 0))
        index += width
    return struct.Struct(fmt), tuple(items)


RMI_REALM_PARAMS = Layout("RmiRealmParams", 0x1000, (
    Field("flags", 0x000, "Q"),
    Field("s2sz", 0x008, "B"),
    Field("sve_vl", 0x010, "B"),
    Field("num_bps", 0x018, "B"),
    Field("num_wps", 0x020, "B"),
    Field("pmu_num_ctrs", 0x028, "B"),
    Field("hash_algo", 0x030, "B"),
    Field("rpv", 0x400, "64s"),
    Field("vmid", 0x800, "H"),
    Field("rtt_base", 0x808, "Q"),
    Field("rtt_level_start", 0x810, "q"),
    Field("rtt_num_start", 0x818, "I"),
))

RMI_REC_PARAMS = Layout("RmiRecParams", 0x1000, (
    Field("flags", 0x000, "Q"),
    Field("mpidr", 0x100, "Q"),
    Field("pc", 0x200, "Q"),
    Field("gprs", 0x300, "Q", 8),
    Field("num_aux", 0x800, "Q"),
    Field("aux", 0x808, "Q", 16),
))

RMI_REC_ENTER = Layout("RmiRecEnter", 0x800, (
    Field("flags", 0x000, "Q"),
    Field("gprs", 0x200, "Q", 31),
    Field("gicv3_hcr", 0x300, "Q"),
    Field("gicv3_lrs", 0x308, "Q", 16),
))

REC_EXIT_OFFSET = 0x800
"""RmiRecExit starts here inside RmiRecRun."""

RMI_REC_EXIT = Layout("RmiRecExit", 0x800, (
    Field("exit_reason", 0x000, "B"),      # RmiRecExitReason is 8 bits wide (B4.4.17); 1..7 MBZ
    Field("esr", 0x100, "Q"),
    Field("far", 0x108, "Q"),
    Field("hpfar", 0x110, "Q"),
    Field("gprs", 0x200, "Q", 31),
    Field("gicv3_hcr", 0x300, "Q"),
    Field("gicv3_lrs", 0x308, "Q", 16),
    Field("gicv3_misr", 0x388, "Q"),
    Field("gicv3_vmcr", 0x390, "Q"),
    Field("cntp_ctl", 0x400, "Q"),
    Field("cntp_cval", 0x408, "Q"),
    Field("cntv_ctl", 0x410, "Q"),
    Field("cntv_cval", 0x418, "Q"),
    Field("ripas_base", 0x500, "Q"),
    Field("ripas_top", 0x508, "Q"),
    Field("ripas_value", 0x510, "B"),
    Field("imm", 0x600, "H"),
    Field("pmu_ovf_status", 0x700, "B"),
))

RSI_REALM_CONFIG = Layout("RsiRealmConfig", 0x1000, (
    Field("ipa_width", 0x000, "Q"),
    Field("hash_algo", 0x008, "B"),
    Field("rpv", 0x200, "64s"),
))

RSI_HOST_CALL = Layout("RsiHostCall", 0x100, (
    Field("imm", 0x000, "H"),
    Field("gprs", 0x008, "Q", 31),
))

# The RMM's views of the two halves of the run page and of RsiHostCall with gprs as their bytes
# (Layout.raw): a host call's registers go from RsiHostCall to RmiRecExit, and from RmiRecEnter
# back into RsiHostCall, as bytes copied, never as 31 ints (the same bytes either way). The run
# page's gicv3_lrs too: every exit reports the LRs the entry programmed, so REC_ENTER keys its
# GIC memos on their bytes and copies them (rmm.gic.LRS), never making 16 ints of them.
RMI_REC_ENTER_RAW = RMI_REC_ENTER.raw("gprs").raw("gicv3_lrs")
RMI_REC_EXIT_RAW = RMI_REC_EXIT.raw("gprs").raw("gicv3_lrs")
RSI_HOST_CALL_RAW = RSI_HOST_CALL.raw("gprs")


class RmiRealmFlags(enum.IntFlag):
    LPA2 = 1 << 0
    SVE = 1 << 1
    PMU = 1 << 2


class RmiRecCreateFlags(enum.IntFlag):
    RUNNABLE = 1 << 0


class RmiRecEnterFlags(enum.IntFlag):
    EMUL_MMIO = 1 << 0
    INJECT_SEA = 1 << 1
    TRAP_WFI = 1 << 2
    TRAP_WFE = 1 << 3
    RIPAS_RESPONSE = 1 << 4


class RmiRecExitReason(enum.IntEnum):
    RMI_EXIT_SYNC = 0
    RMI_EXIT_IRQ = 1
    RMI_EXIT_FIQ = 2
    RMI_EXIT_PSCI = 3
    RMI_EXIT_RIPAS_CHANGE = 4
    RMI_EXIT_HOST_CALL = 5
    RMI_EXIT_SERROR = 6


class RmiRipas(enum.IntEnum):
    EMPTY = 0
    RAM = 1
    DESTROYED = 2


class RmiRttEntryState(enum.IntEnum):
    UNASSIGNED = 0
    ASSIGNED = 1
    TABLE = 2


class RmiHashAlgorithm(enum.IntEnum):
    RMI_HASH_SHA_256 = 0
    RMI_HASH_SHA_512 = 1


class RmiDataFlags(enum.IntEnum):
    RMI_NO_MEASURE_CONTENT = 0
    RMI_MEASURE_CONTENT = 1


class RmiResponse(enum.IntEnum):
    ACCEPT = 0
    REJECT = 1


def mpidr_to_rec_index(mpidr: int) -> int:
    """REC index of an RmiRecMpidr value: Aff0[3:0] | Aff1 << 4 | Aff2 << 12 | Aff3 << 20."""
    return ((mpidr & 0xF) | (((mpidr >> 8) & 0xFF) << 4) | (((mpidr >> 16) & 0xFF) << 12)
            | (((mpidr >> 24) & 0xFF) << 20))


def rec_index_to_mpidr(index: int) -> int:
    """The RmiRecMpidr value of REC ``index`` (inverse of mpidr_to_rec_index)."""
    return ((index & 0xF) | (((index >> 4) & 0xFF) << 8) | (((index >> 12) & 0xFF) << 16)
            | (((index >> 20) & 0xFF) << 24))


RMI_REC_MPIDR_SBZ = 0xFFFF_FFFF_0000_00F0
"""Bits of RmiRecMpidr that should be zero (Aff0[7:4] and bits [63:32], SBZ): REC_CREATE ignores
them (no failure condition names them) and keeps the MPIDR without them."""
