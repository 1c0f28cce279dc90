"""The host's run queue (rmm_mp.host.runqueue) under explicit interleavings, as a model checker
would drive it.

Two or three CPUs' RunQueue handles on one machine, in threads of this process, share the
machine's control block; each handle's view is wrapped so that every shared load, store or
read-modify-write is a scheduling point, and a scheduler lets exactly one CPU run from one point
to its next, in the order it chooses (a producer's wait for a cell's release parks it until
another CPU writes). Schedules are explored exhaustively up to a bound on preemptions, depth
first. The rings are shrunk to RING cells (runqueue's RING_SLOTS and _MASK patched: as few as
the vCPUs a ring can hold) and their positions start just before a lap ends, so the runs go round
them several times and each cell serves several laps.

The invariants: no vCPU is taken by two CPUs at once, nor by a CPU that does not serve its
realm's queue; at the end, every runnable vCPU is QUEUED and in its realm's ring exactly once
(none lost, none twice), the ring's other cells are free, a vCPU woken while it turned itself off
is not OFF, and the realm counts its vCPUs.
The scheduler is tests/interleave.py's, which tests/hw/test_tlb_interleavings.py uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import atomicshm
import pytest
from interleave import Actors, Stepped, explore, point, spin

from rmm_mp import Machine
from rmm_mp.host import runqueue
from rmm_mp.host.realm_entry import (
    R_ACTIVE, R_QUEUE, R_STATE, RUNNING, V_QUEUED, V_RUNNING, VCPU_STATES, VF_STATE, VF_WOKEN)
from rmm_mp.host.runqueue import MAX_VCPUS, QUEUES, REALM_BYTES, RunQueue

PREEMPTIONS = 2
MAX_STEPS = 600
"""Steps of one run past which it is taken to loop for ever."""
RING = 2
"""Cells per ring in these runs: as few as the two vCPUs a ring holds at most, so a producer
reuses the cell its consumer of the lap before has just claimed, and waits for its release."""
STALE = 0xDEAD
"""What every cell's vCPU word holds at the start of a run: no vCPU (a consumer that reads a
cell before its producer has written it takes this)."""
START = 1000 * RING - 1
"""Every ring's first position: one before a lap ends."""
_REALMS = runqueue._REALMS


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    """A 2-CPU machine whose rings have RING cells, and a producer's wait that is a spin."""
    monkeypatch.setattr(runqueue, "RING_SLOTS", RING)
    monkeypatch.setattr(runqueue, "_MASK", RING - 1)
    monkeypatch.setattr(runqueue, "backoff", lambda tries: spin())
    with Machine.create("host", cpus=2) as m:
        yield m


def _vcpu_off(vcpu: int) -> int:
    slot, index = divmod(vcpu, MAX_VCPUS)
    return _REALMS + slot * REALM_BYTES + runqueue.R_VCPUS + index * runqueue.VCPU_BYTES


def _reset(m: Machine, handles: list[RunQueue], realms: dict[int, tuple[int, dict[int, int]]]) -> None:
    """Every word a run reads as at its start, so that a schedule replays from its choices
    alone: rings 0 and 1 empty at START; the realms' entries zeroed (counters, the CPU each vCPU
    last ran on), then ``realms``: slot -> (queue, {vCPU: state}), QUEUED vCPUs put into their
    realm's ring in order, all counted as active; each handle's next queue to try its first."""
    raw = m.control.view
    for enq, deq, ring in QUEUES[:2]:
        raw.store_u64(enq, START)
        raw.store_u64(deq, START)
        for pos in range(START, START + RING):
            raw.store_u64(ring + 16 * (pos % RING), pos)
            raw.store_u64(ring + 16 * (pos % RING) + 8, STALE)
    for slot, (queue, vcpus) in realms.items():
        base = _REALMS + slot * REALM_BYTES
        m.control.buf[base:base + REALM_BYTES] = bytes(REALM_BYTES)
        raw.store_u32(base + R_STATE, RUNNING)
        raw.store_u32(base + R_QUEUE, queue)
        raw.store_u32(base + R_ACTIVE, len(vcpus))
        enq, _, ring = QUEUES[queue]
        for vcpu, state in vcpus.items():
            raw.store_u32(_vcpu_off(vcpu) + VF_STATE, state)
            if state == V_QUEUED:
                pos = raw.load_u64(enq)
                raw.store_u64(ring + 16 * (pos % RING) + 8, vcpu)
                raw.store_u64(ring + 16 * (pos % RING), pos + 1)
                raw.store_u64(enq, pos + 1)
    for h in handles:
        h._next = 0


def _ring(raw: atomicshm.AtomicView, queue: int) -> list[int]:
    """The vCPUs in ``queue``'s ring, oldest first; every cell between the positions published,
    every other cell free for its next producer."""
    enq, deq, ring = QUEUES[queue]
    first, end = raw.load_u64(deq), raw.load_u64(enq)
    assert first <= end, f"queue {queue}: dequeue position {first} past the enqueue position {end}"
    out = []
    for pos in range(first, end):
        cell = ring + 16 * (pos % RING)
        assert raw.load_u64(cell) == pos + 1, f"queue {queue}: position {pos} claimed but not published"
        out.append(raw.load_u64(cell + 8))
    for pos in range(end, first + RING):
        assert raw.load_u64(ring + 16 * (pos % RING)) == pos, f"queue {queue}: position {pos}'s cell not free"
    return out


def _state(raw: atomicshm.AtomicView, vcpu: int) -> str:
    return VCPU_STATES[raw.load_u32(_vcpu_off(vcpu) + VF_STATE)]


class Cpus:
    """Which CPU runs which vCPU, as the run loops see it: a vCPU taken while another CPU runs it
    fails the run, and so does one taken from a queue its realm is not in."""

    def __init__(self, queues: dict[int, int]) -> None:
        self.running: dict[int, int] = {}
        self.queues = queues
        """vCPU -> the queue its realm is in."""

    def took(self, q: RunQueue, vcpu: int, cpu: int) -> None:
        assert vcpu in self.queues, f"CPU {cpu} took {vcpu}, no vCPU of these runs"
        assert self.queues[vcpu] in q.serve, \
            f"CPU {cpu} took vCPU {vcpu}, whose realm is in queue {self.queues[vcpu]}; it serves {q.serve}"
        assert vcpu not in self.running, f"vCPU {vcpu} taken by CPU {cpu} while CPU {self.running[vcpu]} runs it"
        self.running[vcpu] = cpu

    def put_back(self, vcpu: int) -> None:
        del self.running[vcpu]


def _run(handles: list[RunQueue], make: Callable[[], Actors], check: Callable[[], None],
         bound: int = PREEMPTIONS) -> int:
    """Explore ``make``'s actors with every handle's view stepped; ``check`` after each run."""
    raw = handles[0].view
    for h in handles:
        h.view = Stepped(raw)             # type: ignore[assignment]
    try:
        return explore(make, bound, check=check, max_steps=MAX_STEPS)
    finally:
        for h in handles:
            h.view = raw


def _loop(q: RunQueue, cpu: int, cpus: Cpus, rounds: int) -> Callable[[], None]:
    """A CPU's run loop: take a vCPU, run it once (the CPU's run of it ends before it is put
    back), requeue it."""
    def run() -> None:
        for _ in range(rounds):
            vcpu = q.take(cpu)
            if vcpu is None:
                continue
            cpus.took(q, vcpu, cpu)
            q.ran_on(vcpu, cpu)
            cpus.put_back(vcpu)
            q.requeue(vcpu)
    return run


def test_vcpus_migrating_between_two_cpus_are_never_lost_nor_doubled(machine: Machine) -> None:
    """Realm 0's vCPUs 0 and 1 are queued; CPUs 0 and 1 each take a vCPU, run it and requeue it,
    twice, through handles of their own, in every interleaving with at most PREEMPTIONS
    preemptions, round a RING-cell ring from one position before a lap ends. No vCPU is taken by
    both CPUs at once, and at the end both are QUEUED, each is in the ring once and the ring's
    other cells are free. Fails if a consumer releases its cell before it has read the vCPU, if
    a claim of a position (a producer's or a consumer's) is a load and a store rather than one
    compare-and-swap, or if requeue publishes the vCPU before it is QUEUED. (A producer that
    publishes a cell before its vCPU goes unseen here, where a cell's stale vCPU is the one being
    queued; the next test catches it.)"""
    handles = a, b = [RunQueue(machine), RunQueue(machine)]
    raw = machine.control.view

    def make() -> Actors:
        _reset(machine, handles, {0: (0, {0: V_QUEUED, 1: V_QUEUED})})
        cpus = Cpus({0: 0, 1: 0})
        return {"cpu0": _loop(a, 0, cpus, 2), "cpu1": _loop(b, 1, cpus, 2)}

    def check() -> None:
        assert sorted(_ring(raw, 0)) == [0, 1]
        assert [_state(raw, v) for v in (0, 1)] == ["QUEUED"] * 2
        assert raw.load_u32(_REALMS + R_ACTIVE) == 2
    assert _run(handles, make, check) > 100


def test_a_vcpu_woken_while_it_turns_itself_off_is_not_lost(machine: Machine) -> None:
    """Realm 0's vCPU 0 is queued (its REC runnable in the RMM) and its vCPU 1 runs on CPU 1.
    CPU 0 takes vCPU 0 and enters it: it turns itself off (PSCI CPU_OFF: its REC not runnable,
    then stop). Meanwhile vCPU 1 turns vCPU 0 on (CPU_ON: the RMM makes the REC runnable unless
    it is, ALREADY_ON, then start with maybe_on as the host cannot see which), then CPU 1 takes
    what its queue holds and enters it: a vCPU whose REC is not runnable fails the entry
    (ERROR_REC), which must find the woken mark (take_woken) and stop the vCPU; one that runs is
    requeued. In every interleaving (at most PREEMPTIONS preemptions, plus one), no vCPU is taken
    twice at once and at the end vCPU 0 is QUEUED, in the ring once, if its REC is runnable (the
    wake-up is not lost), and otherwise OFF, or QUEUED with the woken mark (its next entry fails
    and turns it off); the realm counts its vCPUs and is not DONE. Fails if stop turns a woken
    vCPU off, if start queues a vCPU it finds RUNNING, if a start after CPU_ON does not mark an
    OFF vCPU woken, or if a producer publishes a cell before its vCPU (the consumer takes the
    cell's STALE word)."""
    handles = a, b = [RunQueue(machine), RunQueue(machine)]
    raw = machine.control.view

    def make() -> Actors:
        _reset(machine, handles, {0: (0, {0: V_QUEUED, 1: V_RUNNING})})
        cpus = Cpus({0: 0, 1: 0})
        cpus.running[1] = 1
        rec_on = {0: True}
        """vCPU 0's REC is runnable in the RMM (its flag, under the REC's lock there)."""

        def enter(q: RunQueue, vcpu: int, cpu: int, cpu_off: bool) -> None:
            cpus.took(q, vcpu, cpu)
            point()                             # REC_ENTER reads the REC's runnable flag
            if not rec_on[vcpu]:                # ERROR_REC: a spurious wake-up's entry
                cpus.put_back(vcpu)
                assert q.take_woken(vcpu), f"vCPU {vcpu} queued with its REC off and no woken mark"
                q.stop(vcpu)
                return
            q.ran_on(vcpu, cpu)
            if cpu_off:
                point()                         # PSCI CPU_OFF in the RMM
                rec_on[vcpu] = False
            cpus.put_back(vcpu)
            (q.stop if cpu_off else q.requeue)(vcpu)

        def cpu0() -> None:
            vcpu = a.take(0)
            if vcpu is not None:
                enter(a, vcpu, 0, cpu_off=True)

        def cpu1() -> None:
            point()                             # PSCI_COMPLETE of vCPU 1's CPU_ON in the RMM
            rec_on[0] = True
            assert b.start(0, maybe_on=True)
            vcpu = b.take(1)
            if vcpu is not None:
                enter(b, vcpu, 1, cpu_off=False)
        actors = {"cpu0": cpu0, "cpu1": cpu1}
        state["rec_on"] = rec_on
        return actors

    state: dict[str, dict[int, bool]] = {}

    def check() -> None:
        ring, vcpu0, woken = _ring(raw, 0), _state(raw, 0), raw.load_u32(_vcpu_off(0) + VF_WOKEN)
        if state["rec_on"][0]:
            assert (ring, vcpu0) == ([0], "QUEUED"), f"vCPU 0's REC is on: vCPU 0 is {vcpu0}, the ring holds {ring}"
        else:
            assert (ring, vcpu0) in (([], "OFF"), ([0], "QUEUED")), f"vCPU 0 {vcpu0}, ring {ring}"
            assert vcpu0 == "OFF" or woken, "vCPU 0 queued with its REC off and no woken mark"
        assert _state(raw, 1) == "RUNNING"
        assert raw.load_u32(_REALMS + R_ACTIVE) == 1 + (vcpu0 == "QUEUED")
        assert raw.load_u32(_REALMS + R_STATE) == RUNNING
    assert _run(handles, make, check, PREEMPTIONS + 1) > 50


def test_two_queues_keep_each_realms_vcpus_in_its_own(machine: Machine) -> None:
    """Realm 0 is registered in queue 1 (vCPUs 0 and 1 queued) and realm 1 in queue 0 (vCPU 32
    queued); CPU 0 serves queues 0 and 1, CPU 1 serves queue 1 only. Each takes, runs and
    requeues twice, in every interleaving with at most PREEMPTIONS preemptions. CPU 1 never
    takes realm 1's vCPU, none is taken twice at once, and at the end each vCPU is QUEUED, in its
    realm's queue once. Fails if a handle serving several queues requeues into the one it took
    from or its first one instead of the realm's."""
    handles = a, b = [RunQueue(machine, serve=(0, 1)), RunQueue(machine, serve=(1,))]
    raw = machine.control.view

    def make() -> Actors:
        _reset(machine, handles, {0: (1, {0: V_QUEUED, 1: V_QUEUED}), 1: (0, {32: V_QUEUED})})
        cpus = Cpus({0: 1, 1: 1, 32: 0})
        return {"cpu0": _loop(a, 0, cpus, 2), "cpu1": _loop(b, 1, cpus, 2)}

    def check() -> None:
        assert sorted(_ring(raw, 1)) == [0, 1]
        assert _ring(raw, 0) == [32]
        assert [_state(raw, v) for v in (0, 1, 32)] == ["QUEUED"] * 3
    assert _run(handles, make, check) > 100
