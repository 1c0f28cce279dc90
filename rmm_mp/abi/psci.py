"""PSCI facts a realm uses (Arm DEN0022, as the RMM emulates PSCI 1.1 for realms; DEN0137 B6).

Function IDs of the SMC32 (0x84..) and SMC64 (0xC4..) forms, return codes (as 64-bit values in
X0), AFFINITY_INFO results, and the SMCCC_VERSION call the RMM also answers.
"""

from __future__ import annotations

import enum


class PsciFid(enum.IntEnum):
    PSCI_VERSION = 0x8400_0000
    PSCI_CPU_SUSPEND_SMC32 = 0x8400_0001
    PSCI_CPU_SUSPEND = 0xC400_0001
    PSCI_CPU_OFF = 0x8400_0002
    PSCI_CPU_ON_SMC32 = 0x8400_0003
    PSCI_CPU_ON = 0xC400_0003
    PSCI_AFFINITY_INFO_SMC32 = 0x8400_0004
    PSCI_AFFINITY_INFO = 0xC400_0004
    PSCI_SYSTEM_OFF = 0x8400_0008
    PSCI_SYSTEM_RESET = 0x8400_0009
    PSCI_FEATURES = 0x8400_000A
    SMCCC_VERSION = 0x8000_0000


class PsciReturn(enum.IntEnum):
    PSCI_SUCCESS = 0
    PSCI_NOT_SUPPORTED = -1
    PSCI_INVALID_PARAMETERS = -2
    PSCI_DENIED = -3
    PSCI_ALREADY_ON = -4
    PSCI_ON_PENDING = -5
    PSCI_INTERNAL_FAILURE = -6
    PSCI_NOT_PRESENT = -7
    PSCI_DISABLED = -8
    PSCI_INVALID_ADDRESS = -9


class AffinityInfo(enum.IntEnum):
    ON = 0
    OFF = 1
    ON_PENDING = 2


PSCI_VERSION_1_1 = 0x0001_0001
SMCCC_VERSION_1_2 = 0x0001_0002
PSCI_RANGES = ((0x8400_0000, 0x8400_001F), (0xC400_0000, 0xC400_001F))
"""Function IDs the RMM treats as PSCI (SMC32 and SMC64 forms)."""


def is_psci(fid: int) -> bool:
    return any(lo <= fid <= hi for lo, hi in PSCI_RANGES) or fid == PsciFid.SMCCC_VERSION


def u64(value: int) -> int:
    """A PSCI return code as the 64-bit value in X0."""
    return value & 0xFFFF_FFFF_FFFF_FFFF


def mpidr_el1_to_rec_index(mpidr: int) -> int:
    """REC index of an MPIDR_EL1 value (Aff3 at [39:32]), as PSCI target MPIDRs are written."""
    return ((mpidr & 0xF) | (((mpidr >> 8) & 0xFF) << 4) | (((mpidr >> 16) & 0xFF) << 12)
            | (((mpidr >> 32) & 0xFF) << 20))


def rec_index_to_mpidr_el1(index: int) -> int:
    """The MPIDR_EL1 value (Aff3 at [39:32]) a realm uses to name REC ``index``."""
    return ((index & 0xF) | (((index >> 4) & 0xFF) << 8) | (((index >> 12) & 0xFF) << 16)
            | (((index >> 20) & 0xFF) << 32))
