"""EL3: the world switch's saved contexts and the GTSI service (RMM -> EL3).

World switch (TF-A RMMD, rmm_mp/el3/monitor.py): a forwarded RMI call saves the Non-secure
context, enters the RMM with X0 = FID, and returns through RMM_RMI_REQ_COMPLETE, whose X1..X5
carry the RMI results X0..X4. EL3 restores the Non-secure context with X0..X4 = the results and
X5..X7 as the caller left them. Saved contexts are 8-byte little-endian registers in the CPU's
shared area (rmm_mp/hw/cpuarea.py).

GTSI (TF-A rmm-el3 interface): delegate moves a DRAM granule NS -> Realm PAS, undelegate
Realm -> NS; a PA that is not an aligned DRAM granule is E_RMM_BAD_ADDR, a granule not in the
source PAS is E_RMM_BAD_PAS, an unknown function is E_RMM_UNK.
"""

from __future__ import annotations

import struct

import pytest

from footprint import snapshot
from rmm_mp import Machine
from rmm_mp.abi.el3 import RmmEl3Fid, RmmEl3Status
from rmm_mp.abi.rmi import RmiFid, RmiStatus, pack_return
from rmm_mp.abi.smccc import SMC_UNKNOWN
from rmm_mp.el3.gtsi import Gtsi
from rmm_mp.hw.control import OFF_GPT_GENERATION
from rmm_mp.hw.cpuarea import OFF_NS_CTX, OFF_REALM_CTX
from rmm_mp.hw.gpt import Pas

REQ_COMPLETE = 0xC400_018F
SUCCESS = pack_return(RmiStatus.RMI_SUCCESS)
ERROR_INPUT = pack_return(RmiStatus.RMI_ERROR_INPUT)
X1, X2, X3, X4, X5, X6 = (0x1111_1111, 0x2222_2222, 0x3333_3333, 0x4444_4444_4444_4444,
                          0x5555_5555_5555_5555, 0x6666_6666_6666_6666)

DELEGATE = RmmEl3Fid.RMM_GTSI_DELEGATE
UNDELEGATE = RmmEl3Fid.RMM_GTSI_UNDELEGATE


def _ctx(cpu, offset: int, n: int) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    return struct.unpack_from(f"<{n}Q", cpu.area.buf, offset)


def _pa(machine: Machine, idx: int) -> int:
    return machine.dram_base + idx * machine.granule_size


@pytest.fixture(params=["timed", "untimed"])
def cpu0(machine: Machine, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """CPU 0 entering EL3 through the timed entry (recording on, the default) and through the
    untimed one (recording and tracing off): both must switch worlds identically."""
    cpu = machine.cpu(0)
    if request.param == "untimed":
        cpu.set_recording(False)
    expected = cpu.monitor.smc_from_ns if request.param == "timed" else cpu.monitor.smc_from_ns_untimed
    assert cpu._enter == expected
    return cpu


# -- world switch ----------------------------------------------------------------------------


def test_req_complete_value() -> None:
    """RMM_RMI_REQ_COMPLETE is FID 0xC400018F (RMI offset 0x3F)."""
    assert int(RmmEl3Fid.RMM_RMI_REQ_COMPLETE) == REQ_COMPLETE


def test_contexts_after_successful_call(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """After RMI_VERSION(1.0) with X2..X6 set: the saved NS context holds X0..X4 = the results
    and X5, X6 = the caller's X5, X6; the saved Realm context holds X0 = REQ_COMPLETE and
    X1..X5 = the results."""
    regs = cpu0.smc(RmiFid.RMI_VERSION, 0x10000, X2, X3, X4, X5, X6)
    assert regs == (SUCCESS, 0x10000, 0x10000, 0, 0)
    assert _ctx(cpu0, OFF_NS_CTX, 7) == (*regs, X5, X6)
    assert _ctx(cpu0, OFF_REALM_CTX, 6) == (REQ_COMPLETE, *regs)


def test_contexts_after_failing_call(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """After a failing RMI_GRANULE_DELEGATE (unaligned PA): the NS context holds
    (ERROR_INPUT, 0, 0, 0, 0, X5, X6) and the Realm context (REQ_COMPLETE, ERROR_INPUT, 0, 0,
    0, 0): X4 is no output, so it reads 0 (spec B1.2); X5 and X6 are EL3's to restore."""
    regs = cpu0.smc(RmiFid.RMI_GRANULE_DELEGATE, machine.dram_base + 8, X2, X3, X4, X5, X6)
    assert regs == (ERROR_INPUT, 0, 0, 0, 0)
    assert _ctx(cpu0, OFF_NS_CTX, 7) == (ERROR_INPUT, 0, 0, 0, 0, X5, X6)
    assert _ctx(cpu0, OFF_REALM_CTX, 6) == (REQ_COMPLETE, ERROR_INPUT, 0, 0, 0, 0)


def test_contexts_follow_each_call(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """Two calls in a row: the saved contexts describe the latest call (FEATURES after
    VERSION), not a mix of both."""
    cpu0.smc(RmiFid.RMI_VERSION, 0x10000, X2, X3, X4, X5, X6)
    regs = cpu0.smc(RmiFid.RMI_FEATURES, 0, 7, 8, 9, 10, 11)
    assert regs[0] == SUCCESS and regs[2:] == (0, 0, 0)
    assert _ctx(cpu0, OFF_NS_CTX, 7) == (*regs, 10, 11)
    assert _ctx(cpu0, OFF_REALM_CTX, 6) == (REQ_COMPLETE, *regs)


@pytest.mark.parametrize("high", [0, 0xABCD_0000_0000_0000], ids=["w0", "x0-high-bits"])
def test_contexts_as_the_rmm_is_entered(machine: Machine, cpu0, high: int) -> None:  # type: ignore[no-untyped-def]
    """While the RMM runs the call: the NS context holds X0..X6 as the caller passed them (X0
    with its bits [63:32]) and X7 = 0, the Realm context X0 = W0 and the NS X1..X7; after the
    call the Realm context's X6 and X7 are still the entry's."""
    monitor = cpu0.monitor
    rmm, seen = monitor.rmm, []

    def entered(*regs: int) -> tuple[int, ...]:
        seen.append((_ctx(cpu0, OFF_NS_CTX, 8), _ctx(cpu0, OFF_REALM_CTX, 8)))
        return rmm(*regs)

    monitor.rmm = entered
    try:
        regs = cpu0.smc(high | RmiFid.RMI_VERSION, 0x10000, X2, X3, X4, X5, X6)
    finally:
        monitor.rmm = rmm
    assert regs == (SUCCESS, 0x10000, 0x10000, 0, 0)
    assert seen == [((high | RmiFid.RMI_VERSION, 0x10000, X2, X3, X4, X5, X6, 0),
                     (int(RmiFid.RMI_VERSION), 0x10000, X2, X3, X4, X5, X6, 0))]
    assert _ctx(cpu0, OFF_REALM_CTX, 8) == (REQ_COMPLETE, *regs, X6, 0)


def test_contexts_are_per_cpu(machine: Machine) -> None:
    """A call on CPU 1 fills CPU 1's area only: CPU 0's saved contexts keep its own last call."""
    cpu0, cpu1 = machine.cpu(0), machine.cpu(1)
    r0 = cpu0.smc(RmiFid.RMI_VERSION, 0x10000, 0, 0, X4, X5, X6)
    r1 = cpu1.smc(RmiFid.RMI_FEATURES, 5, 0, 0, 44, 55, 66)
    assert _ctx(cpu0, OFF_NS_CTX, 7) == (*r0, X5, X6)
    assert _ctx(cpu0, OFF_REALM_CTX, 6) == (REQ_COMPLETE, *r0)
    assert _ctx(cpu1, OFF_NS_CTX, 7) == (*r1, 55, 66)
    assert _ctx(cpu1, OFF_REALM_CTX, 6) == (REQ_COMPLETE, *r1)


def test_non_rmi_call_does_not_enter_realm_world(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """An RSI FID from the host is answered by EL3 (SMC_UNKNOWN, X1..X4 as passed) without a
    world switch: the saved Realm context still holds the previous RMI call's completion."""
    regs = cpu0.smc(RmiFid.RMI_VERSION, 0x10000)
    realm_before = _ctx(cpu0, OFF_REALM_CTX, 6)
    assert realm_before == (REQ_COMPLETE, *regs)
    assert cpu0.smc(0xC400_0190, X1, X2, X3, X4, X5, X6) == (SMC_UNKNOWN, X1, X2, X3, X4)
    assert _ctx(cpu0, OFF_REALM_CTX, 6) == realm_before


# -- GTSI --------------------------------------------------------------------------------------


def test_gtsi_delegate_ns_granule(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """GTSI_DELEGATE of an NS DRAM granule -> E_RMM_OK (X1 = 0) and its PAS becomes Realm; no
    other GPT entry changes and EL3 does not touch granule states."""
    idx = 30
    before = snapshot(machine)
    assert cpu0.monitor.smc_from_realm(DELEGATE, _pa(machine, idx)) == (RmmEl3Status.E_RMM_OK, 0, 0)
    after = snapshot(machine)
    assert machine.gpt.pas(idx) == Pas.REALM
    assert [i for i, (a, b) in enumerate(zip(before.gpt, after.gpt)) if a != b] == [idx]
    assert before.words == after.words and before.locks == after.locks


def test_gtsi_delegate_realm_granule(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """GTSI_DELEGATE of a granule already in the Realm PAS -> E_RMM_BAD_PAS, PAS unchanged."""
    pa = _pa(machine, 31)
    assert cpu0.monitor.smc_from_realm(DELEGATE, pa)[0] == RmmEl3Status.E_RMM_OK
    before = snapshot(machine)
    assert cpu0.monitor.smc_from_realm(DELEGATE, pa)[0] == RmmEl3Status.E_RMM_BAD_PAS
    assert before.diff(snapshot(machine)) == []
    assert machine.gpt.pas(31) == Pas.REALM


def test_gtsi_delegate_secure_granule(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """GTSI_DELEGATE of a DRAM granule in the Secure region -> E_RMM_BAD_PAS, still Secure."""
    base, size = machine.secure_regions[0]
    before = snapshot(machine)
    for pa in (base, base + size - machine.granule_size):
        assert cpu0.monitor.smc_from_realm(DELEGATE, pa)[0] == RmmEl3Status.E_RMM_BAD_PAS
        assert machine.gpt.pas((pa - machine.dram_base) // machine.granule_size) == Pas.SECURE
    assert before.diff(snapshot(machine)) == []


@pytest.mark.parametrize("where", ["unaligned", "unaligned-by-1", "mmio", "below-dram", "past-dram",
                                   "beyond-pa-range"])
def test_gtsi_bad_address(machine: Machine, cpu0, where: str) -> None:  # type: ignore[no-untyped-def]
    """GTSI_DELEGATE and GTSI_UNDELEGATE of an unaligned or non-DRAM PA -> E_RMM_BAD_ADDR and no
    GPT entry changes."""
    dram_end = machine.dram_base + machine.granule_count * machine.granule_size
    pa = {
        "unaligned": machine.dram_base + 0x10,
        "unaligned-by-1": machine.dram_base + 1,
        "mmio": machine.mmio_regions[0][0],
        "below-dram": machine.dram_base - machine.granule_size,
        "past-dram": dram_end,
        "beyond-pa-range": 1 << machine.pa_bits,
    }[where]
    before = snapshot(machine)
    assert cpu0.monitor.smc_from_realm(DELEGATE, pa)[0] == RmmEl3Status.E_RMM_BAD_ADDR
    assert cpu0.monitor.smc_from_realm(UNDELEGATE, pa)[0] == RmmEl3Status.E_RMM_BAD_ADDR
    assert before.diff(snapshot(machine)) == []


def test_gtsi_undelegate_ns_granule(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """GTSI_UNDELEGATE of a granule in the NS PAS -> E_RMM_BAD_PAS, PAS unchanged."""
    before = snapshot(machine)
    assert cpu0.monitor.smc_from_realm(UNDELEGATE, _pa(machine, 32))[0] == RmmEl3Status.E_RMM_BAD_PAS
    assert machine.gpt.pas(32) == Pas.NS
    assert before.diff(snapshot(machine)) == []


def test_gtsi_undelegate_secure_granule(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """GTSI_UNDELEGATE of a Secure granule -> E_RMM_BAD_PAS: EL3 never moves Secure memory."""
    base, _ = machine.secure_regions[0]
    assert cpu0.monitor.smc_from_realm(UNDELEGATE, base)[0] == RmmEl3Status.E_RMM_BAD_PAS
    assert machine.gpt.pas((base - machine.dram_base) // machine.granule_size) == Pas.SECURE


def test_gtsi_round_trip(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """GTSI_DELEGATE then GTSI_UNDELEGATE of one granule: E_RMM_OK twice, PAS back to NS."""
    pa = _pa(machine, 33)
    assert cpu0.monitor.smc_from_realm(DELEGATE, pa) == (RmmEl3Status.E_RMM_OK, 0, 0)
    assert cpu0.monitor.smc_from_realm(UNDELEGATE, pa) == (RmmEl3Status.E_RMM_OK, 0, 0)
    assert machine.gpt.pas(33) == Pas.NS


def test_gtsi_invalidates_cached_gpt_entries_after_each_transition(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """Every transition that changes the GPT bumps the GPT generation (TLBI PAALLOS: CPUs drop
    translations of the old PAS); a refused one changes nothing and invalidates nothing."""
    def generation() -> int:
        return machine.control.view.load_u64(OFF_GPT_GENERATION)

    pa = _pa(machine, 35)
    steps = [(DELEGATE, RmmEl3Status.E_RMM_OK, 1), (DELEGATE, RmmEl3Status.E_RMM_BAD_PAS, 0),
             (UNDELEGATE, RmmEl3Status.E_RMM_OK, 1), (UNDELEGATE, RmmEl3Status.E_RMM_BAD_PAS, 0)]
    for fid, status, bumps in steps:
        before = generation()
        assert cpu0.monitor.smc_from_realm(fid, pa)[0] == status
        assert generation() - before == bumps, (fid, status)


def test_gtsi_without_a_tlb_changes_the_gpt_alone(machine: Machine) -> None:
    """A Gtsi made without a TLB (nothing caches GPT entries) transitions all the same."""
    gtsi = Gtsi(machine.gpt, machine.dram_base, machine.granule_count)
    pa = _pa(machine, 36)
    assert gtsi.delegate(pa) == RmmEl3Status.E_RMM_OK
    assert machine.gpt.pas(36) == Pas.REALM
    assert gtsi.undelegate(pa) == RmmEl3Status.E_RMM_OK
    assert machine.gpt.pas(36) == Pas.NS


@pytest.mark.parametrize("fid", [0xC400_01BF, 0xC400_01C0, 0xC400_0150, 0x8400_0000, 0])
def test_gtsi_unknown_fid(machine: Machine, cpu0, fid: int) -> None:  # type: ignore[no-untyped-def]
    """An RMM -> EL3 SMC with a FID EL3 does not serve -> E_RMM_UNK (-1), nothing changes."""
    assert fid not in {int(f) for f in RmmEl3Fid}
    pa = _pa(machine, 34)
    before = snapshot(machine)
    assert cpu0.monitor.smc_from_realm(fid, pa) == (RmmEl3Status.E_RMM_UNK, 0, 0)
    assert before.diff(snapshot(machine)) == []


def test_unused_rmi_numbers_do_not_land_in_rsi_slots(machine) -> None:  # type: ignore[no-untyped-def]
    """RMI numbers with no 1.0 command (0x170..0x18F) are counted in the shared 'unused RMI'
    slot, never in the RSI slots 32..63."""
    from rmm_mp.stats.calls import RMI_UNUSED_SLOT
    from rmm_mp.stats.histogram import read_region
    cpu = machine.cpu(0)
    cpu.smc(0xC400_0170)
    cpu.smc(0xC400_018F)
    cpu.flush_statistics()
    region = cpu.area.stats_region()
    try:
        slots = set(read_region(region))
    finally:
        region.release()
    assert slots == {RMI_UNUSED_SLOT}


def test_el3_answer_writes_smc_unknown_into_saved_ns_x0(machine) -> None:  # type: ignore[no-untyped-def]
    """An SMC EL3 answers itself (here an RSI ID from the host) leaves SMC_UNKNOWN in the saved
    Non-secure X0, as TF-A's SMC_RET1 does, and the caller's X1..X4 untouched."""
    import struct
    from rmm_mp.abi.smccc import SMC_UNKNOWN
    from rmm_mp.hw.cpuarea import OFF_NS_CTX
    cpu = machine.cpu(0)
    assert cpu.smc(0xC400_0190, 1, 2, 3, 4) == (SMC_UNKNOWN, 1, 2, 3, 4)
    assert struct.unpack_from("<5Q", cpu.area.buf, OFF_NS_CTX) == (SMC_UNKNOWN, 1, 2, 3, 4)


def test_entry_follows_recording_and_tracing() -> None:
    """A CPU enters EL3 untimed exactly while it neither records latency nor traces, and an
    untimed call leaves the histograms as they were; recording again times calls again."""
    from rmm_mp.stats.report import collect
    with Machine.create("host", cpus=1, trace_capacity=16) as m:
        cpu = m.cpu(0)
        monitor = cpu.monitor
        assert cpu._enter == monitor.smc_from_ns
        cpu.smc(RmiFid.RMI_VERSION, 0x10000)
        cpu.set_recording(False)
        assert cpu._enter == monitor.smc_from_ns_untimed
        cpu.smc(RmiFid.RMI_VERSION, 0x10000)
        cpu.set_tracing(True)
        assert cpu._enter == monitor.smc_from_ns
        cpu.set_tracing(False)
        assert cpu._enter == monitor.smc_from_ns_untimed
        cpu.set_recording(True)
        assert cpu._enter == monitor.smc_from_ns
        cpu.smc(RmiFid.RMI_VERSION, 0x10000)
        cpu.flush_statistics()
        counts = {slot: s.count for slot, s in collect(m, [0])[0].items()}
        assert counts == {0: 2}     # RMI_VERSION: the first and the last call, not the untimed one


def test_entry_selection_leaves_a_wrapped_entry_alone() -> None:
    """An entry someone else installed (the stress tool wraps the published entry) survives
    switching recording off and on."""
    with Machine.create("host", cpus=1) as m:
        cpu = m.cpu(0)
        wrapped = cpu.monitor.smc_from_ns_published
        cpu._enter = wrapped
        cpu.set_recording(False)
        assert cpu._enter == wrapped
        cpu.set_recording(True)
        assert cpu._enter == wrapped
        assert cpu.smc(RmiFid.RMI_VERSION, 0x10000)[0] == SUCCESS


class _PlannedClock:
    """A clock that returns planned readings, to see which ones an RMI call takes."""

    def __init__(self, *readings: int) -> None:
        self.readings = list(readings)

    def __call__(self) -> int:
        return self.readings.pop(0)


def test_el3_split_is_measured_on_a_sample() -> None:
    """The timed entry reads t1 and t2 (the EL3 / RMM split) only on the first call of a flush
    interval and on calls whose t0 is a multiple of SPLIT_EVERY ns; the others read t0 and t3
    alone, and the recorder estimates their EL3 part from the measured calls."""
    from rmm_mp.el3.monitor import SPLIT_EVERY
    from rmm_mp.stats.report import collect
    assert SPLIT_EVERY == 16
    with Machine.create("host", cpus=1) as m:
        cpu = m.cpu(0)
        cpu.monitor._clock = clock = _PlannedClock(
            1000, 1100, 1500, 1600,     # first call: split (its flush interval starts); EL3 200
            1700,                       # the end of the flush after it (100 ns, Recorder.flush_ns)
            2001, 2601,                 # t0 not a multiple of 16: total only
            3008, 3108, 3408, 3508,     # t0 = 16 * 188: split; EL3 200
        )
        for _ in range(3):
            assert cpu.smc(RmiFid.RMI_VERSION, 0x10000)[0] == SUCCESS
        assert clock.readings == []
        assert cpu.recorder.flush_ns == 100
        cpu.flush_statistics()
        version = collect(m, [0])[0][0]
    assert (version.count, version.sum_ns) == (3, 600 + 600 + 500)
    assert (version.el3_ns, version.handler_ns) == (400 * 3 // 2, 1700 - 600)


def test_unsampled_calls_count_their_errors() -> None:
    """A call outside the EL3 / RMM sample is recorded without Recorder.record when it succeeded
    (EL3 appends its total itself); a failing one still counts as an error, and both land in
    the slot of their command with their exact totals."""
    from rmm_mp.stats.calls import rmi_slot
    from rmm_mp.stats.report import collect
    with Machine.create("host", cpus=1) as m:
        cpu = m.cpu(0)
        bad = m.dram_base + 1           # not granule-aligned: ERROR_INPUT
        cpu.monitor._clock = _PlannedClock(
            1000, 1100, 1500, 1600,     # the first call of the flush interval: split, success
            1700,                       # the end of the flush after it
            2001, 2301,                 # unsampled, success: 300
            3003, 3703,                 # unsampled, ERROR_INPUT: 700
            4005, 4405,                 # unsampled, success: 400
        )
        assert cpu.smc(RmiFid.RMI_GRANULE_DELEGATE, _pa(m, 40))[0] == SUCCESS
        assert cpu.smc(RmiFid.RMI_GRANULE_UNDELEGATE, _pa(m, 40))[0] == SUCCESS
        assert cpu.smc(RmiFid.RMI_GRANULE_DELEGATE, bad)[0] == ERROR_INPUT
        assert cpu.smc(RmiFid.RMI_GRANULE_DELEGATE, _pa(m, 41))[0] == SUCCESS
        cpu.flush_statistics()
        stats = collect(m, [0])[0]
    delegate = stats[rmi_slot(RmiFid.RMI_GRANULE_DELEGATE)]
    undelegate = stats[rmi_slot(RmiFid.RMI_GRANULE_UNDELEGATE)]
    assert (delegate.count, delegate.sum_ns, delegate.max_ns, delegate.errors) == (3, 600 + 700 + 400, 700, 1)
    assert (undelegate.count, undelegate.sum_ns, undelegate.errors) == (1, 300, 0)
    assert sum(undelegate.buckets) == 1 and sum(delegate.buckets) == 3


def test_a_call_the_rmm_crashed_in_and_a_non_rmi_smc_are_counted_nowhere() -> None:
    """docs/latency.md, "Not counted at all": five RMI_VERSION calls are recorded; a host SMC
    outside the RMI range (EL3 answers SMC_UNKNOWN) and an RMI_VERSION during which the RMM
    crashed (an exception left the handler) add no call, no error and no time to any slot;
    the five calls before them are still there once the handle is closed."""
    from rmm_mp.hw.faults import RmmInternalError
    from rmm_mp.stats.calls import rmi_slot
    from rmm_mp.stats.report import collect, total_calls
    with Machine.create("host", cpus=1) as m:
        cpu = m.cpu(0)
        for _ in range(5):
            assert cpu.smc(RmiFid.RMI_VERSION, 0x10000)[0] == SUCCESS
        assert cpu.smc(0x8400_0000)[0] == SMC_UNKNOWN    # PSCI_VERSION from the host: not RMI

        def crash(*_: int) -> tuple[int, int, int, int, int]:
            raise ZeroDivisionError("an RMM bug")

        cpu.monitor.rmm = crash
        with pytest.raises(RmmInternalError):
            cpu.smc(RmiFid.RMI_VERSION, 0x10000)
        cpu.close()
        stats = collect(m, [0])
    version = stats[0][rmi_slot(RmiFid.RMI_VERSION)]
    assert (version.count, version.errors, sum(version.buckets)) == (5, 0, 5)
    assert total_calls(stats) == 5
