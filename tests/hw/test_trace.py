"""Per-CPU trace rings (rmm_mp/hw/trace.py) and their wiring into Machine, Cpu and run_cpus."""

from __future__ import annotations

import pytest

from rmm_mp import Machine
from rmm_mp import machine as machine_module
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.hw import trace
from rmm_mp.hw.faults import MachineError
from rmm_mp.runtime import run_cpus
from rmm_mp.stats.calls import RMI_UNUSED_SLOT

DELEGATE = int(RmiFid.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)



def test_ring_keeps_the_newest_records_in_order() -> None:
    """Ten records in a ring of four: it reads back the newest four, oldest first; a new writer on the same
    region continues the ring after the last record."""
    region = memoryview(bytearray(trace.region_size(4)))
    writer = trace.Tracer(region, 4)
    for n in range(10):
        writer.record(trace.KIND_RMI, n, 1000 + n, 5, n * 0x1000)
    got = trace.read_ring(region, 4)
    assert [r[3] for r in got] == [6, 7, 8, 9]
    assert got[0] == (1006, 5, trace.KIND_RMI, 6, 0x6000)
    # A second writer on the same region continues where the first stopped.
    trace.Tracer(region, 4).record(trace.KIND_RSI, 99, 2000, 1, 2**64 - 1)
    assert trace.read_ring(region, 4)[-1] == (2000, 1, trace.KIND_RSI, 99, 2**64 - 1)
    assert [r[3] for r in trace.read_ring(region, 4)] == [7, 8, 9, 99]


def test_region_size_is_page_aligned_and_holds_the_records() -> None:
    """For capacities from 1 to 65536 the ring's region is a whole number of pages and holds the header
    and every record."""
    for capacity in (1, 127, 128, 65536):
        size = trace.region_size(capacity)
        assert size % 4096 == 0 and size >= trace.HEADER + capacity * trace.RECORD_SIZE


def test_tracing_records_each_rmi_call_with_its_slot_and_x1() -> None:
    """Only the calls made while CPU 1's tracing is on are in its ring, each with its RMI slot (the unused
    slot for an unassigned FID), its x1 and a duration, in order; CPU 0's ring stays empty."""
    with Machine.create("host", cpus=2, trace_capacity=64) as m:
        cpu = m.cpu(1)
        pa = m.dram_base + 50 * m.granule_size
        cpu.smc(DELEGATE, pa)  # not traced: tracing is off by default
        assert m.read_trace(1) == []
        cpu.set_tracing(True)
        assert cpu.smc(UNDELEGATE, pa)[0] == 0
        assert cpu.smc(0xC400_018F)[0] != 0  # an unassigned RMI FID lands in the unused slot
        cpu.set_tracing(False)
        cpu.smc(DELEGATE, pa)
        records = m.read_trace(1)
        assert [(kind, code, arg) for _, _, kind, code, arg in records] == [
            (trace.KIND_RMI, (UNDELEGATE & 0xFFFF) - 0x150, pa), (trace.KIND_RMI, RMI_UNUSED_SLOT, 0)]
        assert all(duration > 0 for _, duration, *_ in records)
        assert records[0][0] + records[0][1] <= records[1][0]
        assert m.read_trace(0) == []


def test_tracing_needs_a_machine_made_with_rings() -> None:
    """On a machine made without trace rings, turning tracing on for a CPU or for run_cpus is an error
    naming trace_capacity."""
    with Machine.create("host", cpus=1) as m:
        with pytest.raises(MachineError, match="trace_capacity"):
            m.cpu(0).set_tracing(True)
        with pytest.raises(ValueError, match="trace_capacity"):
            run_cpus(m, _delegate_rounds, args=(1,), tracing=True)


@pytest.mark.parametrize("bad", [-1, True, 1 << 25, 1.5])
def test_bad_trace_capacity_is_rejected_before_anything_is_made(bad: object,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A negative, boolean, too large or fractional trace_capacity is a ValueError from Machine.create,
    raised before it makes any segment (one made would raise AssertionError here instead)."""
    def no_segment(*args: object) -> None:
        raise AssertionError("a segment was made before trace_capacity was checked")

    monkeypatch.setattr(machine_module.Segment, "create", no_segment)
    with pytest.raises(ValueError, match=r"trace_capacity = "):
        Machine.create("host", cpus=1, trace_capacity=bad)  # type: ignore[arg-type]


def test_an_attached_machine_reads_the_creators_rings() -> None:
    """A machine attached by name sees the creator's trace capacity and reads the call the creator's CPU
    traced."""
    with Machine.create("host", cpus=1, trace_capacity=16) as m:
        cpu = m.cpu(0)
        cpu.set_tracing(True)
        cpu.smc(DELEGATE, m.dram_base)
        other = Machine.attach(m.name)
        try:
            assert other.trace_capacity == 16
            assert [r[2:] for r in other.read_trace(0)] == [(trace.KIND_RMI, (DELEGATE & 0xFFFF) - 0x150, m.dram_base)]
        finally:
            other.close()


def _delegate_rounds(cpu, rounds: int) -> int:  # type: ignore[no-untyped-def]
    pa = cpu.machine.dram_base + (64 + cpu.id) * cpu.machine.granule_size
    for _ in range(rounds):
        assert cpu.smc(DELEGATE, pa)[0] == 0
        assert cpu.smc(UNDELEGATE, pa)[0] == 0
    return rounds


def test_run_cpus_traces_pins_and_reports_usage() -> None:
    """run_cpus with tracing and pinning: each CPU's ring holds its 100 RMI calls, its usage shows CPU
    time, RSS and private memory, and the two CPUs are pinned to different cores where there are two."""
    with Machine.create("host", cpus=2, trace_capacity=256) as m:
        result = run_cpus(m, _delegate_rounds, args=(50,), pin=True, tracing=True)
        assert result.ok, [f.describe() for f in result.failures]
        for cpu in (0, 1):
            records = m.read_trace(cpu)
            assert len(records) == 100
            assert {r[2] for r in records} == {trace.KIND_RMI}
            usage = result.usage[cpu]
            assert usage.user_s + usage.system_s > 0
            assert usage.peak_rss_bytes > 1 << 20
            # The process's own memory (a Python interpreter: megabytes) is part of its RSS.
            assert 1 << 20 < usage.private_bytes < usage.peak_rss_bytes
            assert usage.pinned_core is not None
        # Two CPUs on at least one allowed core: they get the first cores in order, wrapping.
        assert result.usage[0].pinned_core != result.usage[1].pinned_core or len(
            __import__("rmm_mp.runtime", fromlist=["host_cores"]).host_cores()) == 1


def test_tracing_records_rsi_calls_and_rec_runs_with_their_exit_reason() -> None:
    """A traced REC_ENTER whose guest makes RSI_VERSION then runs out its time slice: the ring holds the
    RSI call with its x1, the REC run with its exit reason and REC, then the REC_ENTER itself."""
    from realm_guests import Guest
    from rmm_mp.abi.rsi import RsiFid
    from rmm_mp.stats.calls import RSI_BASE

    with Machine.create("host", cpus=1, trace_capacity=64) as m:
        with Guest.build(m, "mov x0, =RSI_VERSION\nmov x1, =0x10000\nsmc #0\nhvc #0") as g:
            g.cpu.set_tracing(True)
            x0, ex = g.enter()
            g.cpu.set_tracing(False)
            assert x0 == 0 and ex["exit_reason"] == 1  # the time slice ends the run (IRQ exit)
            rec_pa = g.realm.recs[0].rec
        kinds = [(kind, code, arg) for _, _, kind, code, arg in m.read_trace(0)]
    assert kinds == [
        (trace.KIND_RSI, RSI_BASE + int(RsiFid.RSI_VERSION) - 0xC400_0190, 0x10000),
        (trace.KIND_REC_RUN, 1, rec_pa),
        (trace.KIND_RMI, (int(RmiFid.RMI_REC_ENTER) & 0xFFFF) - 0x150, rec_pa),
    ]


def test_tracing_records_a_contended_lock_wait_with_class_and_granule() -> None:
    """A traced lock of a granule another owner releases 50 ms after the CPU's first failed try: one
    lock-wait record with the class and the granule's PA, and a wait of at least those 50 ms and at
    most the lock call's own duration (both bounds follow from the order of events, not timing)."""
    import threading
    import time

    from rmm_mp.hw.granule import GranuleTable, cpu_owner

    tried = threading.Event()

    class Announcing:
        """The contended acquire calls it after each failed try, so after the wait's clock started."""

        def wait(self, table: GranuleTable, idx: int, holder: int) -> None:
            tried.set()
            time.sleep(0.0005)

    def release_50_ms_after_the_first_try(table: GranuleTable, idx: int) -> None:
        if tried.wait(60):
            time.sleep(0.05)
        table.unlock(idx)

    with Machine.create("host", cpus=2, trace_capacity=16) as m:
        cpu = m.cpu(0)
        cpu.set_tracing(True)
        cpu.granules.waiter = Announcing()
        other = m.granule_table(cpu_owner(1))
        idx = 7
        other.lock(idx)
        releaser = threading.Thread(target=release_50_ms_after_the_first_try, args=(other, idx))
        releaser.start()
        try:
            called = time.perf_counter_ns()
            cpu.granules.lock(idx, 5)
            returned = time.perf_counter_ns()
            cpu.granules.unlock(idx)
        finally:
            releaser.join()
            cpu.granules.waiter = None
        [(start, waited, kind, cls, pa)] = m.read_trace(0)
    assert (kind, cls, pa) == (trace.KIND_LOCK_WAIT, 5, m.dram_base + idx * m.granule_size)
    assert 50_000_000 <= waited <= returned - called, (waited, returned - called)
    assert cpu.granules.stats.contended_by_class[5] == 1
