"""An independent oracle for the Realm Initial Measurement (DEN0137 RMM 1.0-rel0, A7.1.1).

Written from the spec's text with hashlib alone. It imports nothing from rmm_mp, so a wrong
layout or rule in rmm_mp/rmm/measurement.py (or in rmm_mp/abi/structs.py, which the model uses
to read the host's pages) cannot hide behind a shared helper. The measured inputs are taken
from the raw bytes the host hands to the RMM, at the offsets and widths of the spec's tables.

    REALM_CREATE    RIM = H(measured copy of RmiRealmParams)             B4.3.9.4, B4.4.12
    DATA_CREATE     RIM = H(RmmMeasurementDescriptorData)                B4.3.1.4, C1.11
    REC_CREATE      RIM = H(RmmMeasurementDescriptorRec), runnable only  B4.3.12.4, C1.12, B4.4.19
    RTT_INIT_RIPAS  RIM = H(RmmMeasurementDescriptorRipas) per RTT entry B4.3.18.4, C1.13, B3.46

H is the RHA selected by the realm's hash_algo (B4.4.7); its output is zero filled to the width
of RmmRealmMeasurement, 512 bits (C1.17). Descriptor bytes no member covers are zero ("unused
bits MBZ", C1.11-C1.13).

The encoders at the end write RmiRealmParams and RmiRecParams pages as a host would, with an
optional junk byte in every byte that no member covers ("unused bits SBZ", B4.4.12, B4.4.19).
"""

from __future__ import annotations

import hashlib
from typing import Mapping

RMM_GRANULE_SIZE = 0x1000
MEASUREMENT_SIZE = 64            # C1.17: RmmRealmMeasurement is 512 bits
DESCRIPTOR_SIZE = 0x100          # C1.11-C1.13: each descriptor is 256 bytes
RMI_HASH_SHA_256, RMI_HASH_SHA_512 = 0, 1   # B4.4.7
DESC_TYPE_DATA, DESC_TYPE_REC, DESC_TYPE_RIPAS = 0x0, 0x1, 0x2   # C1.11, C1.12, C1.13
RMI_MEASURE_CONTENT = 1          # B4.4.2/B4.4.3: RmiDataFlags.measure, bit 0
RMI_RUNNABLE = 1                 # B4.4.13/B4.4.21: RmiRecCreateFlags.runnable, bit 0

Member = tuple[str, int, int]
"""(name, byte offset, width in bytes) of one member of a host structure."""

# B4.4.12 RmiRealmParams: every member, at its type's width (UInt8 members take one byte of
# their 8-byte slot; the rest of the slot is unused, hence SBZ).
REALM_PARAMS: tuple[Member, ...] = (
    ("flags", 0x000, 8), ("s2sz", 0x008, 1), ("sve_vl", 0x010, 1), ("num_bps", 0x018, 1),
    ("num_wps", 0x020, 1), ("pmu_num_ctrs", 0x028, 1), ("hash_algo", 0x030, 1),
    ("rpv", 0x400, 64), ("vmid", 0x800, 2), ("rtt_base", 0x808, 8), ("rtt_level_start", 0x810, 8),
    ("rtt_num_start", 0x818, 4),
)
# B4.3.9.4 step 2: the attributes copied into the measured RmiRealmParams.
REALM_PARAMS_MEASURED = ("flags", "s2sz", "sve_vl", "num_bps", "num_wps", "pmu_num_ctrs", "hash_algo")

# B4.4.19 RmiRecParams: gprs[0..7] and aux[0..15] are consecutive 64-bit members.
REC_PARAMS: tuple[Member, ...] = (
    ("flags", 0x000, 8), ("mpidr", 0x100, 8), ("pc", 0x200, 8), ("gprs", 0x300, 8 * 8),
    ("num_aux", 0x800, 8), ("aux", 0x808, 8 * 16),
)
# B4.3.12.4 step 2: the attributes copied into the measured RmiRecParams.
REC_PARAMS_MEASURED = ("gprs", "pc", "flags")


def rha(hash_algo: int, data: bytes | bytearray) -> bytes:
    """The Realm Hash Algorithm (A7.1, B4.4.7) applied to ``data``, zero filled to the size of
    RmmRealmMeasurement (the "zero filling upper bytes" step of every RIM rule)."""
    if hash_algo == RMI_HASH_SHA_256:
        digest = hashlib.sha256(data).digest()
    elif hash_algo == RMI_HASH_SHA_512:
        digest = hashlib.sha512(data).digest()
    else:
        raise ValueError(f"hash_algo {hash_algo} is reserved (B4.4.7)")
    return digest.ljust(MEASUREMENT_SIZE, b"\0")


def _member(members: tuple[Member, ...], name: str) -> Member:
    return next(m for m in members if m[0] == name)


def _measured_copy(page: bytes, members: tuple[Member, ...], measured: tuple[str, ...]) -> bytes:
    """A zero-filled 4 KiB structure holding only the ``measured`` members of ``page``."""
    image = bytearray(RMM_GRANULE_SIZE)
    for name in measured:
        _, offset, width = _member(members, name)
        image[offset:offset + width] = page[offset:offset + width]
    return bytes(image)


def _field(page: bytes, members: tuple[Member, ...], name: str) -> int:
    _, offset, width = _member(members, name)
    return int.from_bytes(page[offset:offset + width], "little")


# -- REALM_CREATE ------------------------------------------------------------------------------

def rim_init(params_page: bytes) -> bytes:
    """B4.3.9.4 (B3.48 RimInit): hash, with the realm's own RHA, a zero-filled RmiRealmParams
    into which flags, s2sz, sve_vl, num_bps, num_wps, pmu_num_ctrs and hash_algo are copied from
    the host's page (so rpv, vmid, the RTT fields and every SBZ byte are not measured)."""
    hash_algo = _field(params_page, REALM_PARAMS, "hash_algo")
    return rha(hash_algo, _measured_copy(params_page, REALM_PARAMS, REALM_PARAMS_MEASURED))


# -- the measurement descriptors ----------------------------------------------------------------

def _descriptor(desc_type: int, rim: bytes) -> bytearray:
    """The members the three descriptors share (C1.11-C1.13): desc_type (Bits8) at 0x0, len
    (UInt64, the descriptor's size in bytes) at 0x8, the current RIM (512 bits) at 0x10; all
    else zero."""
    desc = bytearray(DESCRIPTOR_SIZE)
    desc[0x00] = desc_type
    desc[0x08:0x10] = DESCRIPTOR_SIZE.to_bytes(8, "little")
    desc[0x10:0x50] = rim[:MEASUREMENT_SIZE].ljust(MEASUREMENT_SIZE, b"\0")
    return desc


def rim_extend_data(hash_algo: int, rim: bytes, ipa: int, flags: int, content: bytes) -> bytes:
    """B4.3.1.4 (B3.44 RimExtendData), C1.11: ipa (Address) at 0x50, flags (RmiDataFlags, all
    64 bits as the host gave them) at 0x58, and at 0x60 H(content of the DATA Granule) when
    flags.measure is RMI_MEASURE_CONTENT, else zero."""
    desc = _descriptor(DESC_TYPE_DATA, rim)
    desc[0x50:0x58] = ipa.to_bytes(8, "little")
    desc[0x58:0x60] = flags.to_bytes(8, "little")
    if flags & RMI_MEASURE_CONTENT:
        desc[0x60:0xA0] = rha(hash_algo, content)
    return rha(hash_algo, desc)


def rec_is_runnable(params_page: bytes) -> bool:
    """RmiRecCreateFlags.runnable (B4.4.13), bit 0 of RmiRecParams.flags."""
    return bool(_field(params_page, REC_PARAMS, "flags") & RMI_RUNNABLE)


def rim_extend_rec(hash_algo: int, rim: bytes, params_page: bytes) -> bytes:
    """B4.3.12.4 (B3.45 RimExtendRec), C1.12: only a runnable REC extends the RIM. The content
    member at 0x50 is H(a zero-filled RmiRecParams into which gprs, pc and flags, all 64 bits
    of it, are copied from the host's page); mpidr, num_aux, aux and the SBZ bytes are not
    measured."""
    if not rec_is_runnable(params_page):
        return rim
    desc = _descriptor(DESC_TYPE_REC, rim)
    desc[0x50:0x90] = rha(hash_algo, _measured_copy(params_page, REC_PARAMS, REC_PARAMS_MEASURED))
    return rha(hash_algo, desc)


def rtt_level_size(level: int) -> int:
    """B3.68 RttLevelSize with 4 KiB granules: 4 KiB at level 3, 512 times more per level up."""
    return RMM_GRANULE_SIZE << (9 * (3 - level))


def rim_extend_ripas(hash_algo: int, rim: bytes, base: int, walk_top: int, level: int) -> bytes:
    """B4.3.18.4 (B3.46 RimExtendRipas), C1.13: one descriptor per RTT entry of ``level`` in
    [base, walk_top), in address order, each with base (Address) at 0x50 the entry's IPA and
    top at 0x58 Min(IPA + entry size, top).

    ``walk_top`` is the command's out_top (B4.3.18.3: out_top == walk_top), which
    RttSkipEntriesWithRipas (B3.75) aligns down to the entry size, so an entry that the
    command's top splits is not processed and no descriptor's top is cut short."""
    size = rtt_level_size(level)
    addr = base
    while addr < walk_top:
        desc = _descriptor(DESC_TYPE_RIPAS, rim)
        desc[0x50:0x58] = addr.to_bytes(8, "little")
        desc[0x58:0x60] = min(addr + size, walk_top).to_bytes(8, "little")
        rim = rha(hash_algo, desc)
        addr += size
    return rim


# -- host-side encoders ---------------------------------------------------------------------------

def encode(members: tuple[Member, ...], values: Mapping[str, int | bytes | tuple[int, ...]],
           junk: int | None = None) -> bytes:
    """A 4 KiB host structure: each given member little-endian at its offset (an array member
    takes a tuple of 64-bit values, bytes are copied as they are); every byte that no member
    covers holds ``junk`` (zero when None), which the spec says SBZ."""
    page = bytearray([junk or 0]) * RMM_GRANULE_SIZE
    for _, offset, width in members:
        page[offset:offset + width] = bytes(width)
    for name, value in values.items():
        _, offset, width = _member(members, name)
        if isinstance(value, bytes):
            raw = value.ljust(width, b"\0")
        elif isinstance(value, tuple):
            raw = b"".join(v.to_bytes(8, "little") for v in value).ljust(width, b"\0")
        else:
            raw = value.to_bytes(width, "little")
        assert len(raw) == width, f"{name} does not fit in {width} bytes"
        page[offset:offset + width] = raw
    return bytes(page)


def realm_params_page(junk: int | None = None, **values: int | bytes) -> bytes:
    """RmiRealmParams (B4.4.12) as the host writes it."""
    return encode(REALM_PARAMS, values, junk)


def rec_params_page(junk: int | None = None, **values: int | tuple[int, ...]) -> bytes:
    """RmiRecParams (B4.4.19) as the host writes it."""
    return encode(REC_PARAMS, values, junk)


def rec_mpidr(index: int, sbz_junk: bool = False) -> int:
    """The RmiRecMpidr (B4.4.18) of REC ``index`` (A2.3.3: index = Aff3:Aff2:Aff1:Aff0[3:0]);
    with ``sbz_junk``, its SBZ bits Aff0[7:4] and [63:32] set, which B3.38 RecIndex ignores."""
    mpidr = (index & 0xF) | ((index >> 4) & 0xFF) << 8 | ((index >> 12) & 0xFF) << 16 | ((index >> 20) & 0xFF) << 24
    return mpidr | (0xDEAD_BEEF << 32 | 0xA0 if sbz_junk else 0)
