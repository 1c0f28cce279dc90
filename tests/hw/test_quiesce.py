"""Quiescent points (rmm_mp.hw.quiesce): participants park between calls while a requester
holds a pause, and a requester that dies cannot keep them parked.

Participants run as threads here: the protocol is words in the shared control block, so a
thread exercises the same atomics as a CPU process (the multi-process path is covered by the
`rmm-mp check` tests on a running workload).

No assertion rests on a thread being scheduled within a short window (the suite runs with
-n auto on loaded hosts): a participant going on is awaited (up to WAIT_S), and a lease that
must run out is run out by moving the module's clock forward (``Clock``) rather than by
sleeping past a lease short enough to be missed. What is still measured over a window is the
absence of steps, which a slow host cannot fake."""

from __future__ import annotations

import threading
import time
import types

import pytest

from rmm_mp import Machine
from rmm_mp.hw.control import OFF_QUIESCE_SLOTS, QUIESCE_SLOTS
from rmm_mp.hw import quiesce
from rmm_mp.hw.quiesce import Participant, Pause, QuiesceError

WAIT_S = 30.0
"""Bound on waits for something that must happen (a participant parks or goes on): generous,
as a loaded host may stall a thread for long; reached only when the behaviour is broken."""
LONG_LEASE_NS = int(4 * WAIT_S * 1e9)
"""A lease no wait of these tests outlasts: a participant that goes on within WAIT_S under
such a pause was let go by the pause ending (or by the clock moved on), not by the lease
running out on its own."""


class Worker(threading.Thread):
    """A participant that counts its steps and calls point() between them."""

    def __init__(self, machine: Machine, points: bool = True) -> None:
        super().__init__(daemon=True)
        self.machine = machine
        self.points = points
        self.steps = 0
        self.entered = threading.Event()
        self.leave = threading.Event()
        self.parked_s = 0.0

    def run(self) -> None:
        with Participant(self.machine.control) as part:
            self.entered.set()
            while not self.leave.is_set():
                if self.points:
                    part.point()
                self.steps += 1
                time.sleep(0.0002)
            self.parked_s = part.parked_s


@pytest.fixture
def worker(machine: Machine):  # type: ignore[no-untyped-def]
    w = Worker(machine)
    w.start()
    assert w.entered.wait(WAIT_S)
    yield w
    w.leave.set()
    w.join(10)


def _steps_during(w: Worker, seconds: float) -> int:
    before = w.steps
    time.sleep(seconds)
    return w.steps - before


def _steps_again(w: Worker, timeout_s: float = WAIT_S) -> bool:
    """Whether the worker makes a step within timeout_s: it is not (or no longer) held parked.
    Waits for the step rather than counting steps over a short window, which a starved thread
    can miss."""
    before = w.steps
    end = time.monotonic() + timeout_s
    while w.steps == before:
        if time.monotonic() >= end:
            return False
        time.sleep(0.001)
    return True


class Clock:
    """The quiesce module's clock, moved forward at will: a lease runs out at once, as it would
    for a requester stopped or starved that long, without a lease short enough for a loaded
    host to miss the steps before it (the participant parking, the requester's look)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset_ns = 0
        fake = types.SimpleNamespace(monotonic_ns=lambda: time.monotonic_ns() + self.offset_ns,
                                     monotonic=lambda: time.monotonic() + self.offset_ns / 1e9,
                                     sleep=time.sleep)
        monkeypatch.setattr(quiesce, "time", fake)

    def advance(self, ns: int) -> None:
        self.offset_ns += ns


def test_no_pause_no_parking(machine: Machine, worker: Worker) -> None:
    """With no pause requested, a participant keeps stepping, and the control block counts one
    participant."""
    assert _steps_again(worker)
    assert quiesce.census(machine.control) == quiesce.Census(1, 0, ())   # one participant, not parked


def test_a_pause_parks_every_participant_until_it_ends(machine: Machine, worker: Worker) -> None:
    """A pause: its wait sees the one participant parked and it makes no step until the pause ends, then
    steps again; the parked count is back to 0."""
    with Pause(machine.control, lease_ns=LONG_LEASE_NS) as pause:
        assert pause.wait(WAIT_S)
        assert (pause.participants, pause.parked) == (1, 1)
        assert _steps_during(worker, 0.1) == 0
    assert _steps_again(worker)
    assert quiesce.census(machine.control).parked == 0


def test_a_participant_without_points_is_not_quiescent(machine: Machine) -> None:
    """A participant that never calls point() is not parked by a pause: the requester's wait times out
    with none parked, and the participant keeps stepping."""
    w = Worker(machine, points=False)
    w.start()
    assert w.entered.wait(WAIT_S)
    try:
        with Pause(machine.control) as pause:
            assert not pause.wait(0.2)
            assert (pause.participants, pause.parked) == (1, 0)
            assert _steps_again(w)
    finally:
        w.leave.set()
        w.join(10)


def test_the_stop_flag_releases_parked_participants(machine: Machine, worker: Worker) -> None:
    """The run's stop flag set during a pause: parked participants step again, and the requester's wait
    returns False instead of waiting for them."""
    with Pause(machine.control) as pause:
        assert pause.wait(WAIT_S)
        machine.control.request_stop()
        try:
            assert _steps_again(worker)
            assert not pause.wait(0.1)      # a requester stops waiting once the run stops
        finally:
            machine.control.clear_stop()


def test_the_lease_is_renewed_while_the_requester_lives(machine: Machine, worker: Worker) -> None:
    """A pause with a 400 ms lease held for three leases' time: the requester renews it, so the
    pause still holds at the end (held()) and the participant made no step throughout. A try
    whose renewer was starved past the lease (held() is False: the product saw the lapse) says
    nothing either way and is made again, up to 5 tries; a renewer that does not renew lapses
    on every try and fails."""
    for _ in range(5):
        with Pause(machine.control, lease_ns=400_000_000) as pause:
            assert pause.wait(WAIT_S)
            steps = _steps_during(worker, 1.2)      # three leases long
            held = pause.held()
        if held:
            assert steps == 0
            return
    pytest.fail("the pause lapsed on each of 5 tries: its lease was not renewed")


def test_a_dead_requesters_pause_expires(machine: Machine, worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A requester killed before it released its slot leaves a deadline nobody renews: the
    participants stay parked while it lies ahead, go on once it passes, and the expired slot
    is taken again."""
    clock = Clock(monkeypatch)
    view = machine.control.view
    deadline = quiesce.time.monotonic_ns() + LONG_LEASE_NS
    for i in range(QUIESCE_SLOTS):
        view.store_u64(OFF_QUIESCE_SLOTS + 8 * i, deadline)
    try:
        end = time.monotonic() + WAIT_S
        while quiesce.census(machine.control).parked == 0 and time.monotonic() < end:
            time.sleep(0.001)
        assert quiesce.census(machine.control).parked == 1
        assert _steps_during(worker, 0.2) == 0
        clock.advance(LONG_LEASE_NS)        # the deadline passes
        assert _steps_again(worker)
        with Pause(machine.control) as pause:
            assert pause.wait(WAIT_S)
    finally:
        # The dead requester's deadlines lie ahead again once the real clock is back.
        for i in range(QUIESCE_SLOTS):
            view.store_u64(OFF_QUIESCE_SLOTS + 8 * i, 0)


def test_one_requester_ending_does_not_end_anothers_pause(machine: Machine, worker: Worker) -> None:
    """Two nested pauses: the inner one ending leaves the participant parked until the outer one ends;
    the participant's parked_s counts the time it was parked."""
    with Pause(machine.control, lease_ns=LONG_LEASE_NS) as first:
        assert first.wait(WAIT_S)
        with Pause(machine.control, lease_ns=LONG_LEASE_NS) as second:
            assert second.wait(WAIT_S)
        assert _steps_during(worker, 0.1) == 0
    assert _steps_again(worker)
    worker.leave.set()
    worker.join(10)
    assert worker.parked_s >= 0.1       # Participant.parked_s counts the time parked


def test_every_slot_held_is_an_error(machine: Machine) -> None:
    """With every pause slot held, one more pause is a QuiesceError saying so; once all are released,
    every slot is free again."""
    pauses = [Pause(machine.control) for _ in range(QUIESCE_SLOTS)]
    for p in pauses:
        p.__enter__()
    try:
        with pytest.raises(QuiesceError, match=f"all {QUIESCE_SLOTS} pause slots"):
            Pause(machine.control).__enter__()
    finally:
        for p in pauses:
            p.__exit__(None, None, None)
    assert bytes(machine.control.buf[OFF_QUIESCE_SLOTS:OFF_QUIESCE_SLOTS + 8 * QUIESCE_SLOTS]) == bytes(64)


def _stalled(machine: Machine, lease_ns: int) -> Pause:
    """A requester whose renewer never runs: as if its process was stopped (Ctrl-Z) or starved."""
    pause = Pause(machine.control, lease_ns=lease_ns)
    pause._renew = lambda: None         # type: ignore[method-assign]
    return pause.__enter__()


def test_a_stalled_requester_does_not_end_the_pause_of_the_one_that_took_its_slot(
        machine: Machine, worker: Worker) -> None:
    """A requester held up past its lease: another requester claims the expired slot (the
    first one). When the first goes on and ends, the second's pause must hold. Before, the
    first's renewer and __exit__ wrote the slot blindly: the second's pause ended mid-check,
    the CPUs ran while it read the machine (and a stress run's own check took what it saw
    for violations)."""
    first = _stalled(machine, 50_000_000)
    time.sleep(0.1)                     # its lease has run out
    assert _steps_again(worker)
    with Pause(machine.control) as second:
        assert second._slot == first._slot
        assert second.wait(WAIT_S)
        first.__exit__(None, None, None)
        assert _steps_during(worker, 0.1) == 0
        assert second.wait(0.0) and second.held()


def test_a_lapsed_pause_is_not_held(machine: Machine, worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """held() says whether the pause has stood since it was taken; once the lease ran out the
    participants may have gone on, even if the renewer comes back and they park again. The
    lease runs out by the clock moving on (Clock), not by a 50 ms lease that the participant
    had to park within on a loaded host."""
    with Pause(machine.control) as pause:
        assert pause.wait(WAIT_S) and pause.held()
    clock = Clock(monkeypatch)
    stalled = _stalled(machine, LONG_LEASE_NS)
    try:
        assert stalled.wait(WAIT_S) and stalled.held()
        clock.advance(LONG_LEASE_NS)    # stopped for as long as its lease: it runs out
        assert not stalled.held()
        assert _steps_again(worker)     # the participant went on
        assert stalled._renew_once()    # it comes back: its slot is still free, it renews it
        assert stalled.wait(WAIT_S) and stalled.lapsed and not stalled.held()
    finally:
        stalled.__exit__(None, None, None)
    assert bytes(machine.control.buf[OFF_QUIESCE_SLOTS:OFF_QUIESCE_SLOTS + 8 * QUIESCE_SLOTS]) == bytes(64)


def test_a_participant_leaving_its_point_is_not_counted_parked_by_a_new_pause(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A participant parked by one pause sees it end and decides to leave its point; before it
    drops its parked count, a second requester (another `rmm-mp check`, or a stress run's own
    check) claims a slot and finds every participant parked. The participant must not go on
    to its next call while that second pause holds: the second check would read a machine in
    mid-call. Before, point() decided to leave and only then dropped the count, so the second
    requester's wait was granted and the participant left anyway. Reproduced deterministically
    by claiming the second pause inside the participant's own look at the slots."""
    control = machine.control
    real = quiesce._requested
    armed = threading.Event()
    second: list[Pause] = []
    granted: list[bool] = []
    saw_second = threading.Event()
    released = threading.Event()
    left_during_pause: list[bool] = []

    def requested(view):  # type: ignore[no-untyped-def]
        answer = real(view)
        if armed.is_set() and not answer and not second:
            # The first pause has just ended: the participant is about to leave its point.
            pause = Pause(control).__enter__()
            second.append(pause)
            granted.append(pause.wait(0.0))
        elif second and answer:
            saw_second.set()
        return answer
    monkeypatch.setattr(quiesce, "_requested", requested)

    def participant() -> None:
        with Participant(control) as part:
            part.point()
            left_during_pause.append(granted == [True] and not released.is_set())

    first = Pause(control).__enter__()
    thread = threading.Thread(target=participant, daemon=True)
    thread.start()
    try:
        assert first.wait(WAIT_S)
        armed.set()
    finally:
        first.__exit__(None, None, None)
    # The participant either left its point (the bug) or saw the second pause and parked again.
    while thread.is_alive() and not saw_second.wait(0.01):
        pass
    released.set()
    if second:
        second[0].__exit__(None, None, None)
    thread.join(10)
    assert granted == [True]
    assert left_during_pause == [False]


def test_a_participant_that_died_parked_is_not_awaited_and_its_entry_not_reused(machine: Machine) -> None:
    """A participant entry naming a process that has ended (a reaped child), left parked as if
    it was killed at a point: a pause does not wait for it, and census names it dead. A new
    participant that never reaches a point takes a free entry, not the dead one (which keeps
    naming it dead), so a pause waits for it and is not granted."""
    import subprocess
    import sys

    from rmm_mp.hw import process
    from rmm_mp.hw.control import OFF_PARTICIPANTS, OFF_QUIESCE_USED
    from rmm_mp.hw.cpuarea import binding_word

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process.start_ms(child.pid)
    child.wait(10)
    word = binding_word(child.pid, start or 1)
    view = machine.control.view
    view.store_u64(OFF_PARTICIPANTS, word)
    view.store_u32(OFF_PARTICIPANTS + 8, 1)
    view.store_u32(OFF_QUIESCE_USED, 1)
    with Pause(machine.control) as pause:
        assert pause.wait(1.0)
        assert pause.census() == quiesce.Census(0, 0, (word,))
    with Participant(machine.control):
        assert view.load_u64(OFF_PARTICIPANTS) == word          # the dead entry is kept
        with Pause(machine.control) as pause:
            assert not pause.wait(0.2)
            assert pause.census() == quiesce.Census(1, 0, (word,))


def _ended_word() -> int:
    """The process word of a child that has ended and been reaped."""
    import subprocess
    import sys

    from rmm_mp.hw import process
    from rmm_mp.hw.cpuarea import binding_word

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process.start_ms(child.pid)
    child.wait(10)
    return binding_word(child.pid, start or 1)


def test_a_full_table_of_dead_participants_takes_a_new_one(machine: Machine) -> None:
    """Every participant entry names a process that has ended: a reaped child, or this process's
    pid with another start time (a dead process whose pid was reused), the first one left parked
    as if killed at a point. A new participant joins (it used to get QuiesceError) by taking over
    a dead entry, whose parked word it clears: a pause waits for it (it never reaches a point),
    census counts it live and unparked, and names every other entry dead, not the taken one."""
    import os

    from rmm_mp.hw import process
    from rmm_mp.hw.control import OFF_PARTICIPANTS, OFF_QUIESCE_USED, PARTICIPANT_SIZE, PARTICIPANTS_MAX
    from rmm_mp.hw.cpuarea import binding_word

    ended = _ended_word()
    reused_pid = binding_word(os.getpid(), process.own_start_ms() + 1000)
    words = [ended if i % 2 else reused_pid for i in range(PARTICIPANTS_MAX)]
    view = machine.control.view
    for i, word in enumerate(words):
        view.store_u64(OFF_PARTICIPANTS + PARTICIPANT_SIZE * i, word)
    view.store_u32(OFF_PARTICIPANTS + 8, 1)
    view.store_u32(OFF_QUIESCE_USED, PARTICIPANTS_MAX)
    with Participant(machine.control) as part:
        assert part._entry == OFF_PARTICIPANTS
        assert view.load_u64(OFF_PARTICIPANTS) == binding_word(os.getpid(), process.own_start_ms())
        assert view.load_u32(OFF_PARTICIPANTS + 8) == 0
        with Pause(machine.control) as pause:
            assert not pause.wait(0.2)
            assert pause.census() == quiesce.Census(1, 0, tuple(words[1:]))
    assert view.load_u64(OFF_PARTICIPANTS) == 0
    assert quiesce.census(machine.control) == quiesce.Census(0, 0, tuple(words[1:]))


def test_a_dead_entry_is_taken_by_one_joiner_only(machine: Machine) -> None:
    """A full table whose only dead entry is the last one, the others naming this (live)
    process: the first joiner takes the dead entry, the second finds none left and gets a
    QuiesceError naming the table's size, and no live participant's entry was taken."""
    import os

    from rmm_mp.hw import process
    from rmm_mp.hw.control import OFF_PARTICIPANTS, OFF_QUIESCE_USED, PARTICIPANT_SIZE, PARTICIPANTS_MAX
    from rmm_mp.hw.cpuarea import binding_word

    live = binding_word(os.getpid(), process.own_start_ms())
    view = machine.control.view
    for i in range(PARTICIPANTS_MAX - 1):
        view.store_u64(OFF_PARTICIPANTS + PARTICIPANT_SIZE * i, live)
    last = OFF_PARTICIPANTS + PARTICIPANT_SIZE * (PARTICIPANTS_MAX - 1)
    view.store_u64(last, _ended_word())
    view.store_u32(OFF_QUIESCE_USED, PARTICIPANTS_MAX)
    with Participant(machine.control) as first:
        assert first._entry == last
        with pytest.raises(QuiesceError, match=f"all {PARTICIPANTS_MAX} participant entries .* live participants"):
            Participant(machine.control).__enter__()
        assert quiesce.census(machine.control) == quiesce.Census(PARTICIPANTS_MAX, 0, ())


def test_two_joiners_racing_for_one_dead_entry_do_not_share_it(machine: Machine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A full table whose only dead entry is the last one: a second joiner takes that entry in
    the window between the first joiner's finding it dead and its claim (played by joining from
    inside the first joiner's look at the process). The first joiner's claim then fails (the
    entry's process word is no longer the dead one) and, with no other dead entry, it gets the
    QuiesceError: the second joiner's word is left as it is, not overwritten, and its parked
    word (cleared by it, then set as if it parked) is not touched by the loser."""
    import os

    from rmm_mp.hw import process
    from rmm_mp.hw.control import OFF_PARTICIPANTS, OFF_QUIESCE_USED, PARTICIPANT_SIZE, PARTICIPANTS_MAX
    from rmm_mp.hw.cpuarea import binding_word

    live = binding_word(os.getpid(), process.own_start_ms())
    other = binding_word(os.getpid() + 1, process.own_start_ms())     # the racing joiner's word
    view = machine.control.view
    for i in range(PARTICIPANTS_MAX - 1):
        view.store_u64(OFF_PARTICIPANTS + PARTICIPANT_SIZE * i, live)
    last = OFF_PARTICIPANTS + PARTICIPANT_SIZE * (PARTICIPANTS_MAX - 1)
    dead = _ended_word()
    view.store_u64(last, dead)
    view.store_u32(OFF_QUIESCE_USED, PARTICIPANTS_MAX)
    real_dead = quiesce._dead
    raced: list[int] = []
    racing = []

    def dead_then_raced(word: int) -> bool:
        verdict = real_dead(word)
        if word == dead and not racing:
            racing.append(True)
            raced.append(quiesce._register(view, other))      # the other joiner wins the entry
            view.store_u32(raced[0] + 8, 1)                      # and parks at its first point
        return verdict

    monkeypatch.setattr(quiesce, "_dead", dead_then_raced)
    with pytest.raises(QuiesceError, match="live participants"):
        quiesce._register(view, live)
    assert raced == [last]
    assert view.load_u64(last) == other and view.load_u32(last + 8) == 1


def test_a_parked_participant_backs_off_between_looks(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A participant parked under a pause (a slot's deadline written straight into the control
    block, as a requester claims it) sleeps 0.5 ms after its first look, doubling at each
    look up to 10 ms, rather than 0.5 ms every time: on a host with fewer cores than CPU
    processes, 63 parked CPUs waking every 0.5 ms starved the ones the pause waited for and
    the requester's check. The pause ends after the ninth sleep (the fake sleep clears the
    slot), and the participant leaves its point. One thread, no timing: the module's sleep is
    replaced by one that records what it is asked for."""
    view = machine.control.view
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 9:
            view.store_u64(OFF_QUIESCE_SLOTS, 0)   # the requester's pause ends

    fake = types.SimpleNamespace(monotonic_ns=time.monotonic_ns, monotonic=time.monotonic, sleep=sleep)
    monkeypatch.setattr(quiesce, "time", fake)
    view.store_u64(OFF_QUIESCE_SLOTS, time.monotonic_ns() + LONG_LEASE_NS)
    try:
        with Participant(machine.control) as part:
            part.point()
    finally:
        view.store_u64(OFF_QUIESCE_SLOTS, 0)
    assert slept == pytest.approx([0.0005, 0.001, 0.002, 0.004, 0.008, 0.01, 0.01, 0.01, 0.01])
    assert [quiesce.park_sleep(n) for n in (1, 2, 6, 100)] == pytest.approx([0.0005, 0.001, 0.01, 0.01])
