"""Realm measurements (DEN0137 A7.1): the RIM and its descriptors, and REM extension.

RIM initial value: H(P), P a 4 KiB zero-filled copy of RmiRealmParams holding only flags, s2sz,
sve_vl, num_bps, num_wps, pmu_num_ctrs and hash_algo (not rpv, vmid or the RTT fields).

RIM extension: RIM' = H(D), D a 256-byte zero-filled descriptor that embeds the old RIM:

    offset  DATA (type 0)               REC (type 1)                 RIPAS (type 2)
    0x00    desc_type u8 (0/1/2), then 7 zero bytes
    0x08    len u64 = 0x100
    0x10    old RIM, 64 bytes (zero padded)
    0x50    ipa u64                     H(REC params image), 64 B    base u64
    0x58    flags u64                                                top u64
    0x60    H(content), 64 B, only with MEASURE_CONTENT (else zero)

The REC params image is a zero-filled 4 KiB RmiRecParams holding flags, pc and gprs[0..7] only.
REM extension (RSI_MEASUREMENT_EXTEND): REM' = H(REM[:hash size] || value[:size]).

Values are kept 64 bytes wide (zero padded); a SHA-256 measurement is its first 32 bytes.
"""

from __future__ import annotations

import hashlib
import struct

from rmm_mp.abi.structs import RMI_REALM_PARAMS, RMI_REC_PARAMS

SHA_256, SHA_512 = 0, 1
HASH_NAMES = {SHA_256: "sha256", SHA_512: "sha512"}
HASH_SIZES = {SHA_256: 32, SHA_512: 64}
DESC_DATA, DESC_REC, DESC_RIPAS = 0, 1, 2
DESC_SIZE = 0x100
SLOT_SIZE = 64

_HEAD = struct.Struct("<B7xQ64s")


def digest(algo: int, data: bytes | bytearray | memoryview) -> bytes:
    """H(data) with the realm's algorithm, zero padded to 64 bytes."""
    return hashlib.new(HASH_NAMES[algo], data).digest().ljust(SLOT_SIZE, b"\0")


def rim_init(algo: int, params: dict[str, int]) -> bytes:
    """The RIM REALM_CREATE computes from the measured RmiRealmParams fields."""
    image = RMI_REALM_PARAMS.pack(**{name: params[name] for name in
                                     ("flags", "s2sz", "sve_vl", "num_bps", "num_wps", "pmu_num_ctrs", "hash_algo")})
    return digest(algo, image)


def _descriptor(kind: int, rim: bytes) -> bytearray:
    desc = bytearray(DESC_SIZE)
    _HEAD.pack_into(desc, 0, kind, DESC_SIZE, rim[:SLOT_SIZE].ljust(SLOT_SIZE, b"\0"))
    return desc


def rim_extend_data(algo: int, rim: bytes, ipa: int, flags: int, content: bytes | None) -> bytes:
    """DATA_CREATE: ``content`` is the granule when flags is MEASURE_CONTENT, else None."""
    desc = _descriptor(DESC_DATA, rim)
    struct.pack_into("<QQ", desc, 0x50, ipa, flags)
    if content is not None:
        desc[0x60:0xA0] = digest(algo, content)
    return digest(algo, desc)


def rim_extend_rec(algo: int, rim: bytes, flags: int, pc: int, gprs: tuple[int, ...]) -> bytes:
    """REC_CREATE of a runnable REC."""
    image = RMI_REC_PARAMS.pack(flags=flags, pc=pc, gprs=gprs)
    desc = _descriptor(DESC_REC, rim)
    desc[0x50:0x90] = digest(algo, image)
    return digest(algo, desc)


def rim_extend_ripas(algo: int, rim: bytes, base: int, top: int) -> bytes:
    """RTT_INIT_RIPAS: one descriptor per RTT entry, [base, top) being that entry's range."""
    desc = _descriptor(DESC_RIPAS, rim)
    struct.pack_into("<QQ", desc, 0x50, base, top)
    return digest(algo, desc)


def rem_extend(algo: int, rem: bytes, value: bytes, size: int) -> bytes:
    """RSI_MEASUREMENT_EXTEND: H(REM || value[:size]); no padding of the value."""
    return digest(algo, rem[:HASH_SIZES[algo]] + value[:size])
