"""Realm Management Interface facts (DEN0137 1.0-rel0, chapter B4).

Function IDs with their register arguments and results, command return codes, the
RmiInterfaceVersion encoding and the fields of RmiFeatureRegister0.
"""

from __future__ import annotations

import enum


def _version(major: int, minor: int) -> int:
    return (major << 16) | minor


RMI_ABI_VERSION = _version(1, 0)
"""RmiInterfaceVersion 1.0: bits[30:16] major, bits[15:0] minor (B4.4.x)."""

RMI_FID_BASE = 0xC400_0150
RMI_FID_LAST = 0xC400_018F
"""The RMI range EL3 forwards to the RMM: function numbers 0x150..0x18F (SMC64, fast, OEN 4)."""


class RmiFid(enum.IntEnum):
    """RMI 1.0 function IDs. Comments give the inputs (X1..) and the outputs (X1..)."""

    RMI_VERSION = 0xC400_0150  # req -> lower, higher
    RMI_GRANULE_DELEGATE = 0xC400_0151  # addr -> -
    RMI_GRANULE_UNDELEGATE = 0xC400_0152  # addr -> -
    RMI_DATA_CREATE = 0xC400_0153  # rd, data, ipa, src, flags -> -
    RMI_DATA_CREATE_UNKNOWN = 0xC400_0154  # rd, data, ipa -> -
    RMI_DATA_DESTROY = 0xC400_0155  # rd, ipa -> data, top
    RMI_REALM_ACTIVATE = 0xC400_0157  # rd -> -
    RMI_REALM_CREATE = 0xC400_0158  # rd, params_ptr -> -
    RMI_REALM_DESTROY = 0xC400_0159  # rd -> -
    RMI_REC_CREATE = 0xC400_015A  # rd, rec, params_ptr -> -
    RMI_REC_DESTROY = 0xC400_015B  # rec -> -
    RMI_REC_ENTER = 0xC400_015C  # rec, run_ptr -> -
    RMI_RTT_CREATE = 0xC400_015D  # rd, rtt, ipa, level -> -
    RMI_RTT_DESTROY = 0xC400_015E  # rd, ipa, level -> rtt, top
    RMI_RTT_MAP_UNPROTECTED = 0xC400_015F  # rd, ipa, level, desc -> -
    RMI_RTT_READ_ENTRY = 0xC400_0161  # rd, ipa, level -> walk_level, state, desc, ripas
    RMI_RTT_UNMAP_UNPROTECTED = 0xC400_0162  # rd, ipa, level -> top
    RMI_PSCI_COMPLETE = 0xC400_0164  # calling_rec, target_rec, status -> -
    RMI_FEATURES = 0xC400_0165  # index -> value
    RMI_RTT_FOLD = 0xC400_0166  # rd, ipa, level -> rtt
    RMI_REC_AUX_COUNT = 0xC400_0167  # rd -> aux_count
    RMI_RTT_INIT_RIPAS = 0xC400_0168  # rd, base, top -> top
    RMI_RTT_SET_RIPAS = 0xC400_0169  # rd, rec, base, top -> top


class RmiStatus(enum.IntEnum):
    """RmiStatusCode (B4.4.x): bits[7:0] of RmiCommandReturnCode."""

    RMI_SUCCESS = 0
    RMI_ERROR_INPUT = 1
    RMI_ERROR_REALM = 2
    RMI_ERROR_REC = 3
    RMI_ERROR_RTT = 4


def pack_return(status: int, index: int = 0) -> int:
    """Encode RmiCommandReturnCode: status in bits[7:0], index in bits[15:8].

    The index is a byte: RTT level -1 (LPA2 start level) encodes as 0xFF.
    """
    return (status & 0xFF) | ((index & 0xFF) << 8)


def unpack_return(x0: int) -> tuple[RmiStatus, int]:
    """Split X0 into (status, index); raises ValueError for a status RMI 1.0 does not define."""
    return RmiStatus(x0 & 0xFF), (x0 >> 8) & 0xFF


class FeatureRegister0:
    """Bit positions (lsb, width) of RmiFeatureRegister0 fields (B4.4.6)."""

    S2SZ = (0, 8)
    LPA2 = (8, 1)
    SVE_EN = (9, 1)
    SVE_VL = (10, 4)
    NUM_BPS = (14, 6)
    NUM_WPS = (20, 6)
    PMU_EN = (26, 1)
    PMU_NUM_CTRS = (27, 5)
    HASH_SHA_256 = (32, 1)
    HASH_SHA_512 = (33, 1)
    GICV3_NUM_LRS = (34, 4)
    MAX_RECS_ORDER = (38, 4)

    @staticmethod
    def encode(**fields: int) -> int:
        """Build a register value from field values named as above (missing fields are 0)."""
        value = 0
        for name, field_value in fields.items():
            lsb, width = getattr(FeatureRegister0, name.upper())
            if not 0 <= field_value < (1 << width):
                raise ValueError(f"FeatureRegister0.{name.upper()} = {field_value} does not fit {width} bits")
            value |= field_value << lsb
        return value

    @staticmethod
    def field(value: int, name: str) -> int:
        """Extract one field from a register value."""
        lsb, width = getattr(FeatureRegister0, name.upper())
        return (value >> lsb) & ((1 << width) - 1)

    @staticmethod
    def describe(value: int) -> str:
        """A register value in words, each figure read back from the value (counts, not the
        "minus one" encodings): what a host learns from RMI_FEATURES index 0. Flags read true or
        false, as a platform file writes them (Python's True/False were shown before)."""
        def f(name: str) -> int:
            return FeatureRegister0.field(value, name)

        sve = f"sve true (vectors up to {(f('SVE_VL') + 1) * 128} bits)" if f("SVE_EN") else "sve false"
        ctrs, lrs = f("PMU_NUM_CTRS"), f("GICV3_NUM_LRS") + 1
        pmu = f"pmu true ({ctrs} counter{'' if ctrs == 1 else 's'})" if f("PMU_EN") else "pmu false"
        hashes = [name for name, bit in (("sha-256", "HASH_SHA_256"), ("sha-512", "HASH_SHA_512")) if f(bit)]
        order = f("MAX_RECS_ORDER")
        return (f"s2sz {f('S2SZ')}, lpa2 {'true' if f('LPA2') else 'false'}, {sve}, {pmu}, "
                f"{f('NUM_BPS') + 1} breakpoints, {f('NUM_WPS') + 1} watchpoints, "
                f"hashes {', '.join(hashes) or 'none'}, {lrs} GIC list register{'' if lrs == 1 else 's'}, "
                f"max_recs_order {order} (MAX_RECS {(1 << order) - 1})")
