"""Which histogram slot each measured call uses, and its spec name.

Slots are computed from the function ID by arithmetic so that recording needs no lookup:
RMI function numbers 0x150..0x16E use slots 0..30 and every higher RMI number (no command in
RMI 1.0) shares slot 31, RSI 0x190..0x1AF slots 32..63, PSCI function numbers 0x00..0x1E
slots 64..94 (the SMC32 and SMC64 forms of a number share its slot), REC exit reasons slots
96..111, host activities 112..127. Slot 95 is SMCCC_VERSION (0x8000_0000, which the RMM answers with PSCI): its function
number 0 would otherwise make it PSCI_VERSION; PSCI leaves function number 0x1F unused, and a
realm's call of it (NOT_SUPPORTED) is not recorded at all (psci_slot returns -1), as an SMC the
RMM does not know is not.

This module owns the slot map and names. It must not record anything.
"""

from __future__ import annotations

from rmm_mp.abi.rmi import RmiFid

SLOTS = 128
RMI_BASE, RSI_BASE, PSCI_BASE, EXIT_BASE, HOST_BASE = 0, 32, 64, 96, 112

_RMI_FN0 = 0x150
_RSI_FN0 = 0x190

RMI_UNUSED_SLOT = RMI_BASE + 31
SMCCC_VERSION_SLOT = PSCI_BASE + 31
SMCCC_VERSION_FID = 0x8000_0000
_PSCI_FN_RESERVED = 0x1F
"""The PSCI function number whose slot SMCCC_VERSION takes (reserved in PSCI 1.1)."""

_names: dict[int, str] = {slot: f"RMI_UNUSED_{_RMI_FN0 + slot:#x}" for slot in range(31)}
_names.update({fid - 0xC400_0000 - _RMI_FN0 + RMI_BASE: fid.name for fid in RmiFid})
_names[RMI_UNUSED_SLOT] = "RMI_UNUSED_0x16f_0x18f"


_OTHER_PSCI = {0x05: "PSCI_MIGRATE", 0x06: "PSCI_MIGRATE_INFO_TYPE", 0x07: "PSCI_MIGRATE_INFO_UP_CPU",
               0x0B: "PSCI_CPU_FREEZE", 0x0C: "PSCI_CPU_DEFAULT_SUSPEND", 0x0D: "PSCI_NODE_HW_STATE",
               0x0E: "PSCI_SYSTEM_SUSPEND", 0x0F: "PSCI_SET_SUSPEND_MODE", 0x10: "PSCI_STAT_RESIDENCY",
               0x11: "PSCI_STAT_COUNT", 0x12: "PSCI_SYSTEM_RESET2", 0x13: "PSCI_MEM_PROTECT",
               0x14: "PSCI_MEM_PROTECT_CHECK_RANGE"}
"""PSCI 1.1's function numbers (ARM DEN 0022, table 5.1) that the realm's PSCI does not implement."""


def _register_spec_names() -> None:
    from rmm_mp.abi.psci import PsciFid
    from rmm_mp.abi.rsi import RsiFid
    from rmm_mp.abi.structs import RmiRecExitReason
    for fid in RsiFid:
        _names[RSI_BASE + fid - 0xC400_0190] = fid.name
    for pfid in PsciFid:
        if pfid != PsciFid.SMCCC_VERSION:
            _names.setdefault(PSCI_BASE + (pfid & 0x1F), pfid.name.removesuffix("_SMC32"))
    # The other PSCI 1.1 function numbers: the RMM answers them NOT_SUPPORTED, and the report
    # names them as the PSCI specification does rather than by slot number.
    for number, name in _OTHER_PSCI.items():
        _names.setdefault(PSCI_BASE + number, name)
    for number in range(0x15, _PSCI_FN_RESERVED):
        _names.setdefault(PSCI_BASE + number, f"PSCI_UNASSIGNED_{number:#x}")
    _names[SMCCC_VERSION_SLOT] = "SMCCC_VERSION"
    for reason in RmiRecExitReason:
        _names[EXIT_BASE + reason] = reason.name.replace("RMI_EXIT_", "EXIT_")


_register_spec_names()


def rmi_slot(fid: int) -> int:
    """Slot of a function ID in the RMI range 0x150..0x18F (SVE hint already stripped)."""
    return min((fid & 0xFFFF) - _RMI_FN0, RMI_UNUSED_SLOT)


def psci_slot(fid: int) -> int:
    """Slot of a PSCI function ID (SMC32 or SMC64 form) or of SMCCC_VERSION; -1 (not recorded,
    as an unknown SMC is not) for PSCI function number 0x1F, reserved in PSCI 1.1, whose slot
    PSCI_BASE + 31 is SMCCC_VERSION's: counting it there showed SMCCC_VERSION calls the realm
    never made."""
    if fid == SMCCC_VERSION_FID:
        return SMCCC_VERSION_SLOT
    number = fid & 0x1F
    return -1 if number == _PSCI_FN_RESERVED else PSCI_BASE + number


def name(slot: int) -> str:
    """Spec name of the call measured in ``slot`` (RMI_GRANULE_DELEGATE, EXIT_HOST_CALL ...)."""
    return _names.get(slot, f"SLOT_{slot}")


def register(slot: int, spec_name: str) -> None:
    """Name a slot (used by the RSI, PSCI, exit and host tables as they are defined)."""
    if not 0 <= slot < SLOTS:
        raise ValueError(f"slot = {slot}: expected 0..{SLOTS - 1}")
    _names[slot] = spec_name


def named_slots() -> dict[int, str]:
    return dict(_names)
