"""The numbers of rmm_mp/abi against literals copied from DEN0137 1.0-rel0's tables.

The structure layouts, enumerations and flag bits are shared by the RMM side and the host side
of rmm-mp, so a wrong offset or encoding would be self-consistent and invisible to every
behavioural test: only a comparison with the specification's own tables catches it. The
literals below are transcribed from the spec (section named per table); RMI function IDs and
register counts are pinned by tests/rmm/test_dispatch.py and FeatureRegister0 values by
tests/rmm/test_rmi_system.py, so they are not repeated here except where those leave a gap.
"""

from __future__ import annotations

import enum

import pytest

from rmm_mp.abi import psci, rmi, rsi, structs

# (name, byte offset, struct format, element count): B4.4.12, B4.4.19, B4.4.14 (= A4.2.1),
# B4.4.16 (= A4.3.1), B5.4.5, B5.4.3. Formats: B/H/I/Q = UInt8/16/32/64 (or Bits, Address and
# 8-bit enums), q = Int64, 64s = Bits512.
SPEC_LAYOUTS: dict[str, tuple[structs.Layout, int, tuple[tuple[str, int, str, int], ...]]] = {
    "RmiRealmParams": (structs.RMI_REALM_PARAMS, 0x1000, (
        ("flags", 0x0, "Q", 1), ("s2sz", 0x8, "B", 1), ("sve_vl", 0x10, "B", 1), ("num_bps", 0x18, "B", 1),
        ("num_wps", 0x20, "B", 1), ("pmu_num_ctrs", 0x28, "B", 1), ("hash_algo", 0x30, "B", 1),
        ("rpv", 0x400, "64s", 1), ("vmid", 0x800, "H", 1), ("rtt_base", 0x808, "Q", 1),
        ("rtt_level_start", 0x810, "q", 1), ("rtt_num_start", 0x818, "I", 1))),
    "RmiRecParams": (structs.RMI_REC_PARAMS, 0x1000, (
        ("flags", 0x0, "Q", 1), ("mpidr", 0x100, "Q", 1), ("pc", 0x200, "Q", 1), ("gprs", 0x300, "Q", 8),
        ("num_aux", 0x800, "Q", 1), ("aux", 0x808, "Q", 16))),
    "RmiRecEnter": (structs.RMI_REC_ENTER, 0x800, (
        ("flags", 0x0, "Q", 1), ("gprs", 0x200, "Q", 31), ("gicv3_hcr", 0x300, "Q", 1),
        ("gicv3_lrs", 0x308, "Q", 16))),
    "RmiRecExit": (structs.RMI_REC_EXIT, 0x800, (
        ("exit_reason", 0x0, "B", 1), ("esr", 0x100, "Q", 1), ("far", 0x108, "Q", 1), ("hpfar", 0x110, "Q", 1),
        ("gprs", 0x200, "Q", 31), ("gicv3_hcr", 0x300, "Q", 1), ("gicv3_lrs", 0x308, "Q", 16),
        ("gicv3_misr", 0x388, "Q", 1), ("gicv3_vmcr", 0x390, "Q", 1), ("cntp_ctl", 0x400, "Q", 1),
        ("cntp_cval", 0x408, "Q", 1), ("cntv_ctl", 0x410, "Q", 1), ("cntv_cval", 0x418, "Q", 1),
        ("ripas_base", 0x500, "Q", 1), ("ripas_top", 0x508, "Q", 1), ("ripas_value", 0x510, "B", 1),
        ("imm", 0x600, "H", 1), ("pmu_ovf_status", 0x700, "B", 1))),
    "RsiRealmConfig": (structs.RSI_REALM_CONFIG, 0x1000, (
        ("ipa_width", 0x0, "Q", 1), ("hash_algo", 0x8, "B", 1), ("rpv", 0x200, "64s", 1))),
    "RsiHostCall": (structs.RSI_HOST_CALL, 0x100, (("imm", 0x0, "H", 1), ("gprs", 0x8, "Q", 31))),
}


@pytest.mark.parametrize("name", SPEC_LAYOUTS)
def test_layout_is_the_spec_table(name: str) -> None:
    """Every member of the spec's structure table, and no other, at the spec's offset with the
    spec's width, signedness and array length; the structure has the spec's size."""
    layout, size, members = SPEC_LAYOUTS[name]
    assert layout.size == size
    assert {(f.name, f.offset, f.fmt, f.count) for f in layout.fields.values()} == set(members)


def test_rec_run_holds_enter_then_exit() -> None:
    """B4.4.20 RmiRecRun: enter at 0x0, exit at 0x800, 0x1000 bytes in all."""
    assert structs.REC_EXIT_OFFSET == 0x800 == structs.RMI_REC_ENTER.size
    assert structs.REC_EXIT_OFFSET + structs.RMI_REC_EXIT.size == 0x1000


def _values(e: type[enum.Enum]) -> dict[str, int]:
    return {m.name: int(m.value) for m in e}


SPEC_ENUMS: list[tuple[type[enum.Enum], dict[str, int]]] = [
    (rmi.RmiStatus, {"RMI_SUCCESS": 0, "RMI_ERROR_INPUT": 1, "RMI_ERROR_REALM": 2, "RMI_ERROR_REC": 3,
                     "RMI_ERROR_RTT": 4}),                                                      # B4.4.25
    (structs.RmiRecExitReason, {"RMI_EXIT_SYNC": 0, "RMI_EXIT_IRQ": 1, "RMI_EXIT_FIQ": 2, "RMI_EXIT_PSCI": 3,
                                "RMI_EXIT_RIPAS_CHANGE": 4, "RMI_EXIT_HOST_CALL": 5,
                                "RMI_EXIT_SERROR": 6}),                                         # B4.4.17
    (structs.RmiRipas, {"EMPTY": 0, "RAM": 1, "DESTROYED": 2}),                                 # B4.4.23
    (structs.RmiRttEntryState, {"UNASSIGNED": 0, "ASSIGNED": 1, "TABLE": 2}),                   # B4.4.24
    (structs.RmiHashAlgorithm, {"RMI_HASH_SHA_256": 0, "RMI_HASH_SHA_512": 1}),                 # B4.4.7
    (structs.RmiDataFlags, {"RMI_NO_MEASURE_CONTENT": 0, "RMI_MEASURE_CONTENT": 1}),            # B4.4.3
    (structs.RmiResponse, {"ACCEPT": 0, "REJECT": 1}),                                          # B4.4.22
    (rsi.RsiStatus, {"RSI_SUCCESS": 0, "RSI_ERROR_INPUT": 1, "RSI_ERROR_STATE": 2, "RSI_INCOMPLETE": 3,
                     "RSI_ERROR_UNKNOWN": 4}),                                                  # B5.4.1
    (rsi.RsiRipas, {"RSI_EMPTY": 0, "RSI_RAM": 1, "RSI_DESTROYED": 2, "RSI_DEV": 3}),           # B5.4.7
    (rsi.RsiResponse, {"RSI_ACCEPT": 0, "RSI_REJECT": 1}),                                      # B5.4.6
    (psci.PsciReturn, {"PSCI_SUCCESS": 0, "PSCI_NOT_SUPPORTED": -1, "PSCI_INVALID_PARAMETERS": -2,
                       "PSCI_DENIED": -3, "PSCI_ALREADY_ON": -4, "PSCI_ON_PENDING": -5,
                       "PSCI_INTERNAL_FAILURE": -6, "PSCI_NOT_PRESENT": -7, "PSCI_DISABLED": -8,
                       "PSCI_INVALID_ADDRESS": -9}),                                            # B6.4.2
    # Function IDs: B5.3.x and B6.3.x "FID, value ..." rows; the SMC32 forms are the SMC64 ones
    # with bit 30 clear.
    (rsi.RsiFid, {"RSI_VERSION": 0xC400_0190, "RSI_FEATURES": 0xC400_0191, "RSI_MEASUREMENT_READ": 0xC400_0192,
                  "RSI_MEASUREMENT_EXTEND": 0xC400_0193, "RSI_ATTESTATION_TOKEN_INIT": 0xC400_0194,
                  "RSI_ATTESTATION_TOKEN_CONTINUE": 0xC400_0195, "RSI_REALM_CONFIG": 0xC400_0196,
                  "RSI_IPA_STATE_SET": 0xC400_0197, "RSI_IPA_STATE_GET": 0xC400_0198,
                  "RSI_HOST_CALL": 0xC400_0199}),
    (psci.PsciFid, {"PSCI_VERSION": 0x8400_0000, "PSCI_CPU_SUSPEND": 0xC400_0001, "PSCI_CPU_OFF": 0x8400_0002,
                    "PSCI_CPU_ON": 0xC400_0003, "PSCI_AFFINITY_INFO": 0xC400_0004,
                    "PSCI_SYSTEM_OFF": 0x8400_0008, "PSCI_SYSTEM_RESET": 0x8400_0009,
                    "PSCI_FEATURES": 0x8400_000A, "PSCI_CPU_SUSPEND_SMC32": 0x8400_0001,
                    "PSCI_CPU_ON_SMC32": 0x8400_0003, "PSCI_AFFINITY_INFO_SMC32": 0x8400_0004,
                    "SMCCC_VERSION": 0x8000_0000}),
    # Flag bits: the fieldset tables of B4.4.11, B4.4.13 and B4.4.15.
    (structs.RmiRealmFlags, {"LPA2": 1 << 0, "SVE": 1 << 1, "PMU": 1 << 2}),
    (structs.RmiRecCreateFlags, {"RUNNABLE": 1 << 0}),
    (structs.RmiRecEnterFlags, {"EMUL_MMIO": 1 << 0, "INJECT_SEA": 1 << 1, "TRAP_WFI": 1 << 2,
                                "TRAP_WFE": 1 << 3, "RIPAS_RESPONSE": 1 << 4}),
]


@pytest.mark.parametrize("e, spec", SPEC_ENUMS, ids=[e.__name__ for e, _ in SPEC_ENUMS])
def test_encodings_are_the_spec_table(e: type[enum.Enum], spec: dict[str, int]) -> None:
    """Every encoding of the spec's table, and no other (PSCI_OFF, 1, is AffinityInfo.OFF)."""
    assert _values(e) == spec


def test_psci_off_and_change_destroyed() -> None:
    """B6.4.2 PSCI_OFF = 1 (AFFINITY_INFO's answer for an off REC); B5.4.8/B5.4.9
    RSI_CHANGE_DESTROYED = 1 in bit 0 of RsiRipasChangeFlags."""
    assert int(psci.AffinityInfo.OFF) == 1 and int(psci.AffinityInfo.ON) == 0
    assert rsi.RSI_CHANGE_DESTROYED == 1


def test_feature_register0_fields_are_b4_4_6() -> None:
    """RmiFeatureRegister0 (B4.4.6) field positions (lsb, width), all twelve, LPA2 included
    (the platform literals of test_rmi_system leave LPA2 at 0)."""
    spec = {"S2SZ": (0, 8), "LPA2": (8, 1), "SVE_EN": (9, 1), "SVE_VL": (10, 4), "NUM_BPS": (14, 6),
            "NUM_WPS": (20, 6), "PMU_EN": (26, 1), "PMU_NUM_CTRS": (27, 5), "HASH_SHA_256": (32, 1),
            "HASH_SHA_512": (33, 1), "GICV3_NUM_LRS": (34, 4), "MAX_RECS_ORDER": (38, 4)}
    # Dunder names left out: Python 3.13 gives every class a __static_attributes__ tuple.
    ours = {k: v for k, v in vars(rmi.FeatureRegister0).items() if isinstance(v, tuple) and not k.startswith("__")}
    assert ours == spec


def test_register_encodings() -> None:
    """RmiCommandReturnCode (B4.4.1: status 7:0, index 15:8); Rmi/RsiInterfaceVersion 1.0
    (B4.4.9, B5.4.4: major 30:16, minor 15:0); PSCI 1.1 the same way (B6.4.1); RmiRecMpidr SBZ
    bits 7:4 and 63:32 (B4.4.18)."""
    assert rmi.pack_return(rmi.RmiStatus.RMI_ERROR_RTT, 2) == 0x0204
    assert rmi.unpack_return(0x0304) == (rmi.RmiStatus.RMI_ERROR_RTT, 3)
    assert rmi.RMI_ABI_VERSION == rsi.RSI_ABI_VERSION == 0x1_0000
    assert psci.PSCI_VERSION_1_1 == 0x1_0001
    assert structs.RMI_REC_MPIDR_SBZ == 0xFFFF_FFFF_0000_00F0
