"""The host's run queue, run loop and exit handling (rmm_mp.host.runqueue / runloop / exits /
devices), on one CPU in this process.

Scenarios: each bundled guest (workloads/guests) runs to SYSTEM_OFF and its observable results
are checked (console bytes, host-call log and report, the measurement it reads, the final RIPAS of
the pages it flipped via RMI_RTT_READ_ENTRY, the NS page shared with it); the run queue's rules
(FIFO, a vCPU queued at most once, wake-ups while running, stop, end, realm DONE, capacity
errors, a second handle seeing the same queue); and every exit handler with a small guest of its
own: faults (won, lost, DESTROYED), device reads and writes, shared pages, injected SEAs, WFI and
time-slice IRQs, instruction aborts, PSCI CPU_ON (SUCCESS and DENIED), CPU_SUSPEND, SYSTEM_RESET,
the SYSTEM_OFF race, a spurious wake-up, RIPAS changes that create RTTs or are rejected, and
the host-call services. Every test tears its realm down and checks the invariants and that the
NS allocator is empty again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from typing import Callable

import pytest

from realm_guests import PRELUDE, REPORT_TAIL
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.guest.assembler import assemble
from rmm_mp.host import (
    GUESTS, CapacityError, HostError, HostRealm, HostRec, LoopPlan, NsAllocator, RealmSpec, RunQueue,
    RunQueueError, create_realm, destroy_realm, fault_in, guest_source, load_guest, measure_constants, realm_status,
    run_loop,
)
from rmm_mp.host.devices import DEVICE_ID, DEVICE_OFFSET
from rmm_mp.host.exits import EXIT, EXIT_RAW, ExitContext, handle_exit
from rmm_mp.host import runloop
from rmm_mp.host.runloop import RunLoop, exit_counts
from rmm_mp.host.realm_entry import CONSOLE_BYTES, LOG_RECORDS, V_DONE, V_OFF, V_QUEUED, V_RUNNING, V_WOKEN
from rmm_mp.host.runqueue import MAX_REALMS, MAX_VCPUS
from rmm_mp.rmm.realm_desc import Rd

F = RmiFid
G = 4096
MiB = 1 << 20
BASE = 0x8000_0000
PAR = 1 << 39                      # the shared bit of a 40-bit realm
SYNC, IRQ, PSCI, RIPAS_CHANGE, HOST_CALL = 0, 1, 3, 4, 5
UNASSIGNED, ASSIGNED = 0, 1
EMPTY, RAM, DESTROYED = 0, 1, 2


def program(body: str) -> bytes:
    """A test guest: the RSI/PSCI names, ``body``, then the REPORT-and-SYSTEM_OFF tail."""
    return assemble(PRELUDE + "\n" + body + REPORT_TAIL, base=BASE)


@dataclass
class Booted:
    machine: Machine
    cpu: object
    alloc: NsAllocator
    realm: HostRealm
    queue: RunQueue
    slot: int

    def run(self, budget: int = 2000):  # type: ignore[no-untyped-def]
        """Run the loop on CPU 0 in this process; the budget bounds a test whose realm misbehaves."""
        return run_loop(self.cpu, LoopPlan(budget=budget))  # type: ignore[arg-type]

    def status(self):  # type: ignore[no-untyped-def]
        return realm_status(self.queue, self.slot)

    def entry(self, ipa: int) -> tuple[int, int, int, int]:
        """RMI_RTT_READ_ENTRY at level 3: (walk level, state, desc, RIPAS)."""
        x0, level, state, desc, ripas = self.cpu.smc(F.RMI_RTT_READ_ENTRY, self.realm.rd, ipa, 3)  # type: ignore
        assert x0 == 0
        return level, state, desc, ripas

    def finish(self) -> None:
        """Teardown, release, then: invariants hold, nothing delegated, allocator empty."""
        destroy_realm(self.cpu, self.alloc, self.realm)  # type: ignore[arg-type]
        self.queue.release_realm(self.alloc, self.slot)
        report = invariants(self.machine)
        assert report.ok, str(report)
        assert report.state_counts == {"NS": self.machine.granule_count}, report.state_counts
        assert self.alloc.statistics().granules_in_use == 0


def boot(machine: Machine, image: bytes, *, recs: int = 1, vcpus: int | None = None, hash_algo: int = 0,
         ram: int = 2 * MiB) -> Booted:
    cpu = machine.cpu(0)
    alloc = NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=BASE, ram_size=ram, image=image,
                                               num_recs=recs, hash_algo=hash_algo))
    queue = RunQueue(machine)
    return Booted(machine, cpu, alloc, realm, queue, queue.add_realm(alloc, realm, vcpus=vcpus))


def fake_realm(recs: int, rd: int = 0x8000_0000) -> HostRealm:
    """A HostRealm record that only the run queue sees (no RMI call is made with it)."""
    return HostRealm(rd, rd + G, 2, 1, 40, 0, 0, 16, tuple(HostRec(rd + (2 + i) * G, (), i) for i in range(recs)),
                     ram=(BASE, 2 * MiB))


# -- the bundled guests -------------------------------------------------------------------------

def test_every_bundled_guest_assembles_from_its_source() -> None:
    """Each guest of workloads/guests assembles with the assembler as it is on disk, and through
    load_guest; an unknown guest and an unknown constant are refused with their names."""
    for name in GUESTS:
        assert assemble(guest_source(name), base=BASE) == load_guest(name)
    assert load_guest("smp-boot", WORK=0) == load_guest("smp-boot")
    with pytest.raises(ValueError, match="nope"):
        load_guest("nope")
    with pytest.raises(ValueError, match="NOT_THERE is not an .equ constant"):
        load_guest("hello", NOT_THERE=1)


def test_the_raw_exit_struct_reads_rmi_rec_exits_fields_where_exit_does() -> None:
    """EXIT_RAW (the run loop's in-place read of an exit) is EXIT with gprs as their 248 bytes,
    both built from RmiRecExit's layout: the same size, and a page packed through RMI_REC_EXIT
    with a distinct value in every field reads back the same through both (gprs as the bytes of
    the 31 words), so neither can drift from the layout or from the other."""
    from rmm_mp.abi.structs import RMI_REC_EXIT
    gprs = [0x1111_0000_0000_0000 + n for n in range(31)]
    page = RMI_REC_EXIT.pack(exit_reason=5, esr=0x2222, far=0x3333, hpfar=0x4444, gprs=gprs, ripas_base=0x5000,
                             ripas_top=0x6000, ripas_value=1, imm=0x7777)
    assert EXIT_RAW.size == EXIT.size <= RMI_REC_EXIT.size
    assert EXIT.unpack_from(page) == (5, 0x2222, 0x3333, 0x4444, *gprs, 0x5000, 0x6000, 1, 0x7777)
    assert EXIT_RAW.unpack_from(page) == (5, 0x2222, 0x3333, 0x4444, struct.pack("<31Q", *gprs), 0x5000, 0x6000, 1,
                                          0x7777)


def test_hello_reports_success_and_turns_itself_off(machine: Machine) -> None:
    """hello: RSI_VERSION 1.0, REALM_CONFIG (IPA width 40, SHA-256) logged, REPORT pass, then
    SYSTEM_OFF: three entries (two host calls and the PSCI exit), counted per reason on CPU 0."""
    b = boot(machine, load_guest("hello"))
    summary = b.run()
    st = b.status()
    assert summary.ended == "done" and summary.errors == ()
    assert st.state == "DONE" and st.end == "SYSTEM_OFF" and st.vcpu_ends == ("SYSTEM_OFF",)
    assert st.passed and st.result == (0, 40)
    assert [(r.rec, r.values) for r in st.log] == [(0, (0x10000, 40, 0, 0))]
    assert summary.exits == (0, 0, 0, 1, 0, 2, 0, 0) == exit_counts(b.queue, 0)
    assert summary.entries == st.counters["entries"] == 3 and st.counters["host_calls"] == 2
    assert b.queue.live_realms == 0
    b.finish()


def test_smp_boot_starts_and_stops_every_secondary(machine: Machine) -> None:
    """smp-boot with 4 RECs: REC 0 CPU_ONs RECs 1..3, each touches its own page (faulted in by
    the host), logs and turns itself off; REC 0 sees them OFF through AFFINITY_INFO, checks their
    slots and reports 4. The secondaries' pages are ASSIGNED RAM afterwards."""
    b = boot(machine, load_guest("smp-boot"), recs=4)
    summary = b.run()
    st = b.status()
    assert summary.errors == () and st.passed and st.result == (0, 4)
    assert st.vcpu_states == ("DONE", "OFF", "OFF", "OFF") and st.end == "SYSTEM_OFF"
    pattern = 0x0DDBA11000000000
    assert sorted((r.rec, r.values[:3]) for r in st.log) == [(i, (i, i, pattern + i)) for i in (1, 2, 3)]
    c = st.counters
    assert c["cpu_on"] == 3 and c["affinity_info"] >= 3 and c["faults"] == 3 and c["cpu_on_denied"] == 0
    for i in (1, 2, 3):
        level, state, _, ripas = b.entry(BASE + MiB + i * G)
        assert (level, state, ripas) == (3, ASSIGNED, RAM)
    b.finish()


def test_ripas_flip_gives_memory_back_uses_devices_and_a_shared_page(machine: Machine) -> None:
    """ripas-flip: its 4 pages are destroyed when flipped to EMPTY and RAM again at the end
    (the first re-faulted as a zero page, the others unassigned), the console holds its text,
    the doorbell rang once with 0x1234, scratch holds 0xDEADBEEF, and the NS page the host
    mapped at the shared alias holds the pattern the realm wrote through it."""
    b = boot(machine, load_guest("ripas-flip"))
    summary = b.run()
    st = b.status()
    assert summary.errors == () and st.passed, st.result
    assert st.console == b"ripas-flip ok\n"
    assert st.device == (14, 1, 0x1234, 0xDEADBEEF)
    c = st.counters
    assert c["ripas_changes"] == 2 and c["ripas_destroyed"] == 4 and c["ripas_rejects"] == 0
    assert c["mmio_writes"] == 16 and c["mmio_reads"] == 4 and c["shared_maps"] == 1
    rng = BASE + MiB
    assert b.entry(rng)[1::2] == (ASSIGNED, RAM)
    for i in (1, 2, 3):
        assert b.entry(rng + i * G)[1::2] == (UNASSIGNED, RAM)
    ((ipa, pa),) = st.shared_pages
    assert ipa == PAR | rng
    assert struct.unpack("<Q", machine.ns_read(pa, 8))[0] == 0x5AA5F00DCAFE0001
    assert b.entry(PAR | rng)[1:] == (ASSIGNED, pa | (0x6 << 2) | (0x3 << 6), EMPTY)
    b.finish()


@pytest.mark.parametrize("first, pages", [(2 * MiB - 2 * G, 4), (MiB, 300)])
def test_ripas_flip_checks_a_range_across_last_level_tables(machine: Machine, first: int, pages: int) -> None:
    """ripas-flip over a range that crosses a 2 MiB boundary (2 pages each side; 300 pages from
    1 MiB): RSI_IPA_STATE_GET reports a run within the last-level table of its base, so one call
    answers for the pages below the boundary only. The guest took that as a wrong answer and
    REPORTed failure 3 (detail: the boundary); it asks again from each run's top, and passes."""
    b = boot(machine, load_guest("ripas-flip", RANGE=BASE + first, RANGE_PAGES=pages), ram=4 * MiB)
    summary = b.run()
    st = b.status()
    assert summary.errors == () and st.passed, st.result
    assert st.counters["ripas_destroyed"] == pages
    b.finish()


@pytest.mark.parametrize("hash_algo", [0, 1])
def test_measure_reads_back_the_rem_the_host_computed(machine: Machine, hash_algo: int) -> None:
    """measure: REM1 extended with a 64-byte value reads back as H(zeros || value), which the
    host computed and placed in the image; the RD holds the same REM."""
    value = bytes(range(64))
    constants = measure_constants(value, hash_algo)
    b = boot(machine, load_guest("measure", **constants), hash_algo=hash_algo)
    assert b.run().errors == ()
    st = b.status()
    assert st.passed and st.end == "SYSTEM_OFF", st.result
    h = hashlib.sha256 if hash_algo == 0 else hashlib.sha512
    expected = h(bytes(h().digest_size) + value).digest()
    rd = Rd(machine.memory, (b.realm.rd - machine.dram_base) // G)
    assert rd.measurement(1)[:len(expected)] == expected
    assert struct.pack("<8Q", *(constants[f"EXPECTED{i}"] for i in range(8))) == expected.ljust(64, b"\0")
    b.finish()


def test_measure_reports_a_mismatch(machine: Machine) -> None:
    """measure in a SHA-512 realm with the image's SHA-256 expectation: word 0 differs, so the
    guest reports code 3 with the word it read: the comparison is real."""
    b = boot(machine, load_guest("measure"), hash_algo=1)
    b.run()
    st = b.status()
    assert st.reports == 1 and st.result[0] == 3 and not st.passed
    b.finish()


# -- the run queue ----------------------------------------------------------------------------------

def test_queue_is_fifo_and_holds_a_vcpu_once(machine: Machine) -> None:
    """REC 0 is queued at registration; starting RECs 2 and 1 queues them behind it; starting a
    queued vCPU again does not queue it twice; take() returns them in order, then None."""
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(3))
    v0 = slot * MAX_VCPUS
    assert q.start(v0 + 2) and q.start(v0 + 1) and q.start(v0 + 2)
    assert q.statistics().queued == 3
    assert [q.take(0), q.take(1), q.take(0), q.take(0)] == [v0, v0 + 2, v0 + 1, None]
    assert all(q.vcpu_state(v0 + i) == V_RUNNING for i in range(3))
    assert q.realm(slot).recs[2].rec == 0x8000_0000 + 4 * G
    q.requeue(v0 + 1)
    assert q.take(1) == v0 + 1
    for i in range(3):
        q.end(v0 + i, 2)
    assert q.realm_state(slot) == 4 and q.live_realms == 0
    q.release_realm(alloc, slot)
    assert alloc.statistics().granules_in_use == 0


def test_a_start_while_running_requeues_a_stopping_vcpu(machine: Machine) -> None:
    """A CPU_ON that reaches a vCPU while it runs marks it WOKEN; its CPU_OFF then puts it back in
    the queue (with the woken mark) instead of turning it off; a plain stop turns it OFF, and the
    last active vCPU going off makes the realm DONE with end ALL_OFF."""
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    v = q.take(0)
    assert v == slot * MAX_VCPUS and q.start(v) and q.vcpu_state(v) == V_WOKEN
    q.stop(v)
    assert q.vcpu_state(v) == V_QUEUED and q.take(0) == v and q.take_woken(v) and not q.take_woken(v)
    q.stop(v)
    assert q.vcpu_state(v) == V_OFF and q.take(0) is None
    st = realm_status(q, slot)
    assert st.state == "DONE" and st.end == "ALL_OFF" and q.live_realms == 0
    q.release_realm(alloc, slot)


def test_a_realm_in_another_run_queue_is_taken_only_by_handles_serving_it(machine: Machine) -> None:
    """Realm A registered in queue 1, realm B in queue 0: a handle serving queue 0 never sees A's
    vCPU, one serving queue 1 never sees B's, and a vCPU requeued (or started by a CPU_ON) goes
    back into its realm's queue. A handle serving both takes from them in turn, starting after
    the queue it last took from. drain ends what every queue holds; bad queue numbers are refused
    naming the argument."""
    from rmm_mp.host.runqueue import MAX_QUEUES
    from rmm_mp.workload.realms import drain
    alloc = NsAllocator(machine, 0)
    q0, q1, both = RunQueue(machine), RunQueue(machine, (1,)), RunQueue(machine, (0, 1))
    a = q0.add_realm(alloc, fake_realm(2), queue=1)
    b = q0.add_realm(alloc, fake_realm(1, rd=0x8010_0000))
    va, vb = a * MAX_VCPUS, b * MAX_VCPUS
    assert q0.realm_queue(a) == 1 and q0.realm_queue(b) == 0
    assert q0.take(0) == vb and q0.take(0) is None          # A's vCPU is not in queue 0
    assert q1.take(1) == va and q1.take(1) is None          # nor B's in queue 1
    q0.requeue(vb)
    q1.requeue(va)
    assert q0.take(0) == vb and q0.take(0) is None
    q0.requeue(vb)
    assert both.take(0) == vb                               # queue 0 first, then its turn passes
    both.requeue(vb)
    assert both.take(0) == va and both.take(0) == vb and both.take(0) is None
    both.requeue(va)                                        # into A's queue, not the first served
    both.requeue(vb)
    assert q0.take(0) == vb and q0.take(0) is None and q1.take(1) == va
    assert q1.start(va + 1, maybe_on=True)                  # REC 1 started by REC 0's CPU_ON
    assert q0.take(0) is None and q1.take(1) == va + 1
    q1.requeue(va)
    q1.requeue(va + 1)
    q0.requeue(vb)
    assert q0.statistics().queued == 3
    assert drain(q0, 0) == 3 and q0.live_realms == 0 and q0.statistics().queued == 0
    for bad in ((), (MAX_QUEUES,), (0, 0), (True,)):
        with pytest.raises(ValueError, match=re.escape(f"serve = {bad!r}: expected run queues in 0..{MAX_QUEUES - 1}")):
            RunQueue(machine, bad)
    with pytest.raises(ValueError, match=f"queue = {MAX_QUEUES}: expected a run queue in 0..{MAX_QUEUES - 1}"):
        q0.add_realm(alloc, fake_realm(1), queue=MAX_QUEUES)
    for s in (a, b):
        q0.release_realm(alloc, s)
    assert q0.statistics().realms == 0 and alloc.statistics().granules_in_use == 0


def test_queue_misuse_and_capacity_errors_are_clear(machine: Machine) -> None:
    """Putting back a vCPU that is not running, releasing a live realm, a realm with more RECs
    than MAX_VCPUS and a full realm table are refused with errors that name the limit; a done
    vCPU cannot be started; another handle on the machine sees the same queue."""
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(2))
    v = slot * MAX_VCPUS
    with pytest.raises(RunQueueError, match="only the CPU running it"):
        q.requeue(v)
    with pytest.raises(RunQueueError, match="only a DONE realm"):
        q.release_realm(alloc, slot)
    with pytest.raises(CapacityError, match=f"at most {MAX_VCPUS} per realm"):
        q.add_realm(alloc, fake_realm(MAX_VCPUS + 1))
    with pytest.raises(ValueError, match="vcpus = 3"):
        q.add_realm(alloc, fake_realm(2), vcpus=3)
    with Machine.attach(machine.name) as other:
        assert RunQueue(other).take(3) == v
    q.end(v, 2)
    assert not q.start(v) and q.vcpu_state(v) == V_DONE
    extra = [q.add_realm(alloc, fake_realm(1), vcpus=0) for _ in range(MAX_REALMS - 1)]
    with pytest.raises(CapacityError, match=f"realm table is full \\({MAX_REALMS} realms"):
        q.add_realm(alloc, fake_realm(1))
    assert q.live_realms == 0
    for s in (slot, *extra):
        q.release_realm(alloc, s)
    assert q.statistics().realms == 0 and alloc.statistics().granules_in_use == 0


def _ring_cell_left_claimed(q: RunQueue, alloc: NsAllocator) -> tuple[int, int, int]:
    """A consumer that claims ring position 0 (REC 0 of realm A) and never releases the cell,
    as a CPU process killed between take()'s compare-and-swap and its release store would;
    then realm B's vCPU taken and requeued until the next enqueue lands on that cell again,
    one lap later. Returns (realm A's slot, realm B's slot, B's vCPU, RUNNING here)."""
    from rmm_mp.host import runqueue
    a = q.add_realm(alloc, fake_realm(1))
    assert q.view.cas_u64(runqueue._DEQ, 0, 1) == 0           # the claim, with no release
    b = q.add_realm(alloc, fake_realm(1, rd=0x8010_0000))
    vb = b * MAX_VCPUS
    for _ in range(runqueue.RING_SLOTS - 2):
        assert q.take(0) == vb
        q.requeue(vb)
    assert q.take(0) == vb and q.view.load_u64(runqueue._ENQ) == runqueue.RING_SLOTS
    return a, b, vb


def _count_waits(monkeypatch: pytest.MonkeyPatch, after: int, then: "object") -> list[int]:
    """Replace the run queue's backoff between two looks at a cell: the ``after``-th call runs
    ``then``; a producer still waiting 100,000 tries later is taken to wait for ever (the test
    fails, not hangs)."""
    from rmm_mp.host import runqueue
    calls: list[int] = []

    def backoff(tries: int) -> None:
        calls.append(1)
        if len(calls) == after:
            then()  # type: ignore[operator]
        assert len(calls) < 100_000, "the producer still waits for a cell whose consumer is gone"
    monkeypatch.setattr(runqueue, "backoff", backoff)
    return calls


def _finish_ring(q: RunQueue, alloc: NsAllocator, a: int, b: int) -> None:
    """Release what _ring_cell_left_claimed left: every realm DONE, released, the stop cleared."""
    q.machine.control.clear_stop()
    for slot in (a, b):
        v = slot * MAX_VCPUS
        q.view.store_u32(q._vcpu(v), V_RUNNING)
        q.end(v, 2)
        q.release_realm(alloc, slot)


def test_a_producer_stops_waiting_for_a_cell_a_dead_cpu_claimed(machine: Machine,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer killed between its claim and its release leaves the cell's sequence one lap
    behind; the producer that reaches the cell a lap later waited for ever (sched_yield, no
    look at the stop flag) until the run's grace time killed it. Once the run is stopping and
    a CPU process bound to the machine is gone, it now raises RunQueueError instead. Its message
    says that the claimer is assumed to be a gone process (the cell does not record who claimed
    it: any CPU that died makes the producer give up), and names no pid: before, it named the
    first dead CPU's pid and put the assumption as a fact."""
    from rmm_mp.hw import cpuarea
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    a, b, vb = _ring_cell_left_claimed(q, alloc)
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read())        # no process has this pid
    area = machine.cpu_area(3)
    try:
        assert area.claim(0, cpuarea.binding_word(dead, 0))      # CPU 3's process, now gone
        machine.control.request_stop()
        calls = _count_waits(monkeypatch, 0, None)
        with pytest.raises(RunQueueError, match="claimed by a CPU process that is gone") as gave_up:
            q.requeue(vb)
        # It cannot know the claimer: it says what it assumed, and names no pid (a stress
        # finding's text must be the same on every run of one schedule).
        assert "gave up waiting" in str(gave_up.value) and "is taken to have been claimed" in str(gave_up.value)
        assert "pid" not in str(gave_up.value) and str(dead) not in str(gave_up.value)
        assert len(calls) < 100_000
    finally:
        area.release_binding(cpuarea.binding_word(dead, 0))
        area.release()
        monkeypatch.undo()
    _finish_ring(q, alloc, a, b)


def test_a_producer_waits_for_a_live_consumer_even_when_the_run_stops(machine: Machine,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The same wait with every CPU process alive (a consumer descheduled between its two
    stores) is not given up when the run stops: the enqueue completes once the cell is released."""
    from rmm_mp.host import runqueue
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    a, b, vb = _ring_cell_left_claimed(q, alloc)
    machine.control.request_stop()
    _count_waits(monkeypatch, 10, lambda: q.view.store_u64(runqueue._RING, runqueue.RING_SLOTS))
    q.requeue(vb)
    monkeypatch.undo()
    assert q.take(0) == vb
    _finish_ring(q, alloc, a, b)


def test_a_producer_waiting_for_a_slow_consumer_sleeps_rather_than_burning_a_core(machine: Machine) -> None:
    """A consumer that claimed a ring cell releases it only 1 s later (its CPU process stopped
    with SIGSTOP, or descheduled, between its two stores): the producer whose enqueue lands on
    that cell a lap later waits for the release, sleeping. The wait only called sched_yield: it
    used 0.65 s of CPU per 1 s on a loaded 2-core host, the whole second on an idle one; load
    can only lower the figure, so the bound cannot fail through a slow machine."""
    import threading
    import time
    from rmm_mp.host import runqueue
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    a, b, vb = _ring_cell_left_claimed(q, alloc)
    used: list[float] = []

    def requeue() -> None:
        cpu_started = time.thread_time()
        q.requeue(vb)
        used.append(time.thread_time() - cpu_started)

    producer = threading.Thread(target=requeue)
    started = time.monotonic()
    producer.start()
    time.sleep(1.0)
    q.view.store_u64(runqueue._RING, runqueue.RING_SLOTS)     # the consumer's release
    producer.join()
    waited = time.monotonic() - started
    assert waited >= 0.9, f"the enqueue ended after {waited:.3f} s, before the cell was released"
    assert used[0] < 0.25, f"the producer used {used[0]:.3f} s of CPU in {waited:.3f} s of waiting"
    assert q.take(0) == vb
    _finish_ring(q, alloc, a, b)


def test_a_producer_stops_waiting_when_a_cpus_pid_names_another_process(machine: Machine) -> None:
    """As above with the run stopping and CPU 3's process gone, its pid (here this test's own)
    now naming another process: its binding's start time is older. The producer gives up
    (RunQueueError). The check looked at the pid alone, so such a CPU looked alive and the
    producer waited until the run's grace time killed it."""
    import os
    import threading
    from rmm_mp.host import runqueue
    from rmm_mp.hw import cpuarea, process
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    a, b, vb = _ring_cell_left_claimed(q, alloc)
    word = cpuarea.binding_word(os.getpid(), process.own_start_ms() - 10_000)
    area = machine.cpu_area(3)
    raised: list[BaseException] = []

    def requeue() -> None:
        try:
            q.requeue(vb)
        except RunQueueError as exc:
            raised.append(exc)

    producer = threading.Thread(target=requeue, daemon=True)
    try:
        assert area.claim(0, word)
        machine.control.request_stop()
        producer.start()
        producer.join(timeout=30)
        assert raised and "claimed by a CPU process that is gone" in str(raised[0]), \
            "the producer still waits, or did not give up for the gone CPU"
    finally:
        area.release_binding(word)
        area.release()
        q.view.store_u64(runqueue._RING, runqueue.RING_SLOTS)    # let a wait that did not end (the old check's) end
        producer.join(timeout=30)
    if not raised:
        q.take(0)
    _finish_ring(q, alloc, a, b)


# -- exit handlers ---------------------------------------------------------------------------------

def test_time_slice_and_wfi_exits_requeue_the_vcpu() -> None:
    """A loop of 3,000 instructions on a 1,000-instruction slice and an untrapped WFI: IRQ exits,
    each re-entered; the loop's count survives them."""
    with Machine.create("host", cpus=1, time_slice=1000) as m:
        b = boot(m, program("""
            mov x20, #0
        spin:
            add x20, x20, #1
            cmp x20, #1000
            b.ne spin
            wfi
            mov x19, #0
            b report
        """))
        summary = b.run()
        st = b.status()
        assert st.passed and st.result == (0, 1000)
        assert summary.exits[IRQ] >= 4 and summary.exits[HOST_CALL] == 1 and summary.exits[PSCI] == 1
        b.finish()


def test_device_registers_and_unknown_offsets(machine: Machine) -> None:
    """Console COUNT and STATUS, doorbell ID and an unknown offset (RAZ) read through EMUL_MMIO; a
    write to an unknown offset is ignored; a 1-byte read of ID is masked to its low byte."""
    b = boot(machine, program(f"""
            mov x24, ={PAR + DEVICE_OFFSET:#x}
            mov x2, #0x41
            strb x2, [x24]
            strb x2, [x24]
            ldr x21, [x24, #0x10]
            ldr x22, [x24, #0x8]
            str x2, [x24, #0x800]
            ldr x23, [x24, #0x800]
            ldrb x25, [x24, #0x1018]
            ldrw x26, [x24, #0x1018]
            mov x19, #1
            cmp x21, #2
            b.ne report
            cmp x22, #1
            b.ne report
            cbnz x23, report
            cmp x25, #{DEVICE_ID & 0xFF}
            b.ne report
            mov x20, x26
            mov x19, #0
            b report
        """))
    assert b.run().errors == ()
    st = b.status()
    assert st.passed and st.result == (0, DEVICE_ID) and st.console == b"AA"
    assert st.counters["mmio_reads"] == 5 and st.counters["mmio_writes"] == 3
    b.finish()


def test_console_and_log_keep_their_last_bytes_and_records(machine: Machine) -> None:
    """A guest that writes CONSOLE_BYTES + 100 bytes to its console (the byte i % 256 each time)
    and makes LOG_RECORDS + 6 LOG host calls (X0 = i): the realm table keeps the last
    CONSOLE_BYTES bytes and the last LOG_RECORDS records, oldest first, and counts them all (it
    used to keep the first ones, so a guest printing in a loop showed only its first lines)."""
    total, logs = CONSOLE_BYTES + 100, LOG_RECORDS + 6
    b = boot(machine, program(f"""
            mov x24, ={PAR + DEVICE_OFFSET:#x}
            mov x21, #0
        print:
            strb x21, [x24]
            add x21, x21, #1
            cmp x21, #{total}
            b.ne print
            mov x21, #0
        log:
            adr x1, hostcall
            mov x2, #1
            strh x2, [x1]
            str x21, [x1, #8]
            mov x0, =RSI_HOST_CALL
            smc #0
            add x21, x21, #1
            cmp x21, #{logs}
            b.ne log
            mov x19, #0
            mov x20, #0
            b report
        """))
    assert b.run(budget=total + logs + 100).errors == ()
    st = b.status()
    assert st.passed and st.device[0] == total
    assert st.console == bytes(i % 256 for i in range(total - CONSOLE_BYTES, total))
    assert st.log_count == logs and [r.values[0] for r in st.log] == list(range(logs - LOG_RECORDS, logs))
    b.finish()


def test_exceptions_the_rmm_makes_a_realm_take_are_counted_in_its_rd(machine: Machine) -> None:
    """A guest whose handler steps past each faulting instruction: hvc (undefined), a load from a
    protected IPA below RAM (RIPAS EMPTY: an SEA from the RMM), a load from an unprotected IPA
    the host neither emulates nor backs (the host's INJECT_SEA) and a load at 2^40 (an address
    size fault), then udf (taken in the interpreter): the RD counts 5, one each, for the report."""
    b = boot(machine, program(f"""
            adr x1, vector
            msr vbar, x1
            mov x21, #0
            hvc #0
            mov x2, #0x1000
            ldr x3, [x2]
            mov x2, ={PAR + 0x1000:#x}
            ldr x3, [x2]
            mov x2, ={1 << 40:#x}
            ldr x3, [x2]
            udf
            mov x19, #0
            mov x20, x21
            b report
            .align 2048
        vector:
            .zero 0x200
            add x21, x21, #1
            mrs x22, elr
            add x22, x22, #8
            msr elr, x22
            eret
        """))
    assert b.run().errors == ()
    st = b.status()
    assert st.passed and st.result == (0, 5) and st.counters["sea_injected"] == 1
    assert Rd(machine.memory, (b.realm.rd - machine.memory.base) >> 12).exceptions == 5
    b.finish()


def test_unprotected_access_outside_shared_memory_gets_an_sea(machine: Machine) -> None:
    """A load from an unprotected IPA that is neither the device window nor shared RAM: the host
    re-enters with INJECT_SEA and the realm's vector sees a data abort (EC 0x25) with FAR = IPA."""
    bad = PAR + 0x4000_0000
    b = boot(machine, program(f"""
            adr x2, vector
            msr vbar, x2
            mov x3, ={bad:#x}
            ldr x4, [x3]
            mov x19, #1
            b report
            .align 0x800
        vector:
            .zero 0x200
            mrs x20, esr
            mrs x21, far
            mov x19, #2
            mov x22, ={bad:#x}
            cmp x21, x22
            b.ne report
            mov x19, #0
            b report
        """))
    b.run()
    st = b.status()
    assert st.passed and st.result[1] >> 26 == 0x25, st.result
    assert st.counters["sea_injected"] == 1 and st.shared_pages == ()
    b.finish()


@pytest.mark.parametrize("ins, wnr", [("ldp x4, x5, [x3, #0x10]", 0), ("stp x4, x5, [x3, #0x10]", 1 << 6)])
def test_a_pair_in_the_device_window_gets_an_sea(machine: Machine, ins: str, wnr: int) -> None:
    """ACS exception_non_emulatable_da_1 end to end, with the host model: a realm ldp/stp at the
    device window's SCRATCH register exits with a Non-emulatable Data Abort (ISV clear: no access
    the device could emulate); the host re-enters with INJECT_SEA, as KVM's io_mem_abort does
    without ISV, and the realm's vector sees EC 0x25 | IL | EA | DFSC 0x10 (WnR for stp, no ISV)
    with FAR = the IPA. The device is not touched (no MMIO read or write counted). Before the RMM
    took INJECT_SEA after an exit without ISV, the vCPU looped on the pair until the budget."""
    at = PAR + DEVICE_OFFSET + 0x1010
    b = boot(machine, program(f"""
            adr x2, vector
            msr vbar, x2
            mov x3, ={at - 0x10:#x}
            mov x4, #0x44
            mov x5, #0x55
            {ins}
            mov x19, #1
            b report
            .align 0x800
        vector:
            .zero 0x200
            mrs x20, esr
            mrs x21, far
            mov x19, #2
            mov x22, ={at:#x}
            cmp x21, x22
            b.ne report
            mov x19, #0
            b report
        """))
    b.run()
    st = b.status()
    assert st.passed and st.result == (0, 0x25 << 26 | 1 << 25 | wnr | 1 << 9 | 0x10), st.result
    c = st.counters
    assert c["sea_injected"] == 1 and c["mmio_reads"] == 0 and c["mmio_writes"] == 0
    b.finish()


def test_unprotected_aborts_are_told_apart_by_the_ipa_not_the_syndrome(machine: Machine) -> None:
    """A non-emulatable data abort at an unprotected IPA has ISV clear (DEN0137 A4.3.4.3), like
    every protected one, so the host must classify by the IPA's top bit, as KVM does. Without ISV:
    the shared alias of RAM is still backed by an NS page; in the device window there is no
    syndrome to emulate, and the host injects an SEA, as KVM's io_mem_abort does for a realm (it
    used to fail the vCPU); elsewhere too. (The host used to take any abort without ISV for a
    protected one and failed the vCPU with "outside the realm's RAM".)"""
    b = boot(machine, program("mov x19, #0\nb report"))
    ctx = ExitContext(b.cpu, b.alloc, b.queue)  # type: ignore[arg-type]
    blank = [0] * len(EXIT.unpack(bytes(EXIT.size)))
    nisv = 0x24 << 26 | 1 << 25 | 0x7          # DABT, IL, translation fault at level 3, ISV clear

    def abort(ipa: int) -> tuple[int, ...]:
        ex = list(blank)
        ex[1], ex[3] = nisv, ipa >> 8
        return tuple(ex)

    shared = PAR | (BASE + MiB)
    assert handle_exit(ctx, 0, abort(shared)) == (0, 0, None, "")
    assert [ipa for ipa, _ in b.status().shared_pages] == [shared]
    assert handle_exit(ctx, 0, abort(PAR + DEVICE_OFFSET)) == (0, 2, None, "")   # INJECT_SEA
    assert handle_exit(ctx, 0, abort(PAR + 0x4000_0000)) == (0, 2, None, "")
    c = b.status().counters
    assert c["shared_maps"] == 1 and c["sea_injected"] == 2 and c["faults"] == 0 and c["mmio_reads"] == 0
    b.run()
    assert b.status().passed
    b.finish()


def test_a_granule_protection_fault_fails_the_vcpu(machine: Machine) -> None:
    """The realm's shared page, once mapped and used, is delegated behind the host model's back
    (DELEGATE of a page mapped unprotected succeeds: the RMM does not track NS mappings): the
    realm's next access exits with a data abort whose DFSC is 0x28, a granule protection fault
    (DEN0137 A4.3.4, A5.2.6). The vCPU fails with a message naming the fault and the IPA, as
    KVM's kvm_handle_guest_abort fails KVM_RUN (-EFAULT, "Unsupported FSC"); the realm ends ERROR
    and the loop returns well within its budget. (The host took the abort for a shared page not
    yet mapped, failed to map it, which was mapped already, and re-entered for ever.)"""
    shared = PAR | (BASE + MiB)
    b = boot(machine, program(f"""
            mov x3, ={shared:#x}
            str x3, [x3]
        loop:
            ldr x4, [x3]
            b loop
        """))
    assert b.run(budget=3).errors == ()
    ((ipa, pa),) = b.status().shared_pages
    assert ipa == shared and b.cpu.smc(F.RMI_GRANULE_DELEGATE, pa)[0] == 0  # type: ignore[attr-defined]
    summary = b.run(budget=2000)
    st = b.status()
    assert summary.ended == "done" and sum(summary.exits) <= 2, summary
    assert len(summary.errors) == 1 and "granule protection fault" in summary.errors[0], summary.errors
    assert f"IPA {shared:#x}" in summary.errors[0] and "DFSC 0x28" in summary.errors[0], summary.errors
    assert st.vcpu_ends == ("ERROR",) and st.end == "ERROR" and st.state == "DONE"
    assert st.counters["sea_injected"] == 0 and st.counters["shared_maps"] == 1
    assert b.cpu.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == 0  # type: ignore[attr-defined]
    b.finish()


ISV_FOR_TEST = 1 << 24 | 3 << 22
"""ISV with a doubleword size: a GPF's syndrome carries no ISV from rmm-mp, but one that did must
not make the host emulate the access."""


@pytest.mark.parametrize("fsc, words", [(0x28, "granule protection fault"), (0x21, "DFSC 0x21"),
                                        (0x10, "DFSC 0x10")])
def test_data_aborts_of_a_fault_kvm_does_not_handle_fail_the_vcpu(machine: Machine, fsc: int, words: str) -> None:
    """handle_exit on a data abort whose fault status is neither a translation, access flag nor
    permission fault (a GPF, 0x28; an alignment fault, 0x21; an SEA, 0x10) ends the vCPU
    wherever the IPA lies (shared RAM, the device window, elsewhere, protected RAM), as KVM's
    kvm_handle_guest_abort refuses an unsupported FSC (an SEA, which KVM re-enters after, is
    failed too: docs/deviations.md; the RMM model makes no such exit): nothing is mapped,
    faulted in, emulated or injected."""
    b = boot(machine, program("mov x19, #0\nb report"))
    ctx = ExitContext(b.cpu, b.alloc, b.queue)  # type: ignore[arg-type]
    blank = [0] * len(EXIT.unpack(bytes(EXIT.size)))
    in_use = b.alloc.statistics().granules_in_use
    for ipa in (PAR | (BASE + MiB), PAR + DEVICE_OFFSET, PAR + 0x4000_0000, BASE + MiB):
        ex = list(blank)
        ex[1], ex[3] = 0x24 << 26 | ISV_FOR_TEST | fsc, ipa >> 8
        action, flags, gprs, error = handle_exit(ctx, 0, tuple(ex))
        assert (action, flags, gprs) == (2, 0, None) and words in error and f"IPA {ipa:#x}" in error, error
    c = b.status().counters
    assert (c["shared_maps"], c["sea_injected"], c["faults"], c["mmio_reads"]) == (0, 0, 0, 0), c
    assert b.alloc.statistics().granules_in_use == in_use and b.status().shared_pages == ()
    b.run()
    assert b.status().passed
    b.finish()


def test_fault_races_and_destroyed_pages() -> None:
    """handle_exit on a data abort at a page another CPU has already mapped re-enters (a lost
    race, counted); at a DESTROYED entry the vCPU fails with a message naming the IPA."""
    with Machine.create("host", cpus=1) as m:
        b = boot(m, program("mov x19, #0\nb report"))
        ctx = ExitContext(b.cpu, b.alloc, b.queue)  # type: ignore[arg-type]
        ipa = BASE + MiB
        abort = [0] * len(EXIT.unpack(bytes(EXIT.size)))
        abort[1], abort[3] = 0x24 << 26 | 1 << 25 | 0x7, (ipa >> 8) | 0x3
        assert handle_exit(ctx, 0, tuple(abort)) == (0, 0, None, "")        # faulted in
        assert handle_exit(ctx, 0, tuple(abort)) == (0, 0, None, "")        # lost race
        # HPFAR_EL2 bit 63 (NS, FEAT_RME) is no part of the IPA: still the same page (once a
        # huge unprotected IPA, answered with an SEA).
        abort[3] |= 1 << 63
        assert handle_exit(ctx, 0, tuple(abort)) == (0, 0, None, "")
        assert b.status().counters["sea_injected"] == 0
        x0, pa = b.cpu.smc(F.RMI_DATA_DESTROY, b.realm.rd, ipa)[:2]          # RAM -> DESTROYED
        assert x0 == 0 and b.cpu.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == 0
        b.alloc.free(pa)
        assert handle_exit(ctx, 0, tuple(abort))[3] == ""                   # DESTROYED, unassigned: backed
        action, _, _, error = handle_exit(ctx, 0, tuple(abort))
        assert action == 2 and f"IPA {ipa:#x}" in error and "DESTROYED" in error
        c = b.status().counters
        # Only the two lost races are races: the fault at DESTROYED was counted as a race too.
        assert c["faults"] == 5 and c["fault_races"] == 2
        b.run()
        b.finish()


def test_rtts_created_counts_the_tables_of_faults_and_shared_maps(machine: Machine) -> None:
    """rtts_created counts every RTT the host creates for the running realm: a fault in the
    second 2 MiB block of RAM (a level-2 entry of INIT_RIPAS, no level-3 table) creates one, and
    the first shared page of the unprotected half creates its level-2 and level-3 tables; the
    walks of RTT_READ_ENTRY confirm the three tables. (The counter used to count only the tables
    of RIPAS changes, so a realm whose faults built tables reported none.)"""
    page = BASE + 3 * MiB
    b = boot(machine, program(f"""
            mov x2, ={page:#x}
            str x2, [x2]
            mov x3, ={PAR | page:#x}
            str x2, [x3]
            mov x19, #0
            b report
        """), ram=4 * MiB)
    assert b.run().errors == ()
    st = b.status()
    assert st.passed and st.counters["faults"] == 1 and st.counters["shared_maps"] == 1
    assert b.entry(page)[0] == 3 and b.entry(PAR | page)[0] == 3
    assert st.counters["rtts_created"] == 3
    b.finish()


def test_a_fault_outside_ram_fails_the_vcpu(machine: Machine) -> None:
    """A data abort at a protected IPA outside the realm's RAM (it can only come from an entry
    with RIPAS RAM or DESTROYED there) ends the vCPU in error naming the IPA: no memory backs it
    (KVM finds no memslot). The host used to fault a page in for any protected IPA, so a guest
    that made a GiB outside its RAM RIPAS RAM and touched it exhausted the NS allocator and
    crashed the CPU process."""
    b = boot(machine, program("mov x19, #0\nb report"))
    ctx = ExitContext(b.cpu, b.alloc, b.queue)  # type: ignore[arg-type]
    outside = 0x1000_0000
    abort = [0] * len(EXIT.unpack(bytes(EXIT.size)))
    abort[1], abort[3] = 0x24 << 26 | 1 << 25 | 0x7, (outside >> 8) | 0x3
    in_use = b.alloc.statistics().granules_in_use
    action, flags, gprs, error = handle_exit(ctx, 0, tuple(abort))
    assert (action, flags, gprs) == (2, 0, None) and f"IPA {outside:#x}" in error
    assert "outside the realm's RAM" in error
    assert b.alloc.statistics().granules_in_use == in_use and b.status().counters["faults"] == 1
    b.run()
    assert b.status().passed
    b.finish()


def test_exits_the_host_does_not_resolve(machine: Machine) -> None:
    """handle_exit on a trapped WFI (EC 0x01) re-enters; an SError exit, an unknown exit reason
    and a SYNC exit of another class (EC 0x16) end the vCPU with a message naming what came."""
    b = boot(machine, program("mov x19, #0\nb report"))
    ctx = ExitContext(b.cpu, b.alloc, b.queue)  # type: ignore[arg-type]
    blank = [0] * len(EXIT.unpack(bytes(EXIT.size)))
    wfi = list(blank)
    wfi[1] = 0x01 << 26 | 1 << 25
    assert handle_exit(ctx, 0, tuple(wfi)) == (0, 0, None, "")
    for reason, esr, words in ((6, 0, "SError"), (9, 0, "exit reason 9"), (0, 0x16 << 26, "EC 0x16")):
        ex = list(blank)
        ex[0], ex[1] = reason, esr
        action, flags, gprs, error = handle_exit(ctx, 0, tuple(ex))
        assert (action, flags, gprs) == (2, 0, None) and words in error
    b.run()
    assert b.status().passed
    b.finish()


def test_instruction_abort_fails_the_vcpu(machine: Machine) -> None:
    """A branch into unpopulated RAM exits with an instruction abort, which the host does not
    resolve (as KVM): the vCPU ends in error, the loop reports it, the realm ends ERROR."""
    b = boot(machine, program(f"""
            mov x2, ={BASE + MiB:#x}
            br x2
        """))
    summary = b.run()
    st = b.status()
    assert len(summary.errors) == 1 and "EC 0x20" in summary.errors[0]
    assert st.vcpu_ends == ("ERROR",) and st.end == "ERROR" and st.state == "DONE"
    assert st.counters["vcpu_errors"] == 1
    b.finish()


def test_cpu_on_of_a_rec_the_host_does_not_run_is_denied(machine: Machine) -> None:
    """With 2 RECs but vcpus=1, the realm's CPU_ON of REC 1 is completed with DENIED, which the
    realm sees in X0; QUERY 0 says 1 vCPU."""
    b = boot(machine, program("""
            mov x0, =PSCI_CPU_ON
            mov x1, #1
            adr x2, report
            mov x3, #0
            smc #0
            mov x20, x0
            adr x1, hostcall
            mov x2, #2
            strh x2, [x1]
            str xzr, [x1, #8]
            mov x0, =RSI_HOST_CALL
            smc #0
            adr x1, hostcall
            ldr x19, [x1, #8]
            b report
        """), recs=2, vcpus=1)
    b.run()
    st = b.status()
    assert st.result == (1, (1 << 64) - 3) and st.counters["cpu_on_denied"] == 1
    assert st.vcpu_states == ("DONE", "OFF")
    b.finish()


def test_cpu_suspend_and_system_reset(machine: Machine) -> None:
    """CPU_SUSPEND exits as a notification and the vCPU is re-entered (X0 = SUCCESS);
    SYSTEM_RESET ends the realm like SYSTEM_OFF, with end reason SYSTEM_RESET."""
    b = boot(machine, program("""
            mov x0, =PSCI_CPU_SUSPEND
            mov x1, #0
            smc #0
            mov x19, x0
            adr x1, hostcall
            mov x2, #1
            strh x2, [x1]
            str x19, [x1, #8]
            mov x0, =RSI_HOST_CALL
            smc #0
            mov x0, =PSCI_SYSTEM_RESET
            smc #0
            b report
        """))
    summary = b.run()
    st = b.status()
    assert st.end == "SYSTEM_RESET" and st.log[0].values[0] == 0 and st.reports == 0
    assert summary.exits[PSCI] == 2
    b.finish()


def test_system_off_race_ends_the_vcpu(machine: Machine) -> None:
    """A vCPU re-entered after its realm turned itself off, before the host saw the exit:
    REC_ENTER returns (ERROR_REALM, 1), the vCPU ends (SYSTEM_OFF_RACE), the realm is done."""
    b = boot(machine, load_guest("hello"))
    v = b.queue.take(0)
    rec, run = b.queue.vcpu_pages(v)
    for _ in range(3):                                  # the host-call and SYSTEM_OFF exits, unhandled
        assert b.cpu.smc(F.RMI_REC_ENTER, rec, run)[0] == 0  # type: ignore[attr-defined]
    b.queue.requeue(v)
    summary = b.run()
    st = b.status()
    assert summary.exits[7] == 1 and summary.errors == ()
    assert st.vcpu_ends == ("SYSTEM_OFF_RACE",) and st.end == "SYSTEM_OFF" and st.state == "DONE"
    b.finish()


def test_system_reset_race_keeps_the_reset_as_the_realms_end(machine: Machine,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """REC 0 calls SYSTEM_RESET while REC 1 is runnable; REC 1 is entered on "another CPU" before
    the host handles REC 0's exit, and gets (ERROR_REALM, 1). The race cannot tell SYSTEM_OFF
    from SYSTEM_RESET, so it must not decide the realm's end: the exit of REC 0 says RESET (the
    race used to record SYSTEM_OFF first, and the report said the realm turned itself off)."""
    b = boot(machine, program("""
            mov x0, =PSCI_CPU_ON
            mov x1, #1
            adr x2, spin
            mov x3, #0
            smc #0
            mov x0, =PSCI_SYSTEM_RESET
            smc #0
        spin:
            wfi
            b spin
        """), recs=2)
    v0, v1 = b.slot * MAX_VCPUS, b.slot * MAX_VCPUS + 1
    loop = RunLoop(b.cpu)  # type: ignore[arg-type]
    q = loop.queue
    assert q.take(0) == v0
    loop.step(v0)                                       # CPU_ON 1
    assert q.take(0) == v1
    q.requeue(v1)
    real_handle_exit = runloop.handle_exit

    def other_cpu_enters_rec_1_first(ctx, vcpu, ex):  # type: ignore[no-untyped-def]
        if vcpu == v0:
            assert q.take(0) == v1
            loop.step(v1)                               # (ERROR_REALM, 1): SYSTEM_OFF_RACE
        return real_handle_exit(ctx, vcpu, ex)

    monkeypatch.setattr(runloop, "handle_exit", other_cpu_enters_rec_1_first)
    assert q.take(0) == v0
    loop.step(v0)                                       # the SYSTEM_RESET exit
    st = b.status()
    assert loop.exits[7] == 1 and st.state == "DONE", st
    assert st.vcpu_ends == ("SYSTEM_OFF", "SYSTEM_OFF_RACE") and st.end == "SYSTEM_RESET", st
    b.finish()


def test_spurious_wake_turns_the_vcpu_off_and_other_rec_errors_raise(machine: Machine) -> None:
    """A vCPU woken while running (a CPU_ON the RMM answered ALREADY_ON) that had turned itself
    off gets ERROR_REC on entry: it goes OFF. The same ERROR_REC without a wake-up is a host
    bug the loop raises as HostError."""
    b = boot(machine, load_guest("smp-boot"), recs=2)
    v1 = b.slot * MAX_VCPUS + 1
    assert b.queue.start(v1)
    first = b.queue.take(0)
    b.queue.requeue(first)
    assert b.queue.take(0) == v1
    assert b.queue.start(v1)                            # WOKEN
    b.queue.stop(v1)                                    # requeued, marked
    b.run(budget=2)                                     # REC 0, then REC 1: ERROR_REC -> OFF
    assert b.queue.vcpu_state(v1) == V_OFF
    b.run()
    assert b.status().passed
    b.finish()
    with Machine.create("host", cpus=1) as m:
        b = boot(m, load_guest("smp-boot"), recs=2)
        assert b.queue.start(b.slot * MAX_VCPUS + 1) and b.queue.take(0) == 0 and b.queue.requeue(0) is None
        with pytest.raises(HostError, match="ERROR_REC"):
            b.run()


def test_a_cpu_on_answered_already_on_that_starts_a_vcpu_gone_off_meanwhile(machine: Machine,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """REC 0 CPU_ONs REC 1 twice. The second PSCI_COMPLETE finds REC 1 runnable (ALREADY_ON), but
    before this CPU starts the vCPU, another CPU runs REC 1, which turns itself off (CPU_OFF) and
    is stopped: the start queues a vCPU whose REC is off. Its entry gets ERROR_REC; that is the
    spurious wake-up the loop expects, so the vCPU goes OFF again (it used to raise HostError and
    kill the CPU process: found by a guest whose RECs CPU_ON and CPU_OFF each other at random)."""
    b = boot(machine, program("""
            mov x0, =PSCI_CPU_ON
            mov x1, #1
            adr x2, secondary
            mov x3, #0
            smc #0
            mov x19, #1
            mov x20, x0
            cbnz x0, report
            mov x0, =PSCI_CPU_ON
            mov x1, #1
            adr x2, secondary
            mov x3, #0
            smc #0
            mov x19, #2
            mov x20, x0
            cmp x0, #-4                 // ALREADY_ON
            b.ne report
        wait:
            mov x0, =PSCI_AFFINITY_INFO
            mov x1, #1
            mov x2, #0
            smc #0
            cmp x0, #1                  // OFF
            b.ne wait
            mov x19, #0
            b report
        secondary:
            mov x0, =PSCI_CPU_OFF
            smc #0
            b secondary
        """), recs=2)
    v0, v1 = b.slot * MAX_VCPUS, b.slot * MAX_VCPUS + 1
    loop = RunLoop(b.cpu)  # type: ignore[arg-type]
    q = loop.queue
    assert q.take(0) == v0
    loop.step(v0)                                       # CPU_ON 1: SUCCESS, vCPU 1 queued
    assert q.take(0) == v1
    q.requeue(v1)                                       # not entered yet: REC 0 goes first
    real_start = q.start

    def start_after_the_target_went_off(vcpu: int, *args: bool, **kwargs: bool) -> bool:
        assert vcpu == v1 and q.take(0) == v1
        loop.step(v1)                                   # "another CPU": REC 1 runs CPU_OFF
        assert q.vcpu_state(v1) == V_OFF
        return real_start(vcpu, *args, **kwargs)

    monkeypatch.setattr(q, "start", start_after_the_target_went_off)
    assert q.take(0) == v0
    loop.step(v0)                                       # CPU_ON 1 again: ALREADY_ON, then the start
    assert q.vcpu_state(v1) == V_QUEUED and b.status().counters["cpu_on"] == 2
    b.run()
    st = b.status()
    assert st.passed and st.vcpu_states == ("DONE", "OFF"), st
    b.finish()


def test_ripas_change_creates_tables_and_rejects_what_cannot_change(machine: Machine) -> None:
    """IPA_STATE_SET EMPTY over two untouched pages inside a level-2 RAM block: the host creates
    the level-3 table (as KVM on ERROR_RTT) and completes it. Then a RAM request whose first page
    the host made DESTROYED meanwhile (DATA_DESTROY while the realm waits in a host call) cannot
    progress: the realm sees progress = base and REJECT."""
    page = BASE + 3 * MiB               # in the second 2 MiB block of RAM, which has no level-3 table
    b = boot(machine, program(f"""
            mov x0, =RSI_IPA_STATE_SET
            mov x1, ={page + 2 * G:#x}
            mov x2, ={page + 4 * G:#x}
            mov x3, #0
            mov x4, #0
            smc #0
            mov x19, #1
            mov x20, x1
            cbnz x0, report
            mov x2, ={page:#x}
            str x2, [x2]
            adr x1, hostcall
            mov x2, #1
            strh x2, [x1]
            mov x0, =RSI_HOST_CALL
            smc #0
            mov x0, =RSI_IPA_STATE_SET
            mov x1, ={page:#x}
            mov x2, ={page + G:#x}
            mov x3, #1
            mov x4, #0
            smc #0
            mov x19, x2
            mov x20, x1
            b report
        """), ram=4 * MiB)
    b.run(budget=3)                                     # RIPAS change, fault, LOG host call
    st = b.status()
    assert st.counters["rtts_created"] == 1 and st.log_count == 1
    assert b.entry(page + 2 * G)[1::2] == (UNASSIGNED, EMPTY) and b.entry(page + 4 * G)[3] == RAM
    x0, pa = b.cpu.smc(F.RMI_DATA_DESTROY, b.realm.rd, page)[:2]  # type: ignore[attr-defined]
    assert x0 == 0 and b.cpu.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == 0  # type: ignore[attr-defined]
    b.alloc.free(pa)
    b.run()
    st = b.status()
    assert st.result == (1, page) and st.counters["ripas_rejects"] == 1
    assert b.entry(page)[1::2] == (UNASSIGNED, DESTROYED)
    b.finish()


def test_ripas_change_stops_at_the_end_of_ram(machine: Machine) -> None:
    """The host changes RIPAS only inside the realm's RAM. RAM over the last page of RAM and the
    one after it: progress to the end of RAM, then REJECT, and no RTT is created beyond it. EMPTY
    inside RAM destroys the realm's page as before. (The host used to change RIPAS anywhere,
    creating the tables that takes: a guest changing every 2 MiB of its IPA space exhausted the
    NS allocator; and it DATA_DESTROYed rtt-churn's pages.)"""
    end = BASE + 2 * MiB
    b = boot(machine, program(f"""
            mov x0, =RSI_IPA_STATE_SET
            mov x1, ={end - G:#x}
            mov x2, ={end + G:#x}
            mov x3, #1
            mov x4, #0
            smc #0
            mov x19, #3
            mov x20, x1
            mov x21, ={end:#x}
            cmp x1, x21
            b.ne report
            mov x19, #4
            mov x20, x2
            cmp x2, #1                  // REJECT
            b.ne report
            mov x21, ={BASE + MiB:#x}
            str x21, [x21]
            mov x0, =RSI_IPA_STATE_SET
            mov x1, x21
            add x2, x21, #{G}
            mov x3, #0
            mov x4, #0
            smc #0
            mov x19, #5
            mov x20, x1
            add x21, x21, #{G}
            cmp x1, x21
            b.ne report
            mov x19, #0
            b report
        """))
    assert b.run().errors == ()
    st = b.status()
    assert st.passed, st.result
    assert st.counters["ripas_destroyed"] == 1 and st.counters["ripas_rejects"] == 1
    assert st.counters["rtts_created"] == 0
    assert b.entry(BASE + MiB)[1::2] == (UNASSIGNED, EMPTY) and b.entry(end - G)[3] == RAM
    level, _, _, ripas = b.entry(end)
    assert level == 2 and ripas == EMPTY
    b.finish()


@pytest.mark.parametrize("first", [False, True], ids=["outside", "from-inside"])
def test_ripas_change_to_empty_outside_ram_fails_the_vcpu(machine: Machine, first: bool) -> None:
    """An EMPTY request the host does not carry out: it cannot be rejected (A5.4), so the vCPU
    fails, naming the range and the RAM. Over a page below RAM that another host activity
    assigned (as rtt-churn does in its window), that page stays assigned to its owner. From
    the last page of RAM past its end, the guest first gets ACCEPT with X1 at the end of RAM,
    as A5.4 says it must call again from there, and that call fails the vCPU. (The host used
    to answer ACCEPT with no progress, so a guest following A5.4 spun for ever.)"""
    outside, end = 0x4000_0000, BASE + 2 * MiB     # CPU 0's rtt-churn window: below RAM, RIPAS EMPTY
    base, top = (end - G, end + G) if first else (outside, outside + G)
    b = boot(machine, program(f"""
            mov x21, ={base:#x}
        again:
            mov x0, =RSI_IPA_STATE_SET
            mov x1, x21
            mov x2, ={top:#x}
            mov x3, #0
            mov x4, #0
            smc #0
            mov x19, #1
            mov x20, x0
            cbnz x0, report
            mov x21, x1
            mov x22, ={top:#x}
            cmp x1, x22
            b.ne again
            mov x19, #0
            b report
        """))
    pa = fault_in(b.cpu, b.alloc, b.realm, outside)  # type: ignore[arg-type]
    assert pa is not None
    summary = b.run(budget=20)
    assert summary.ended != "budget"
    stop = end if first else outside
    assert len(summary.errors) == 1, summary.errors
    assert f"EMPTY of [{stop:#x}, {top:#x}) starts outside the realm's RAM [{BASE:#x}, {end:#x})" in summary.errors[0]
    st = b.status()
    assert st.counters["ripas_changes"] == 1 + first and st.counters["rtts_created"] == 0
    assert st.counters["ripas_destroyed"] == 0        # the last page of RAM was never backed
    assert b.entry(outside)[1::2] == (ASSIGNED, EMPTY) and b.entry(outside)[2] & ~0xFFF == pa
    if first:
        assert b.entry(end - G)[3] == EMPTY
    x0, got = b.cpu.smc(F.RMI_DATA_DESTROY, b.realm.rd, outside)[:2]  # type: ignore[attr-defined]
    assert x0 == 0 and got == pa and b.cpu.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == 0  # type: ignore[attr-defined]
    b.alloc.free(pa)
    b.finish()


@pytest.mark.parametrize("progress", ["none", "past-top"])
def test_ripas_change_progress_out_of_range_is_a_host_error(machine: Machine, progress: str) -> None:
    """A RIPAS change to EMPTY of [page, page + 4 KiB) whose RMI_RTT_SET_RIPAS answers SUCCESS with
    an output top that a correct RMM cannot give (B4.3.21: base < top <= the requested top):
    "none", top == base; "past-top", top two pages on. The host raises HostError naming the call,
    as it does for RTT_INIT_RIPAS, DATA_DESTROY and RTT_DESTROY. It used to take the output as
    progress: with no progress it called RTT_SET_RIPAS for ever, and past the top it
    DATA_DESTROYed the realm's page after the requested range, which the realm never gave up."""
    page = BASE + MiB
    b = boot(machine, program("mov x19, #0\nb report"))
    after_pa = fault_in(b.cpu, b.alloc, b.realm, page + G)  # type: ignore[arg-type]
    assert after_pa is not None
    ctx = ExitContext(b.cpu, b.alloc, b.queue)  # type: ignore[arg-type]
    real_smc, calls = ctx.smc, []

    def smc(fid: int, *args: int) -> tuple[int, ...]:
        if fid == F.RMI_RTT_SET_RIPAS:
            calls.append(args)
            assert len(calls) < 50, "the host keeps calling RTT_SET_RIPAS without progress"
            return (0, args[2] if progress == "none" else args[2] + 2 * G, 0, 0, 0)
        return real_smc(fid, *args)  # type: ignore[no-any-return]

    ctx.smc = smc  # type: ignore[assignment]
    ex = [0] * len(EXIT.unpack(bytes(EXIT.size)))
    ex[0], ex[35], ex[36], ex[37] = RIPAS_CHANGE, page, page + G, EMPTY
    with pytest.raises(HostError, match=r"RMI_RTT_SET_RIPAS\(.*returned X0 = 0x0 \(RMI_SUCCESS\)"):
        handle_exit(ctx, 0, tuple(ex))
    assert len(calls) == 1
    assert b.entry(page + G)[1::2] == (ASSIGNED, RAM)       # the page after the range is the realm's still
    b.run()
    assert b.status().passed
    b.finish()


def test_host_call_queries_and_unknown_services(machine: Machine) -> None:
    """QUERY 1..3 give the realm's slot, device window and shared bit; QUERY 9 and imm 7 answer
    all ones; each answer comes back through enter.gprs into the RsiHostCall. (The loop keeps its
    state in x23, x24: an RSI command returns X1..X16 as outputs or 0, spec B1.2.)"""
    b = boot(machine, program("""
            adr x23, answers
            mov x24, #1
        ask:
            adr x1, hostcall
            mov x2, #2
            strh x2, [x1]
            str x24, [x1, #8]
            mov x0, =RSI_HOST_CALL
            smc #0
            adr x1, hostcall
            ldr x2, [x1, #8]
            str x2, [x23]
            add x23, x23, #8
            add x24, x24, #1
            cmp x24, #4
            b.ne ask
            mov x24, #9
            adr x1, hostcall
            str x24, [x1, #8]
            mov x0, =RSI_HOST_CALL
            smc #0
            adr x1, hostcall
            ldr x21, [x1, #8]
            mov x2, #7
            strh x2, [x1]
            mov x0, =RSI_HOST_CALL
            smc #0
            adr x1, hostcall
            ldr x22, [x1, #8]
            adr x23, answers
            adr x1, hostcall
            mov x2, #1
            strh x2, [x1]
            ldr x2, [x23]
            str x2, [x1, #8]
            ldr x2, [x23, #8]
            str x2, [x1, #16]
            ldr x2, [x23, #16]
            str x2, [x1, #24]
            and x2, x21, x22
            str x2, [x1, #32]
            mov x0, =RSI_HOST_CALL
            smc #0
            mov x19, #0
            b report
            .align 8
        answers:
            .zero 24
        """))
    b.run()
    st = b.status()
    assert st.log[0].values == (b.slot, PAR + DEVICE_OFFSET, PAR, (1 << 64) - 1)
    assert st.counters["host_calls"] == 7
    b.finish()


_SERVICES: tuple[tuple[int, int | None], ...] = (
    (1, None), (2, 0), (2, 1), (2, 2), (2, 3), (2, 9), (2, 0xF00D_0000_0000_0002), (3, None), (0, None), (4, None),
    (0xFFFF, None), (0x0102, 0), (0x0301, None), (1, None))
"""(imm, X0) of each host call test_host_call_answers_reach_the_run_page_and_the_realm_bytewise
makes: LOG, QUERY of every selector and two unknown ones, REPORT, five unknown services (0x0102
and 0x0301 have QUERY's and REPORT's imm in their low byte: imm is 16 bits), LOG again; X0 None:
a value from the call's pseudo-random registers."""


def _host_call_registers(k: int, x0: int | None) -> tuple[int, ...]:
    """X0..X30 of the ``k``-th host call: distinct 64-bit values with the top and low bits set."""
    words = tuple(int.from_bytes(hashlib.sha256(b"hc%d.%d" % (k, i)).digest()[:8], "little") | 1 << 63 | 1
                  for i in range(31))
    return words if x0 is None else (x0, *words[1:])


def test_host_call_answers_reach_the_run_page_and_the_realm_bytewise(machine: Machine) -> None:
    """A guest makes a host call of every service (LOG, QUERY of selectors 0..3 and two unknown
    ones, REPORT, imm 0, 4, 0xFFFF, 0x0102 and 0x0301, LOG again), each with 31 distinct 64-bit
    registers, and reads the device's ID register (an emulated MMIO read: the next entry's flags
    are EMUL_MMIO) before the first call and the seventh. Stepping the run loop one exit at a time:
    after each host-call exit the run page's enter half holds flags 0 and, in enter.gprs, the
    exit's 248 bytes with only X0 replaced, for QUERY by its answer (1 vCPU, the slot, the device
    window, the shared bit, all ones) and for an unknown service by all ones; LOG and REPORT hand
    every register back as it was. At the end each RsiHostCall in the realm's memory holds
    those answers (imm untouched), the log holds the two LOG calls' (REC 0, X0..X3), the result
    is the REPORT's (X0, X1), host_calls counts 14, and the CPU's published exit counts are the
    loop's. The host's answer path for a host call (RunLoop.step without handle_exit,
    devices.host_call_raw) must give exactly what handle_exit and devices.host_call gave; an
    entry it leaves wrong (say EMUL_MMIO lost, so the guest repeats its MMIO read for ever)
    fails the test after a bounded number of steps instead of hanging it."""
    from rmm_mp.host.devices import ALL_ONES, DOORBELL_ID, LogRecord
    from rmm_mp.rmm.s2tt import output_address
    calls = [(imm, _host_call_registers(k, x0)) for k, (imm, x0) in enumerate(_SERVICES)]
    structures = [struct.pack("<H6x31Q", imm, *regs) for imm, regs in calls]
    mmio_read = f"mov x5, ={PAR + DEVICE_OFFSET + DOORBELL_ID:#x}\n    ldr x6, [x5]\n"
    body = "".join((mmio_read if k in (0, 6) else "") + f"    adr x1, hc{k}\n    mov x0, =RSI_HOST_CALL\n    smc #0\n"
                   for k in range(len(calls)))
    data = "".join(f"    .align 256\nhc{k}:\n    .half {imm}\n    .zero 6\n    .quad {', '.join(map(str, regs))}\n"
                   for k, (imm, regs) in enumerate(calls))
    image = assemble(PRELUDE + "\n" + body + "    mov x0, =PSCI_SYSTEM_OFF\n    smc #0\n    b .\n" + data, base=BASE)
    b = boot(machine, image)
    loop, q = RunLoop(b.cpu), b.queue  # type: ignore[arg-type]
    v = b.slot * MAX_VCPUS
    run = q.vcpu_pages(v)[1]
    answers: list[bytes] = []
    for _ in range(4 * len(calls)):     # 17 exits when all is well
        if (taken := q.take(0)) is None:
            break
        assert taken == v
        loop.step(v)
        page = machine.ns_read(run, 2 * G)
        exit_half = page[0x800:]
        if exit_half[0] != HOST_CALL:
            continue
        imm, regs = calls[len(answers)]
        assert struct.unpack_from("<H", exit_half, 0x600)[0] == imm
        assert exit_half[0x200:0x2F8] == struct.pack("<31Q", *regs)
        x0 = regs[0]
        if imm == 2:
            x0 = {0: 1, 1: b.slot, 2: PAR + DEVICE_OFFSET, 3: PAR}.get(regs[0], ALL_ONES)
        elif imm not in (1, 3):
            x0 = ALL_ONES
        expected = struct.pack("<31Q", x0, *regs[1:])
        assert struct.unpack_from("<Q", page, 0)[0] == 0, f"call {len(answers)}: enter.flags"
        assert page[0x200:0x2F8] == expected, f"call {len(answers)} (imm {imm:#x}): enter.gprs"
        answers.append(expected)
    else:
        pytest.fail(f"the realm still runs after {4 * len(calls)} exits ({len(answers)} host calls answered): "
                    f"{loop.exits}")
    assert len(answers) == len(calls)
    assert loop.exits[SYNC] == 2 and loop.exits[HOST_CALL] == len(calls), loop.exits
    assert exit_counts(q, 0) == tuple(loop.exits), (exit_counts(q, 0), loop.exits)
    for k, (structure, answer) in enumerate(zip(structures, answers)):
        ipa = BASE + image.index(structure)
        pa = output_address(b.entry(ipa & ~(G - 1))[2], 3) + (ipa & (G - 1))
        seen = bytes(machine.memory.buf[pa - machine.dram_base:pa - machine.dram_base + 256])
        assert seen == structure[:8] + answer + bytes(256 - 8 - 248), f"RsiHostCall {k} in the realm's memory"
    st = b.status()
    assert st.log == (LogRecord(0, calls[0][1][:4]), LogRecord(0, calls[-1][1][:4])), st.log
    assert (st.reports, st.result) == (1, calls[7][1][:2]), (st.reports, st.result)
    assert st.counters["host_calls"] == len(calls) and st.state == "DONE", (st.counters, st.state)
    b.finish()


class _PausingView:
    """The run queue's view, but the first store of a report's code waits for ``go`` once."""

    def __init__(self, view, code_offset: int, stored, go) -> None:  # type: ignore[no-untyped-def]
        self._view, self._code, self._stored, self._go = view, code_offset, stored, go

    def store_u64(self, offset: int, value: int) -> None:
        self._view.store_u64(offset, value)
        if offset == self._code and not self._stored.is_set():
            self._stored.set()
            self._go.wait(10)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._view, name)


def test_two_reports_at_once_are_never_torn(machine: Machine) -> None:
    """REC 0 reports (1, 0x11) on one CPU and REC 1 reports (2, 0x22) on another at the same
    moment: the realm's result is one of the two reports whole. REC 1's report, made while REC
    0's had stored its code but not yet its detail, used to give (2, 0x11), which neither
    report says. REC 0 is let go once REC 1's report is done or 0.5 s have passed (it then waits
    for REC 0's)."""
    import threading
    import types

    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_RESULT
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(2))
    stored, go, second_done = threading.Event(), threading.Event(), threading.Event()
    paused = types.SimpleNamespace(view=_PausingView(q.view, q.realm_offset(slot) + R_RESULT + 8, stored, go),
                                   realm_offset=q.realm_offset, count=q.count)
    first = threading.Thread(target=devices.host_call, args=(paused, slot, 0, 3, (1, 0x11) + (0,) * 29))
    first.start()
    assert stored.wait(10)
    second = threading.Thread(target=lambda: (devices.host_call(q, slot, 1, 3, (2, 0x22) + (0,) * 29),
                                              second_done.set()))
    second.start()
    second_done.wait(0.5)
    go.set()
    first.join(10)
    second.join(10)
    status = realm_status(q, slot)
    assert status.reports == 2 and status.result in ((1, 0x11), (2, 0x22)), status.result
    v0 = slot * MAX_VCPUS
    assert q.start(v0 + 1) and [q.take(0), q.take(0)] == [v0, v0 + 1]
    for v in (v0, v0 + 1):
        q.end(v, 2)
    q.release_realm(alloc, slot)


def test_a_report_lock_left_by_a_dead_process_is_taken_over(machine: Machine) -> None:
    """A CPU process killed between a report's stores leaves the report lock held (its pid):
    the next report and reading the realm's status take it over instead of waiting for ever."""
    from rmm_mp.host import devices
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read())        # no process has this pid
    q.view.store_u64(q.realm_offset(slot) + devices._OUTPUT_LOCK, dead)
    devices.host_call(q, slot, 0, 3, (0, 7) + (0,) * 29)
    assert realm_status(q, slot).result == (0, 7)
    assert q.view.load_u64(q.realm_offset(slot) + devices._OUTPUT_LOCK) == 0
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def _full_rings_log_cut_short(machine: Machine) -> tuple[RunQueue, NsAllocator, int]:
    """A realm (queue, allocator, slot) whose LOG (records (i, i, i, i)) and console (bytes
    0x30 + i % 10) rings are full, and whose output lock a process that no longer exists holds,
    killed inside a LOG append: it wrote part of record 24 over the oldest kept one."""
    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_LOG
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    base = q.realm_offset(slot)
    for i in range(LOG_RECORDS):
        devices.host_call(q, slot, 0, 1, (i, i, i, i) + (0,) * 27)
    for i in range(CONSOLE_BYTES):
        devices.mmio(q, slot, 0, True, 0, 0x30 + i % 10)
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read())        # no process has this pid
    q.view.store_u64(base + devices._OUTPUT_LOCK, dead)
    struct.pack_into("<3Q", q.buf, base + R_LOG + 8, 0, 99, 99)        # record 24, cut short
    return q, alloc, slot


def test_an_append_cut_short_by_a_dead_process_is_left_out(machine: Machine) -> None:
    """A CPU process killed inside an append (holding the output lock) wrote part of the next
    LOG record, and a console byte, into the cells of the oldest kept ones without counting
    them: realm_status, taking the lock over, leaves those two oldest items out rather than
    show a torn record, and shows every newer item as it was appended; so does a second
    realm_status, which finds the lock free (before the takeover was recorded in the realm's
    entry, only the reader that took the lock over left them out)."""
    from rmm_mp.host.realm_entry import R_CONSOLE
    q, alloc, slot = _full_rings_log_cut_short(machine)
    base = q.realm_offset(slot)
    q.view.store_u8(base + R_CONSOLE, ord("X"))                          # byte 1,024, uncounted
    for _ in range(2):      # the first takes the lock over; the second must leave them out too
        st = realm_status(q, slot)
        assert st.log_count == LOG_RECORDS and [r.values for r in st.log] == [(i,) * 4 for i in range(1, LOG_RECORDS)]
        assert st.console == bytes(0x30 + i % 10 for i in range(1, CONSOLE_BYTES))
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_a_torn_log_cell_stays_left_out_for_every_reader_until_overwritten(machine: Machine) -> None:
    """A CPU process killed inside a LOG append (holding the output lock) half wrote the cell of
    the oldest kept record; another CPU then appends a console byte, taking the lock over. Every
    realm_status after that (two of them here) must leave the torn record out, as the takeover is
    recorded in the realm's entry; the console byte overwrote the cell it might have torn, so the
    console shows all its kept bytes. Once a LOG record is appended (over the torn cell), the LOG
    shows all its kept records again. Before, only a reader that took the lock over itself left
    the oldest items out: here neither reader did, and both showed the torn record."""
    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_CONSOLE
    q, alloc, slot = _full_rings_log_cut_short(machine)
    base = q.realm_offset(slot)
    devices.mmio(q, slot, 0, True, 0, ord("Y"))                          # takes the lock over
    assert q.view.load_u8(base + R_CONSOLE) == ord("Y")
    kept = bytes(0x30 + i % 10 for i in range(1, CONSOLE_BYTES)) + b"Y"
    for _ in range(2):
        st = realm_status(q, slot)
        assert st.log_count == LOG_RECORDS and [r.values for r in st.log] == [(i,) * 4 for i in range(1, LOG_RECORDS)]
        assert st.console == kept
    devices.host_call(q, slot, 0, 1, (50, 51, 52, 53) + (0,) * 27)
    st = realm_status(q, slot)
    assert [r.values for r in st.log] == [(i,) * 4 for i in range(1, LOG_RECORDS)] + [(50, 51, 52, 53)]
    assert st.console == kept
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_last_holds_the_value_of_the_doorbell_ring_counted_last(machine: Machine) -> None:
    """Two vCPUs of one realm ring the doorbell at once on two CPUs (two threads here, each
    serving one MMIO write): the first stores its value 0xA and is held up (for at most 0.2 s)
    before it counts the ring, while the second, once 0xA is stored, rings with 0xB. Whatever
    the interleaving, LAST must hold the value of the ring that brought RINGS to its final
    count. Each ring's count is recorded as it is made; unlocked, 0xB was counted first, 0xA
    last, and LAST still held 0xB."""
    import threading
    import time
    import types
    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_DEVICE
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(2))
    dev = q.realm_offset(slot) + R_DEVICE
    rings_at, last_at = dev + 8, dev + 16
    counted: dict[int, int] = {}        # the count a ring made -> that ring's value

    class Recording:
        """The realm table as one CPU's ring of ``value`` updates it: records the count it makes
        and, if ``hold``, waits after storing LAST until a ring is counted (or 0.2 s passed)."""

        def __init__(self, value: int, hold: bool) -> None:
            self.value, self.hold = value, hold

        def store_u64(self, offset: int, v: int) -> None:
            q.view.store_u64(offset, v)
            if offset == rings_at:
                counted[v] = self.value
            elif offset == last_at and self.hold:
                deadline = time.monotonic() + 0.2
                while q.view.load_u64(rings_at) == 0 and time.monotonic() < deadline:
                    time.sleep(0.001)

        def fetch_add_u64(self, offset: int, v: int) -> int:
            old = int(q.view.fetch_add_u64(offset, v))
            if offset == rings_at:
                counted[old + v] = self.value
            return old

        def cas_u64(self, offset: int, expected: int, new: int) -> int:
            old = int(q.view.cas_u64(offset, expected, new))
            if offset == rings_at and old == expected:
                counted[new] = self.value
            return old

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(q.view, name)

    def ring(value: int, hold: bool) -> None:
        cpu = types.SimpleNamespace(view=Recording(value, hold), buf=q.buf, realm_offset=q.realm_offset)
        devices.mmio(cpu, slot, devices.DOORBELL_RING, True, 3, value)  # type: ignore[arg-type]

    first = threading.Thread(target=ring, args=(0xA, True))
    first.start()
    deadline = time.monotonic() + 10
    while q.view.load_u64(last_at) != 0xA:
        assert time.monotonic() < deadline, "the first ring never stored its value"
        time.sleep(0.001)
    second = threading.Thread(target=ring, args=(0xB, False))
    second.start()
    first.join(10)
    second.join(10)
    st = realm_status(q, slot)
    rings, last = st.device[1], st.device[2]
    assert rings == 2 and sorted(counted) == [1, 2], (rings, counted)
    assert last == counted[rings], f"LAST = {last:#x}, but the ring counted last wrote {counted[rings]:#x}"
    assert devices.mmio(q, slot, devices.DOORBELL_LAST, False, 3, 0) == last
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_a_report_lock_left_by_a_zombie_is_taken_over(machine: Machine) -> None:
    """The holder exited but was not reaped yet (a zombie, as a killed CPU process is until the
    supervisor joins it): it is gone, and its report lock is taken over. os.kill(pid, 0), which
    the lock used at first, counts a zombie as alive, so the reader would have spun for ever."""
    import subprocess
    import sys
    import threading

    from rmm_mp.host import devices
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while True:     # exited, not reaped: a zombie
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        q.view.store_u64(q.realm_offset(slot) + devices._OUTPUT_LOCK, child.pid)
        done: list[object] = []
        reader = threading.Thread(target=lambda: done.append(realm_status(q, slot)), daemon=True)
        reader.start()
        reader.join(10)
        assert done, "realm_status waited for a zombie's report lock"
    finally:
        q.view.store_u64(q.realm_offset(slot) + devices._OUTPUT_LOCK, 0)
        child.wait()
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_an_output_lock_whose_holder_pid_was_reused_is_taken_over(machine: Machine) -> None:
    """A process (a forked child here) takes the output lock and dies holding it; its pid then
    names another live process (faked: the word's pid part is made this test's own pid, a
    process that started earlier). The child must name itself, not its parent, whose word
    the parent made before the fork. realm_status must take the lock over, and mark the rings'
    next cells torn as every takeover does, instead of waiting for ever. Before, the lock word
    was the holder's pid alone: a reused pid kept the dead holder alive, and the reader spun."""
    import os
    import threading
    import warnings

    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_TORN
    from rmm_mp.hw import process
    from rmm_mp.hw.cpuarea import binding_word
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    base = q.realm_offset(slot)
    realm_status(q, slot)   # this process makes (and keeps) its own lock word before the fork
    # A fork, not a spawn: what is tested is the word cached before it. The child only takes the
    # lock and exits, touching no lock another thread (xdist's) may hold: CPython 3.12's warning
    # about forking a multi-threaded process does not apply.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:      # the holder: takes the lock and dies with it (no atexit: the machine stays)
        devices._lock_output(q.view, base)
        os._exit(0)
    os.waitpid(child, 0)
    word = q.view.load_u64(base + devices._OUTPUT_LOCK)
    assert word & 0xFFFF_FFFF == child, "the forked child took the lock in its parent's name"
    reused = (word & ~0xFFFF_FFFF) | os.getpid()        # the dead holder's word, its pid now ours
    mine = binding_word(os.getpid(), process.own_start_ms())
    assert reused != mine, "the child started in the same 10 ms as this process: the fake needs another"
    q.view.store_u64(base + devices._OUTPUT_LOCK, reused)
    done: list[object] = []
    reader = threading.Thread(target=lambda: done.append(realm_status(q, slot)), daemon=True)
    reader.start()
    reader.join(10)
    try:
        assert done, "realm_status waited for an output lock whose holder's pid was reused"
        assert q.view.load_u64(base + devices._OUTPUT_LOCK) == 0
        assert struct.unpack_from("<2Q", q.buf, base + R_TORN) == (1, 1), "the takeover did not mark the rings"
    finally:
        q.view.store_u64(base + devices._OUTPUT_LOCK, 0)
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_an_output_lock_held_by_a_live_holder_without_a_start_time_is_waited_for(machine: Machine) -> None:
    """A holder that could not read its own start time (process.own_start_ms gives 0) names
    itself by its pid alone, start part 0. Held so by a live process (this test's, the word
    stored by hand), the lock must be waited for: realm_status, in a thread, is still waiting
    after 0.3 s, and once the lock is released it finishes with no takeover recorded. Taking the
    lock over because no start time matches 0 would let a reader (or a second writer) in
    beside a live holder."""
    import os
    import threading
    import time

    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_TORN
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    base = q.realm_offset(slot)
    q.view.store_u64(base + devices._OUTPUT_LOCK, os.getpid())
    done: list[object] = []
    reader = threading.Thread(target=lambda: done.append(realm_status(q, slot)), daemon=True)
    reader.start()
    time.sleep(0.3)
    try:
        assert not done, "realm_status took the lock from a live holder whose word has no start time"
    finally:
        q.view.store_u64(base + devices._OUTPUT_LOCK, 0)
    reader.join(10)
    assert done, "realm_status did not finish once the lock was released"
    assert struct.unpack_from("<2Q", q.buf, base + R_TORN) == (0, 0), "a takeover was recorded"
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_waiting_for_an_output_lock_held_by_a_stopped_holder_sleeps(machine: Machine) -> None:
    """A live CPU process holds a realm's output lock for 1 s (stopped with SIGSTOP, or
    descheduled, between its stores; here this test's own word stored by hand): a print of the
    realm's from another CPU waits for it, sleeping, and gets the lock with no takeover. The wait
    looked at the holder's process and called sleep(0) on every try: it used 0.40 s of CPU per
    1 s on a loaded 2-core host, the whole second on an idle one; load can only lower the
    figure, so the bound cannot fail through a slow machine."""
    import threading
    import time

    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_TORN
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    base = q.realm_offset(slot)
    q.view.store_u64(base + devices._OUTPUT_LOCK, devices._own_lock_word())
    got: list[tuple[bool, float]] = []

    def lock() -> None:
        cpu_started = time.thread_time()
        took_over = devices._lock_output(q.view, base)
        got.append((took_over, time.thread_time() - cpu_started))

    waiter = threading.Thread(target=lock)
    started = time.monotonic()
    waiter.start()
    time.sleep(1.0)
    q.view.store_u64(base + devices._OUTPUT_LOCK, 0)     # the holder's release
    waiter.join()
    waited = time.monotonic() - started
    q.view.store_u64(base + devices._OUTPUT_LOCK, 0)     # the waiter's
    took_over, used = got[0]
    assert waited >= 0.9 and not took_over, f"the lock was taken after {waited:.3f} s, took over: {took_over}"
    assert used < 0.25, f"the wait used {used:.3f} s of CPU in {waited:.3f} s"
    assert struct.unpack_from("<2Q", q.buf, base + R_TORN) == (0, 0), "a takeover was recorded"
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


class _KilledAt(Exception):
    """Stands for the death of the CPU process serving an exit (_DyingView)."""


class _DyingView:
    """The run queue's view, but the process serving the exit "dies" (raises _KilledAt) just
    before its first 64-bit store of ``value``."""

    def __init__(self, view, value: int) -> None:  # type: ignore[no-untyped-def]
        self._view, self._value = view, value

    def store_u64(self, offset: int, value: int) -> None:
        if value == self._value:
            raise _KilledAt(offset)
        self._view.store_u64(offset, value)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._view, name)


def _serve_dying(q: RunQueue, slot: int, view, serve) -> None:  # type: ignore[no-untyped-def]
    """Serve an exit of ``slot`` with ``serve(queue)`` through ``view``, a view whose process
    "dies" (raises _KilledAt) at some store; then leave the output lock as the death leaves it:
    held by a process that does not exist."""
    import types

    from rmm_mp.host import devices
    dying = types.SimpleNamespace(view=view, buf=q.buf, realm_offset=q.realm_offset, count=q.count)
    with pytest.raises(_KilledAt):
        serve(dying)
    with open("/proc/sys/kernel/pid_max") as f:
        dead = int(f.read())        # no process has this pid
    q.view.store_u64(q.realm_offset(slot) + devices._OUTPUT_LOCK, dead)     # the finally never ran


def _die_inside(q: RunQueue, slot: int, value: int, serve) -> None:  # type: ignore[no-untyped-def]
    """Serve an exit of ``slot`` with ``serve(queue)`` through a view whose process is killed
    before it stores ``value``: the output lock is left held by a process that does not exist."""
    _serve_dying(q, slot, _DyingView(q.view, value), serve)


def test_a_report_cut_short_by_a_killed_cpu_never_shows_a_torn_pair(machine: Machine) -> None:
    """The guest REPORTs failure (1, 0x11), then pass (0, 0x22); the CPU serving the second is
    killed after storing its code, before its detail. realm_status (taking the lock over) must
    show the first report whole, (1, 0x11), one report, and that a later one was cut short, so
    the realm has not passed; the run report's outcome says so. Before, it showed (0, 0x11):
    a pass, with the failure's detail, which the guest never reported. A third REPORT (2, 0x33),
    made whole after the takeover, is the realm's result again, nothing cut short."""
    from rmm_mp.host import devices
    from rmm_mp.workload.realms import Finished, outcome
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    devices.host_call(q, slot, 0, devices.HOST_CALL_REPORT, (1, 0x11) + (0,) * 29)
    _die_inside(q, slot, 0x22, lambda cpu: devices.host_call(cpu, slot, 0, devices.HOST_CALL_REPORT,
                                                             (0, 0x22) + (0,) * 29))
    for _ in range(2):      # the first takes the lock over; the second finds it free
        st = realm_status(q, slot)
        assert (st.reports, st.result) == (1, (1, 0x11)), (st.reports, st.result)
        assert st.report_cut_short and not st.passed
    f = Finished("vm", 1, slot, 0, st.state, st.end, st.reports, st.result, {}, report_cut_short=st.report_cut_short)
    assert f.failed
    seen = outcome(f, [], running=True)
    assert not seen.ok and seen.detail == ("its last REPORT was cut short by a CPU process killed while storing it, "
                                           "so what the guest reported last is unknown; its last whole report was "
                                           "code 1 (detail 0x11)"), seen.detail
    devices.host_call(q, slot, 0, devices.HOST_CALL_REPORT, (2, 0x33) + (0,) * 29)
    st = realm_status(q, slot)
    assert (st.reports, st.result, st.report_cut_short) == (2, (2, 0x33), False)
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_a_doorbell_ring_cut_short_by_a_killed_cpu_leaves_last_and_rings_in_step(machine: Machine) -> None:
    """The guest rings 0xA, then 0xB; the CPU serving the second is killed after storing its
    value, before counting the ring. realm_status (taking the lock over) and a guest's read of
    LAST must both give 0xA, the value of the ring counted last (RINGS reads 1): the cut ring was
    never made. Before, LAST read 0xB, a ring RINGS does not count. A third ring, 0xC, made whole
    after the takeover, is counted (2) and is LAST."""
    from rmm_mp.host import devices
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    devices.mmio(q, slot, devices.DOORBELL_RING, True, 3, 0xA)
    _die_inside(q, slot, 2, lambda cpu: devices.mmio(cpu, slot, devices.DOORBELL_RING, True, 3, 0xB))   # 2: the count
    for _ in range(2):      # the first takes the lock over; the second finds it free
        st = realm_status(q, slot)
        assert st.device[1:3] == (1, 0xA), [hex(v) for v in st.device]
        assert devices.mmio(q, slot, devices.DOORBELL_RING, False, 3, 0) == 1
        assert devices.mmio(q, slot, devices.DOORBELL_LAST, False, 3, 0) == 0xA
    devices.mmio(q, slot, devices.DOORBELL_RING, True, 3, 0xC)
    assert realm_status(q, slot).device[1:3] == (2, 0xC)
    assert devices.mmio(q, slot, devices.DOORBELL_LAST, False, 3, 0) == 0xC
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


class _DyingAtStore:
    """The run queue's view, but the process serving the exit "dies" (raises _KilledAt) just
    before its ``k``-th 64-bit store (from 0; the output lock's release, in a finally, is one)."""

    def __init__(self, view, k: int) -> None:  # type: ignore[no-untyped-def]
        self._view, self._left = view, k

    def store_u64(self, offset: int, value: int) -> None:
        if self._left == 0:
            raise _KilledAt(offset)
        self._left -= 1
        self._view.store_u64(offset, value)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._view, name)


def _die_at_store(q: RunQueue, slot: int, k: int, serve) -> None:  # type: ignore[no-untyped-def]
    """Serve an exit of ``slot`` with ``serve(queue)`` through a view whose process is killed
    before its ``k``-th store: the output lock is left held by a process that does not exist."""
    _serve_dying(q, slot, _DyingAtStore(q.view, k), serve)


def test_a_report_killed_in_any_window_is_whole_or_absent(machine: Machine) -> None:
    """A REPORT makes five 64-bit stores: the count's busy bit, the code, the detail, the count,
    the lock's release. For each of them, and with the last whole report in either cell, a whole
    REPORT (k + 1, 0x100 + k) is made and then one (0x77, 0x88) whose CPU is killed before that
    store. realm_status (taking the lock over) must show the killed one whole (killed only
    before the release) or not at all: the whole report's pair and count, and "cut short" if it
    was killed after setting the busy bit; never a pair mixing the two, never the busy bit in
    the count. The next whole REPORT clears the mark."""
    from rmm_mp.host import devices
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    made = 0
    for k in range(5):
        for _parity in range(2):
            devices.host_call(q, slot, 0, devices.HOST_CALL_REPORT, (k + 1, 0x100 + k) + (0,) * 29)
            made += 1
            st = realm_status(q, slot)
            assert (st.reports, st.result, st.report_cut_short) == (made, (k + 1, 0x100 + k), False)
            _die_at_store(q, slot, k, lambda cpu: devices.host_call(cpu, slot, 0, devices.HOST_CALL_REPORT,
                                                                    (0x77, 0x88) + (0,) * 29))
            st = realm_status(q, slot)
            if k == 4:      # killed after the count moved: the report is whole
                made += 1
                expected = (made, (0x77, 0x88), False)
            else:
                expected = (made, (k + 1, 0x100 + k), k > 0)
            assert (st.reports, st.result, st.report_cut_short) == expected, (k, st.reports, st.result)
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_a_doorbell_ring_killed_in_any_window_is_counted_with_its_value_or_not_at_all(machine: Machine) -> None:
    """A ring makes three 64-bit stores: the value, the count, the lock's release. For each of
    them, and with the last whole ring's value in either cell, a whole ring (0x10 + k) is made
    and then one (0x77) whose CPU is killed before that store. realm_status (taking the lock
    over) and a guest's read of LAST must agree with RINGS: the killed ring counted and LAST
    (killed only before the release) or neither, LAST the whole ring's value."""
    from rmm_mp.host import devices
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    rings = 0
    for k in range(3):
        for _parity in range(2):
            devices.mmio(q, slot, devices.DOORBELL_RING, True, 3, 0x10 + k)
            rings += 1
            _die_at_store(q, slot, k, lambda cpu: devices.mmio(cpu, slot, devices.DOORBELL_RING, True, 3, 0x77))
            st = realm_status(q, slot)
            if k == 2:      # killed after the count moved: the ring is whole
                rings += 1
            expected = (rings, 0x77 if k == 2 else 0x10 + k)
            assert st.device[1:3] == expected, (k, [hex(v) for v in st.device])
            assert devices.mmio(q, slot, devices.DOORBELL_RING, False, 3, 0) == rings
            assert devices.mmio(q, slot, devices.DOORBELL_LAST, False, 3, 0) == expected[1]
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


def test_a_read_of_last_never_returns_a_ring_that_was_never_counted(machine: Machine) -> None:
    """The guest rings 0xA (RINGS 1); a vCPU then reads LAST, unlocked, and is held up between
    reading the count and reading the cell the count selects: meanwhile another CPU rings 0xB
    whole (RINGS 2), and a third rings 0xC and is killed after storing its value, in the cell of
    ring 3, the cell ring 1 used, before counting it. The read must return 0xB, the value of the
    ring counted last, never 0xC, a ring that is not counted and never will be. Before, the read
    took the count once and returned whatever the cell then held: 0xC."""
    import types

    from rmm_mp.host import devices
    from rmm_mp.host.realm_entry import R_ALT, R_DEVICE
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    base = q.realm_offset(slot)
    devices.mmio(q, slot, devices.DOORBELL_RING, True, 3, 0xA)
    cells = (base + R_DEVICE + 16, base + R_ALT + 16)
    held: list[int] = []

    class HeldReader:
        """The reader's view: before its first load of a LAST cell, the other CPUs' rings run."""

        def load_u64(self, offset: int) -> int:
            if offset in cells and not held:
                held.append(offset)
                devices.mmio(q, slot, devices.DOORBELL_RING, True, 3, 0xB)
                _die_inside(q, slot, 3, lambda cpu: devices.mmio(cpu, slot, devices.DOORBELL_RING, True, 3, 0xC))
            return int(q.view.load_u64(offset))

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(q.view, name)

    reader = types.SimpleNamespace(view=HeldReader(), buf=q.buf, realm_offset=q.realm_offset, count=q.count)
    assert devices.mmio(reader, slot, devices.DOORBELL_LAST, False, 3, 0) == 0xB
    assert held == [cells[0]], "the other rings ran between the reader's two loads"
    st = realm_status(q, slot)      # takes the lock over from the killed ring
    assert st.device[1:3] == (2, 0xB), [hex(v) for v in st.device]
    v0 = slot * MAX_VCPUS
    assert q.take(0) == v0
    q.end(v0, 2)
    q.release_realm(alloc, slot)


class _RacingView:
    """The run queue's view, but another producer's whole enqueue runs once, just before this
    producer's first compare-and-swap of the enqueue position (``at="claim"``) or just after its
    first load of it (``at="load"``): the two interleavings in which a producer loses a position."""

    def __init__(self, view, at: str, rival) -> None:  # type: ignore[no-untyped-def]
        from rmm_mp.host import runqueue
        self._view, self._at, self._rival, self._enq = view, at, rival, runqueue._ENQ
        self.loads = 0

    def load_u64(self, offset: int) -> int:
        value = self._view.load_u64(offset)
        self.loads += 1
        assert self.loads < 10_000, "the producer spins on a position it can never take"
        if offset == self._enq and self._at == "load" and self._rival is not None:
            self._rival, rival = None, self._rival
            rival()
        return value

    def cas_u64(self, offset: int, expected: int, new: int) -> int:
        if offset == self._enq and self._at == "claim" and self._rival is not None:
            self._rival, rival = None, self._rival
            rival()
        return self._view.cas_u64(offset, expected, new)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._view, name)


@pytest.mark.parametrize("at", ["load", "claim"])
def test_a_producer_that_loses_its_position_to_another_takes_the_next(machine: Machine, at: str) -> None:
    """Two producers after one ring position: the one whose claim fails, or which finds the cell
    already published, moves on to the next position; both vCPUs come out of the queue once, in
    the order of their claims."""
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(3))
    v0 = slot * MAX_VCPUS
    rival = RunQueue(machine)
    q.view = _RacingView(q.view, at, lambda: rival.start(v0 + 2))
    assert q.start(v0 + 1)
    q.view = rival.view
    assert [q.take(0), q.take(0), q.take(0), q.take(0)] == [v0, v0 + 2, v0 + 1, None]
    for i in range(3):
        q.end(v0 + i, 2)
    q.release_realm(alloc, slot)


def test_migrations_count_only_runs_on_another_cpu(machine: Machine) -> None:
    """One vCPU run by CPUs 0, 0, 1, 1, 0 in turn: the migrations counter goes up only when the CPU
    it runs on differs from the last one (0, 0, 1, 1, 2); a take by another CPU without a run is no move."""
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1))
    v = slot * MAX_VCPUS
    seen = []
    for cpu in (0, 0, 1, 1, 0):
        assert q.take(cpu) == v
        q.ran_on(v, cpu)
        seen.append(q.counter(slot, "migrations"))
        q.requeue(v)
    assert seen == [0, 0, 1, 1, 2]
    assert q.take(1) == v                   # taken by another CPU, but not run there
    q.requeue(v)
    assert q.take(0) == v
    q.ran_on(v, 0)
    assert q.counter(slot, "migrations") == 2
    q.end(v, 2)
    q.release_realm(alloc, slot)


def test_a_vcpu_drained_on_another_cpu_did_not_migrate(machine: Machine) -> None:
    """hello's REC runs on CPU 0, then CPU 1 (one migration); its realm is then turned off by
    the host (as the lifecycle activity does at a realm's lifetime) and CPU 0 takes the vCPU
    only to drain it: no REC_ENTER, so no second migration. The count was made when a vCPU was
    taken, and a lifecycle realm's report counted every drain by another CPU as a migration."""
    b = boot(machine, load_guest("hello"))
    v = b.slot * MAX_VCPUS
    loops = {cpu: RunLoop(machine.cpu(cpu)) if cpu else RunLoop(b.cpu) for cpu in (0, 1)}  # type: ignore[arg-type]
    for cpu in (0, 1):
        assert b.queue.take(cpu) == v
        loops[cpu].step(v)                              # a host call: requeued
    assert b.queue.counter(b.slot, "migrations") == 1
    b.queue.system_off(b.slot, 1)
    assert b.queue.take(0) == v
    loops[0].step(v)
    st = b.status()
    assert st.state == "DONE" and st.vcpu_ends == ("DRAINED",)
    assert st.counters["entries"] == 2 and st.counters["migrations"] == 1
    b.finish()


def test_shared_ranges_up_to_the_limit(machine: Machine) -> None:
    """A realm with one shared range more than MAX_SHARED_RANGES is refused with a CapacityError; one with
    exactly MAX_SHARED_RANGES is added and reads them back in order."""
    from rmm_mp.host.realm_entry import MAX_SHARED_RANGES
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    ranges = tuple(((1 << 39) + i * MiB, MiB) for i in range(MAX_SHARED_RANGES + 1))
    with pytest.raises(CapacityError, match=f"at most {MAX_SHARED_RANGES}"):
        q.add_realm(alloc, fake_realm(1), shared=ranges)
    slot = q.add_realm(alloc, fake_realm(1), vcpus=0, shared=ranges[:-1])
    assert q.shared_ranges(slot) == ranges[:-1]
    q.release_realm(alloc, slot)


def test_a_full_shared_page_list_stays_full(machine: Machine) -> None:
    """Once MAX_SHARED_PAGES pages are listed, every further add is refused and changes nothing."""
    from rmm_mp.host.realm_entry import MAX_SHARED_PAGES
    q = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slot = q.add_realm(alloc, fake_realm(1), vcpus=0)
    pages = [(BASE + i * G, alloc.alloc()) for i in range(MAX_SHARED_PAGES)]
    assert all(q.add_shared_page(slot, ipa, pa) for ipa, pa in pages)
    assert not q.add_shared_page(slot, BASE + 100 * G, 0x1234_5000)
    assert not q.add_shared_page(slot, BASE + 101 * G, 0x1234_6000)
    assert q.shared_pages(slot) == tuple(pages)
    q.release_realm(alloc, slot)
    assert alloc.statistics().granules_in_use == 0


def test_exit_counts_are_the_current_loops(machine: Machine) -> None:
    """exit_counts(queue, cpu) publishes the exits of CPU ``cpu``'s current run loop: a new
    RunLoop on that CPU starts its line at zero instead of showing the previous loop's figures
    for the reasons it has not counted yet."""
    b = boot(machine, load_guest("hello"))
    first = RunLoop(b.cpu)  # type: ignore[arg-type]
    while (vcpu := first.queue.take(0)) is not None:
        first.step(vcpu)
    assert sum(first.exits) >= 2 and exit_counts(first.queue, 0) == tuple(first.exits)
    second = RunLoop(b.cpu)  # type: ignore[arg-type]
    assert exit_counts(second.queue, 0) == tuple(second.exits) == (0,) * 8
    b.finish()


class _CopySpy:
    """Stands in for a RunLoop's bound NsAccess: records each copy, then makes it."""

    def __init__(self, ns: object) -> None:
        self.ns = ns
        self.copies: list[str] = []

    def unpack(self, pa: int, layout: struct.Struct) -> tuple:
        self.copies.append("unpack")
        return self.ns.unpack(pa, layout)    # type: ignore[attr-defined, no-any-return]

    def write(self, pa: int, data: bytes) -> None:
        self.copies.append("write")
        self.ns.write(pa, data)      # type: ignore[attr-defined]


# As in tests/hw/test_machine_contract.py: the child runs rmm_mp code and os._exit only.
def _in_a_forked_child(act: Callable[[], object], **after: Callable[[], object]) -> dict[str, object]:
    """Run ``act`` in a forked child; what it raised ("Type: message", None if nothing) as
    "raised", and each of ``after``'s values as the child saw it then, under its name."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        report: dict[str, object] = {}
        try:
            os.close(reader)
            try:
                act()
                report["raised"] = None
            except BaseException as exc:    # noqa: BLE001 - reported to the parent, whatever it is
                report["raised"] = f"{type(exc).__name__}: {exc}"
            report.update((name, value()) for name, value in after.items())
            os.write(writer, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        child: dict[str, object] = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return child


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_cannot_step_the_parents_run_loop(machine: Machine) -> None:
    """RunLoop binds the host's NsAccess once (Machine.ns_access) and copies the run page through
    it without Machine's open and fork checks, on the claim that step's REC_ENTER before the
    copies refuses a forked child (the CPU handle's fork check). So a child of a process that
    built the loop, stepping it, gets MachineError from the REC_ENTER and makes no copy with the
    parent's lock identity; the parent then steps the same vCPU and runs the realm to its end."""
    b = boot(machine, load_guest("hello"))
    loop = RunLoop(b.cpu)        # type: ignore[arg-type]
    spy = _CopySpy(loop._ns)
    loop._ns = spy              # type: ignore[assignment]
    vcpu = b.queue.take(0)
    assert vcpu is not None
    child = _in_a_forked_child(lambda: loop.step(vcpu), copies=lambda: spy.copies, entries=lambda: loop.entries)
    assert str(child["raised"]).startswith("MachineError"), child
    assert child["copies"] == [] and child["entries"] == 0, child
    loop.step(vcpu)
    assert spy.copies and spy.copies[0] == "unpack"
    assert b.run().ended == "done" and b.status().state == "DONE"
    b.finish()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_running_the_parents_cpu_leaves_the_queue_alone(machine: Machine) -> None:
    """run_loop in a forked child with its parent's CPU handle is refused before it touches the
    shared run queue: the CPU's exit counts are not zeroed (RunLoop's constructor) and no vCPU is
    taken (it would stay RUNNING, never entered, for ever); the parent then runs the realm to
    its end."""
    b = boot(machine, load_guest("hello"))
    loop = RunLoop(b.cpu)        # type: ignore[arg-type]
    vcpu = b.queue.take(0)
    assert vcpu is not None
    loop.step(vcpu)             # one exit counted, the vCPU queued again
    counts = exit_counts(b.queue, 0)
    assert any(counts) and b.queue.vcpu_state(vcpu) == V_QUEUED
    child = _in_a_forked_child(lambda: runloop.run_loop(b.cpu, runloop.LoopPlan(budget=1)))  # type: ignore[arg-type]
    assert str(child["raised"]).startswith("MachineError"), child
    assert exit_counts(b.queue, 0) == counts
    assert b.queue.vcpu_state(vcpu) == V_QUEUED
    assert b.run().ended == "done" and b.status().state == "DONE"
    b.finish()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_stepping_a_draining_vcpu_leaves_the_queue_alone(machine: Machine) -> None:
    """The same fork, with the vCPU's realm already off: step's first move (before REC_ENTER) is
    to read the realm's state in the shared queue and end a vCPU whose realm is not RUNNING. A
    child stepping its parent's loop must be refused before that: the vCPU stays RUNNING (taken
    by the parent), and the parent's own step then drains it."""
    b = boot(machine, load_guest("hello"))
    loop = RunLoop(b.cpu)        # type: ignore[arg-type]
    vcpu = b.queue.take(0)
    assert vcpu is not None
    b.queue.system_off(vcpu // MAX_VCPUS, 0)
    child = _in_a_forked_child(lambda: loop.step(vcpu))
    assert str(child["raised"]).startswith("MachineError"), child
    assert b.queue.vcpu_state(vcpu) == V_RUNNING
    loop.step(vcpu)
    assert b.queue.vcpu_state(vcpu) == V_DONE
    b.finish()
