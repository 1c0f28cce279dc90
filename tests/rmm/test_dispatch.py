"""The RMI dispatch table and SMC routing as the host sees it (rmi.md sections 1 and 2).

- The table covers exactly the 23 RMI 1.0 function IDs with the handler signatures of rmi.md 2.
- Unused RMI offsets and 1.0 commands not implemented yet return SMC_UNKNOWN (RMM 1.0 has no
  "not supported" status); X1..X3 read 0 and X4 keeps the caller's value (rmi.md 1.2: they are
  no RMI commands, so SMCCC's rule holds; a command's unused X4 reads 0, spec B1.2).
- Any other ID from the host (RSI, PSCI, SMC32 forms, random) gets SMC_UNKNOWN from EL3, which
  writes X0 only.
- The SMCCC SVE hint (bit 16) is ignored.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footprint import snapshot
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid, RmiStatus, pack_return
from rmm_mp.abi.smccc import SMC_UNKNOWN, SMCCC_SVE_HINT
from rmm_mp.rmm.dispatch import COMMANDS, failure_conditions
from rmm_mp.rmm.granule_state import GranuleState

SUCCESS = pack_return(RmiStatus.RMI_SUCCESS)
X1, X2, X3, X4, X5, X6 = (0x1111_0000_0000_0001, 0x2222_0000_0000_0002, 0x3333_0000_0000_0003,
                          0x4444_0000_0000_0004, 0x5555_0000_0000_0005, 0x6666_0000_0000_0006)
U64 = (1 << 64) - 1

# rmi.md section 2, "Handler signature table": inputs / outputs.
SIGNATURES = {
    RmiFid.RMI_VERSION: (1, 2),
    RmiFid.RMI_FEATURES: (1, 1),
    RmiFid.RMI_GRANULE_DELEGATE: (1, 0),
    RmiFid.RMI_GRANULE_UNDELEGATE: (1, 0),
    RmiFid.RMI_REALM_CREATE: (2, 0),
    RmiFid.RMI_REALM_DESTROY: (1, 0),
    RmiFid.RMI_REALM_ACTIVATE: (1, 0),
    RmiFid.RMI_REC_CREATE: (3, 0),
    RmiFid.RMI_REC_DESTROY: (1, 0),
    RmiFid.RMI_REC_ENTER: (2, 0),
    RmiFid.RMI_DATA_CREATE: (5, 0),
    RmiFid.RMI_DATA_CREATE_UNKNOWN: (3, 0),
    RmiFid.RMI_DATA_DESTROY: (2, 2),
    RmiFid.RMI_RTT_CREATE: (4, 0),
    RmiFid.RMI_RTT_DESTROY: (3, 2),
    RmiFid.RMI_RTT_FOLD: (3, 1),
    RmiFid.RMI_RTT_MAP_UNPROTECTED: (4, 0),
    RmiFid.RMI_RTT_UNMAP_UNPROTECTED: (3, 1),
    RmiFid.RMI_RTT_READ_ENTRY: (3, 4),
    RmiFid.RMI_PSCI_COMPLETE: (3, 0),
    RmiFid.RMI_REC_AUX_COUNT: (1, 1),
    RmiFid.RMI_RTT_INIT_RIPAS: (3, 1),
    RmiFid.RMI_RTT_SET_RIPAS: (4, 1),
}

# DEN0137 1.0-rel0 B4.3: the IDs of each command's failure conditions (B4.3.n.2), in the spec's
# table order. VERSION and FEATURES have none.
SPEC_FAILURE_CONDITIONS = {
    "RMI_DATA_CREATE": ("src_align", "src_bound", "src_pas", "data_align", "data_bound", "data_state", "data_bound2",
                        "rd_align", "rd_bound", "rd_state", "ipa_align", "ipa_bound", "realm_state", "rtt_walk",
                        "rtte_state"),
    "RMI_DATA_CREATE_UNKNOWN": ("data_align", "data_bound", "data_state", "data_bound2", "rd_align", "rd_bound",
                                "rd_state", "ipa_align", "ipa_bound", "rtt_walk", "rtte_state"),
    "RMI_DATA_DESTROY": ("rd_align", "rd_bound", "rd_state", "ipa_align", "ipa_bound", "rtt_walk", "rtte_state"),
    "RMI_FEATURES": (),
    "RMI_GRANULE_DELEGATE": ("gran_align", "gran_bound", "gran_state", "gran_gpt"),
    "RMI_GRANULE_UNDELEGATE": ("gran_align", "gran_bound", "gran_state"),
    "RMI_PSCI_COMPLETE": ("alias", "calling_align", "calling_bound", "calling_state", "target_align", "target_bound",
                          "target_state", "pending", "owner", "target", "status"),
    "RMI_REALM_ACTIVATE": ("rd_align", "rd_bound", "rd_state", "realm_state"),
    "RMI_REALM_CREATE": ("params_align", "params_bound", "params_pas", "params_valid", "params_supp", "alias",
                         "rd_align", "rd_bound", "rd_state", "rtt_align", "rtt_num_level", "rtt_state", "vmid_valid"),
    "RMI_REALM_DESTROY": ("rd_align", "rd_bound", "rd_state", "realm_live"),
    "RMI_REC_AUX_COUNT": ("rd_align", "rd_bound", "rd_state"),
    "RMI_REC_CREATE": ("params_align", "params_bound", "params_pas", "rec_align", "rec_bound", "rec_state",
                       "rd_align", "rd_bound", "rd_state", "realm_state", "num_recs", "mpidr_index", "num_aux",
                       "aux_align", "aux_alias", "aux_state"),
    "RMI_REC_DESTROY": ("rec_align", "rec_bound", "rec_gran_state", "rec_state"),
    "RMI_REC_ENTER": ("run_align", "run_bound", "run_pas", "rec_align", "rec_bound", "rec_gran_state", "realm_new",
                      "system_off", "rec_state", "rec_runnable", "rec_mmio", "rec_gicv3", "rec_psci"),
    "RMI_RTT_CREATE": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound", "rtt_align",
                       "rtt_bound", "rtt_state", "rtt_bound2", "rtt_walk", "rtte_state"),
    "RMI_RTT_DESTROY": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound", "rtt_walk",
                        "rtte_state", "rtt_live"),
    "RMI_RTT_FOLD": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound", "rtt_walk",
                     "rtte_state", "rtt_homo"),
    "RMI_RTT_INIT_RIPAS": ("rd_align", "rd_bound", "rd_state", "size_valid", "top_bound", "realm_state",
                           "base_align", "rtte_state", "top_gran_align", "no_progress"),
    "RMI_RTT_MAP_UNPROTECTED": ("attr_valid", "rd_align", "rd_bound", "rd_state", "level_bound", "addr_align",
                                "addr_bound", "ipa_align", "ipa_bound", "rtt_walk", "rtte_state"),
    "RMI_RTT_READ_ENTRY": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound"),
    "RMI_RTT_SET_RIPAS": ("rd_align", "rd_bound", "rd_state", "rec_align", "rec_bound", "rec_gran_state",
                          "rec_state", "rec_owner", "size_valid", "base_bound", "top_bound", "base_align",
                          "top_gran_align", "no_progress"),
    "RMI_RTT_UNMAP_UNPROTECTED": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound",
                                  "rtt_walk", "rtte_state"),
    "RMI_VERSION": (),
}

# rmi.md section 1.1 / 2: the RMI 1.0 function IDs are 0xC4000150 + these offsets.
RMI_1_0_OFFSETS = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E,
                   0x0F, 0x11, 0x12, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19}

UNUSED_RMI_FIDS = [0xC400_0156, 0xC400_0160, 0xC400_0163, *range(0xC400_016A, 0xC400_0190)]

NOT_IMPLEMENTED = sorted(fid for fid, cmd in COMMANDS.items() if cmd.handler is None)

NON_RMI_FIDS = {
    "RSI_VERSION": 0xC400_0190,
    "RSI_HOST_CALL": 0xC400_0199,
    "RSI last": 0xC400_01AF,
    "RMM-EL3 GTSI_DELEGATE": 0xC400_01B0,
    "RMM-EL3 BOOT_COMPLETE": 0xC400_01CF,
    "PSCI_VERSION": 0x8400_0000,
    "PSCI_CPU_ON64": 0xC400_0003,
    "PSCI_CPU_ON32": 0x8400_0003,
    "SMC32 RMI_VERSION": 0x8400_0150,
    "SMC32 RMI_GRANULE_DELEGATE": 0x8400_0151,
    "yielding RMI_VERSION (bit 31 clear)": 0x4400_0150,
    "below RMI range": 0xC400_014F,
    "RMI number in another OEN": 0xC500_0150,
    "SMCCC_VERSION": 0x8000_0000,
    "zero": 0,
    "random": 0x1234_5678,
    "all ones 32": 0xFFFF_FFFF,
}


# -- the table -------------------------------------------------------------------------------


def test_rmi_1_0_has_23_function_ids() -> None:
    """RmiFid lists exactly the 23 RMI 1.0 function IDs (0xC4000150 + rmi.md 2's offsets)."""
    assert {int(f) for f in RmiFid} == {0xC400_0150 + off for off in RMI_1_0_OFFSETS}
    assert len(RmiFid) == 23


def test_table_covers_exactly_rmi_1_0() -> None:
    """COMMANDS has one row per RMI 1.0 FID and no other, each row keyed by its own FID."""
    assert set(COMMANDS) == {int(f) for f in RmiFid}
    assert len(COMMANDS) == 23
    for fid, cmd in COMMANDS.items():
        assert cmd.fid == fid
        assert isinstance(cmd.fid, RmiFid)


@pytest.mark.parametrize("fid", list(RmiFid), ids=lambda f: f.name)
def test_table_signature(fid: RmiFid) -> None:
    """Each row's inputs/outputs match rmi.md section 2's handler signature table."""
    cmd = COMMANDS[fid]
    assert (cmd.inputs, cmd.outputs) == SIGNATURES[fid]


def test_failure_conditions_name_every_spec_condition() -> None:
    """Each handler module's FAILURE_CONDITIONS (the order it checks them in) names every failure
    condition of its command's B4.3 definition and no other; a label may appear twice (a
    condition checked at two moments, such as DATA_CREATE's src_pas)."""
    declared = failure_conditions()
    assert set(declared) == set(SPEC_FAILURE_CONDITIONS) == {f.name for f in RmiFid}
    for name, spec in SPEC_FAILURE_CONDITIONS.items():
        assert set(declared[name]) == set(spec), (name, sorted(set(spec) ^ set(declared[name])))


def test_implemented_flag_matches_handler() -> None:
    """Command.implemented is exactly 'has a handler'; VERSION, FEATURES, DELEGATE and
    UNDELEGATE are implemented."""
    for cmd in COMMANDS.values():
        assert cmd.implemented == (cmd.handler is not None)
    for fid in (RmiFid.RMI_VERSION, RmiFid.RMI_FEATURES, RmiFid.RMI_GRANULE_DELEGATE,
                RmiFid.RMI_GRANULE_UNDELEGATE):
        assert COMMANDS[fid].implemented


# -- RMI range: unused offsets and unimplemented commands --------------------------------------


def test_unused_rmi_offsets_return_smc_unknown(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """rmi.md 1.1: an RMI offset with no 1.0 command (0x156, 0x160, 0x163, 0x16A..0x18F) ->
    (SMC_UNKNOWN, 0, 0, 0, X4): the RMM zeroes X1..X3 and keeps X4 (no RMI command, so the SMCCC
    rule); nothing changes."""
    pa = machine.dram_base
    before = snapshot(machine, pa)
    for fid in UNUSED_RMI_FIDS:
        assert cpu0.smc(fid, pa, X2, X3, X4, X5, X6) == (SMC_UNKNOWN, 0, 0, 0, X4), hex(fid)
        assert cpu0.smc(fid | SMCCC_SVE_HINT, pa, X2, X3, X4) == (SMC_UNKNOWN, 0, 0, 0, X4), hex(fid)
    assert before.diff(snapshot(machine, pa)) == []
    assert not machine.dead


def test_every_rmi_1_0_command_is_implemented(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """Every RMI 1.0 command has a handler: none answers SMC_UNKNOWN, even to junk arguments
    (a delegated granule as every address), and a failing call leaves no footprint."""
    assert not NOT_IMPLEMENTED, [RmiFid(f).name for f in NOT_IMPLEMENTED]
    pa = machine.dram_base + 3 * machine.granule_size
    assert cpu0.smc(RmiFid.RMI_GRANULE_DELEGATE, pa) == (SUCCESS, 0, 0, 0, 0)
    before = snapshot(machine, pa)
    for fid in RmiFid:
        if fid in (RmiFid.RMI_GRANULE_UNDELEGATE, RmiFid.RMI_VERSION, RmiFid.RMI_FEATURES):
            continue
        x0 = cpu0.smc(fid, pa, pa, pa, X4, pa, pa)[0]
        assert x0 != SMC_UNKNOWN and x0 & 0xFF != SUCCESS, fid.name
    assert before.diff(snapshot(machine, pa)) == []
    assert machine.granule_table(0).state(3) == GranuleState.DELEGATED


# -- SVE hint ------------------------------------------------------------------------------


def test_sve_hint_is_ignored_version_features(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """SMCCC 1.3: bit 16 set on the FID gives the same result as without it (VERSION, FEATURES)."""
    for fid, arg in ((RmiFid.RMI_VERSION, 0x10000), (RmiFid.RMI_VERSION, 0x20000), (RmiFid.RMI_FEATURES, 0),
                     (RmiFid.RMI_FEATURES, 1)):
        plain = cpu0.smc(fid, arg, X2, X3, X4)
        hinted = cpu0.smc(int(fid) | SMCCC_SVE_HINT, arg, X2, X3, X4)
        assert hinted == plain
        assert plain[0] != SMC_UNKNOWN


def test_sve_hint_is_ignored_delegate(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """SVE hint on GRANULE_DELEGATE / UNDELEGATE: the commands run as without it (the granule
    is delegated and undelegated), and a failing call fails the same way."""
    table = machine.granule_table(0)
    pa = machine.dram_base + 4 * machine.granule_size
    delegate = int(RmiFid.RMI_GRANULE_DELEGATE) | SMCCC_SVE_HINT
    undelegate = int(RmiFid.RMI_GRANULE_UNDELEGATE) | SMCCC_SVE_HINT
    assert cpu0.smc(delegate, pa, 0, 0, X4) == (SUCCESS, 0, 0, 0, 0)
    assert table.state(4) == GranuleState.DELEGATED
    assert cpu0.smc(delegate, pa, 0, 0, X4) == cpu0.smc(RmiFid.RMI_GRANULE_DELEGATE, pa, 0, 0, X4)
    assert cpu0.smc(undelegate, pa, 0, 0, X4) == (SUCCESS, 0, 0, 0, 0)
    assert table.state(4) == GranuleState.NS


# -- non-RMI IDs from the host -----------------------------------------------------------------


@pytest.mark.parametrize("fid", list(NON_RMI_FIDS.values()), ids=list(NON_RMI_FIDS))
def test_non_rmi_fid_from_host(machine: Machine, cpu0, fid: int) -> None:  # type: ignore[no-untyped-def]
    """DESIGN 3: any non-RMI ID from the host (RSI, RMM-EL3, PSCI, SMC32 forms of RMI, random
    IDs) -> SMC_UNKNOWN from EL3 with X1..X4 as the caller passed them; nothing changes."""
    pa = machine.dram_base
    before = snapshot(machine, pa)
    assert cpu0.smc(fid, X1, X2, X3, X4, X5, X6) == (SMC_UNKNOWN, X1, X2, X3, X4)
    assert cpu0.smc(fid | SMCCC_SVE_HINT, pa, X2, X3, X4) == (SMC_UNKNOWN, pa, X2, X3, X4)
    assert cpu0.smc(fid) == (SMC_UNKNOWN, 0, 0, 0, 0)
    assert before.diff(snapshot(machine, pa)) == []
    assert not machine.dead


# -- property: smc never raises, returns five u64 ------------------------------------------

_INTERESTING_FIDS = (
    [int(f) for f in RmiFid] + UNUSED_RMI_FIDS + list(NON_RMI_FIDS.values())
    + [int(f) | SMCCC_SVE_HINT for f in RmiFid]
)
_fids = st.one_of(st.integers(0, (1 << 32) - 1), st.sampled_from(_INTERESTING_FIDS))
_regs = st.lists(st.integers(-(1 << 63), U64), max_size=6)
_RMI_RANGE = range(0xC400_0150, 0xC400_0190)


def test_smc_property_never_raises() -> None:
    """Property (hypothesis): for any FID in [0, 2^32) and any register values in
    [-2^63, 2^64), cpu.smc does not raise and returns a 5-tuple of ints in [0, 2^64); for a FID
    outside the RMI range the result is (SMC_UNKNOWN, X1..X4 as passed, mod 2^64); for an
    unused RMI number it is (SMC_UNKNOWN, 0, 0, 0, X4); for any FID that is not an RMI 1.0
    command the machine snapshot is unchanged; the machine never dies."""
    with Machine.create("host", cpus=1) as m:
        cpu = m.cpu(0)

        @settings(max_examples=400, deadline=None, database=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(fid=_fids, regs=_regs)
        def prop(fid: int, regs: list[int]) -> None:
            decoded = fid & ~SMCCC_SVE_HINT
            is_command = decoded in COMMANDS
            before = None if is_command else snapshot(m)
            result = cpu.smc(fid, *regs)
            assert isinstance(result, tuple) and len(result) == 5
            assert all(type(r) is int and 0 <= r <= U64 for r in result)
            passed = [r & U64 for r in regs] + [0] * (6 - len(regs))
            if decoded not in _RMI_RANGE:
                assert result == (SMC_UNKNOWN, *passed[:4])
            elif not is_command:
                assert result == (SMC_UNKNOWN, 0, 0, 0, passed[3])
            else:
                assert result[4] == 0 or COMMANDS[decoded].outputs == 4   # B1.2: no output, MBZ
            if before is not None:
                assert before.diff(snapshot(m)) == []
            assert not m.dead

        prop()


def test_function_id_is_w0(machine) -> None:  # type: ignore[no-untyped-def]
    """SMCCC passes the function ID in W0: bits [63:32] of X0 are ignored, so 0x1_C4000150 is
    RMI_VERSION (as TF-A decodes it)."""
    cpu = machine.cpu(0)
    assert cpu.smc(0x1_C400_0150, 0x10000) == cpu.smc(0xC400_0150, 0x10000) == (0, 0x10000, 0x10000, 0, 0)
