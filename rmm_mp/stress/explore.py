"""The interleaving explorer (`rmm-mp explore`): two RMI calls, each interleaving of one with the
other at a lock event, compared with the two serial orders (and, for a REC_ENTER, with the other
call run whole while the REC runs).

The stress tool's checkers see locking mistakes (order, ownership, invariants, leaks); they
cannot see a command that reads or does work before it takes its locks, so that two concurrent
calls give results no serial order gives (a source page copied before a concurrent DELEGATE, a
VMID reserved before the checks that fail). This explorer looks for exactly that, pair by pair
(stress.explore_pairs), deterministically:

  * serial: on a fresh machine built by the pair's setup, A on CPU 0 then B on CPU 1; and on
    another, B then A;
  * interleaved, for k = 0, 1, ...: A runs until its k-th lock event (just after it acquired or
    released a granule lock); then B runs until it finishes or fails to get
    a lock; then A runs while B waits, B trying its lock again at each lock event of A, and
    running on as soon as it gets it; when A fails to get a lock, B tries again. Only one of the
    two runs at a time, so the interleaving is a function of k alone (no timing in the verdict).
    k runs until A finishes before its k-th event;
  * each outcome, (A's X0..X4, B's X0..X4, the end state: lock words, granule states and
    refcounts, GPT, the RMM's VMID bitmap, the DRAM the setup handed out, and the pair's views
    of it, such as a REC exit), must be one of the reference outcomes: the two serial ones, and
    those of a REC_ENTER's overlaps (below). Anything else is reported, as are a deadlock (each
    waits for a lock the other holds), a call waiting for a lock nothing running will release
    (a leaked lock), a lock still held once both calls returned (a leak no call waited for), and
    a call that neither finishes nor waits for a lock within the time limit.

A REC_ENTER is not one atomic step: between its entry (the checks, the REC's running reference
taken) and its exit the realm runs, and the spec lets any other command take effect while it
does (a REC_DESTROY of the REC then fails rec_state; a DATA_DESTROY lands between two of the
realm's accesses). Its run points (hw.points REC_RUN, RSI_ENTRY, RSI_EXIT) are where the REC
runs and the CPU holds no lock: before each turn of the run loop, before and after each RSI or
PSCI call. For every run point of one call (counted in the serial run where it goes first), the
other is run whole at that point, on a fresh machine: those outcomes are references too
(PairReport.during), as an interleaving that overlaps the run legitimately gives one of them. So
what is checked of a REC_ENTER is that its entry, its exit and each RSI call are atomic with
respect to the other call: B inserted at a lock event inside any of them gives what B before or
after it gives. Those references are the RMM's own outcomes, so a pair may add a rule they must
keep (Pair.overlap_rule; a reference that breaks it is reported and is no reference). Calls
other than REC_ENTER have no run points, and their pairs only the serial references.

Only A's lock events are insertion points, and B is inserted once: a lock-free read of A between
two events is covered (B inserted at the event before it runs before the read; at the event after
it, after), but two insertions of B, or B interleaved inside its own lock-free windows, are not.

Both calls run in threads of this process on two CPU handles of an in-process Machine; the turn
passes through the granule table's hooks (GranuleTable.observer, GranuleTable.waiter) of those
two handles, and the run points through hw.points.hook, installed for the run (a thread-local
says which call's thread passes a point). A realm's guest code between two run points has no
insertion point: the other call takes effect before or after that stretch, never between two
of its stage-2 accesses (the stress tool's free-running runs cover that timing).

This module owns the explorer: the turn-taking, the runs and the verdict. It must not touch the
RMM's handlers, nor any machine or table it did not create (catalogued bugs are
switched on by the caller, stress.bugs, for the whole exploration).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.hw import points
from rmm_mp.hw.control import OFF_VMID_BITMAP, VMID_BITMAP_BYTES
from rmm_mp.hw.granule import GranuleTable, describe_owner
from rmm_mp.machine import Machine

if TYPE_CHECKING:
    from rmm_mp.cpu_handle import Cpu

Call = tuple[int, ...]
"""An SMC: the FID, then X1.."""

DEFAULT_TIMEOUT_S = 20.0
"""How long one call may run before it finishes or waits for a lock: far above any RMI call here
(milliseconds), so that only a call that really neither finishes nor waits reaches it."""


Watch = tuple[str, Callable[[Machine], str]]
"""A named view of the end state that a pair wants compared and shown (a REC exit, a REM)."""


@dataclass(frozen=True)
class Prepared:
    """What a pair's setup returns: the two calls and how much DRAM the setup handed out."""

    a: Call
    b: Call
    dram_end: int
    """Every granule below this PA may be touched; its bytes are part of the end state."""
    watch: tuple[Watch, ...] = ()
    """Views read after each run: part of the outcome, so compared, and printed by name. (The
    bytes they read are in the end state's digest already: a view says what differs.)"""


@dataclass(frozen=True)
class Pair:
    """A named pair: ``setup`` builds a fresh machine's objects through CPU 0 (the same ones each
    time: it must be deterministic) and returns the calls A (CPU 0) and B (CPU 1)."""

    name: str
    summary: str
    setup: Callable[[Machine], Prepared]
    time_slice: int | None = None
    """Guest instructions per REC entry (Machine.create; None: the platform's). A pair whose
    guest loops until its slice ends keeps it small, so that every run stays short."""
    overlap_rule: "Callable[[tuple[int, ...] | str], str] | None" = None
    """What the spec requires of a call run whole at a run point of the other (PairReport.during),
    given its result: "" if it holds, else why not. Those references are the RMM's own outcomes,
    so without a rule a mistake that shows whenever the calls overlap (REC_DESTROY of a running
    REC succeeding) would be a reference, not a finding."""


@dataclass(frozen=True)
class Outcome:
    """One run: what each call returned, the end state and any trouble (deadlock, leak, time)."""

    a: "tuple[int, ...] | str"
    """X0..X4, or what ended the call instead (an exception, an abandoned call)."""
    b: "tuple[int, ...] | str"
    state: tuple[tuple[str, str], ...]
    """(part, digest) for each part of the end state."""
    trouble: str = ""
    seen: tuple[tuple[str, str], ...] = ()
    """(name, text) of each of the pair's views (Prepared.watch); empty when the run had trouble."""

    def same(self, other: "Outcome") -> bool:
        return ((self.a, self.b, self.state, self.seen, self.trouble)
                == (other.a, other.b, other.state, other.seen, other.trouble))

    def differing_parts(self, other: "Outcome") -> list[str]:
        parts = [name for (name, mine), (_, theirs) in zip(self.seen, other.seen) if mine != theirs]
        return parts + [name for (name, mine), (_, theirs) in zip(self.state, other.state) if mine != theirs]


@dataclass(frozen=True)
class NonSerial:
    """An interleaving whose outcome neither serial order gives."""

    event: int
    where: str
    """The lock event of A where B was inserted ("after A acquired 0x...", "after A released 0x...")."""
    a: "tuple[int, ...] | str"
    b: "tuple[int, ...] | str"
    why: str
    seen: tuple[tuple[str, str], ...] = ()
    """The pair's views of this run's end state (Outcome.seen)."""


@dataclass(frozen=True)
class PairReport:
    """The exploration of one pair."""

    pair: str
    a: Call
    b: Call
    serial: dict[str, Outcome]
    """"A;B" and "B;A"."""
    tried: int
    """Interleavings run (insertion points of B)."""
    non_serial: tuple[NonSerial, ...]
    seconds: float
    serial_trouble: tuple[str, ...] = field(default=())
    """A reference run that did not complete (a leaked lock, a crash): "A;B: ..."."""
    during: dict[str, Outcome] = field(default_factory=dict)
    """The other references: one call run whole at a run point of the other, a REC_ENTER
    ("B at A's rsi-entry 0xc4000199"): the outcomes the spec allows a command that overlaps an
    entry (module docstring, "a REC_ENTER")."""

    @property
    def references(self) -> dict[str, Outcome]:
        """Every outcome an interleaving may have: the serial ones, then the ones during a run."""
        return {**self.serial, **self.during}

    broken_rules: tuple[str, ...] = ()
    """Runs at a run point whose outcome broke the pair's overlap rule: "B at A's ...: why"
    (left out of the references)."""
    capped: int = 0
    """The cap on lock events (explore's max_events) when A had more than it, whose later lock
    events were not tried; 0 when every one was."""

    @property
    def ok(self) -> bool:
        return not self.non_serial and not self.serial_trouble and not self.broken_rules


class ExploreAbort(BaseException):
    """A call abandoned by the explorer (deadlock, leaked lock, time limit, Ctrl-C): raised inside
    the RMM, so EL3 marks the machine dead, which is then thrown away. A BaseException, so that no
    handler mistakes it for an RMM error."""


# -- taking turns ------------------------------------------------------------------------------

IDLE, RUNNING, BLOCKED, DONE = "idle", "running", "blocked", "done"


class _Turns:
    """Who of the first call (F) and the second (S) runs; one at a time.

    F runs until its ``insert_at``-th lock event (None: until it finishes), then S until it
    finishes or fails a try for a lock; F runs while S waits, and S tries again at each lock
    event of F and whenever F fails a try. Two failed tries in a row, with no lock event between,
    are a deadlock: each waits for a lock the other holds.
    """

    def __init__(self, insert_at: int | None, timeout: float, names: tuple[str, str] = ("A", "B"),
                 at_point: bool = False) -> None:
        self.cond = threading.Condition()
        self.names = {"F": names[0], "S": names[1]}
        self.insert_at = insert_at
        self.at_point = at_point
        """``insert_at`` counts F's run points (run_point), not its lock events."""
        self.points = {"F": 0, "S": 0}
        """Run points each side passed."""
        self.start_second: Callable[[], None] = lambda: None
        """Starts S's thread (set by the run, which makes the thread)."""
        self.timeout = timeout
        self.turn = "F"
        self.status = {"F": RUNNING, "S": IDLE}
        self.events = 0
        self.stalls = 0
        self.inserted = ""
        """The event where S was inserted ("" until it is)."""
        self.waits = {"F": "", "S": ""}
        """What each side's last failed try was for ("0x... held by CPU n"): a deadlock names both."""
        self.trouble = ""

    def event(self, side: str, what: str) -> None:
        """A lock event of ``side`` (its own turn)."""
        self._check()
        self.stalls = 0
        if side == "S":
            return
        index, self.events = self.events, self.events + 1
        if index == self.insert_at and not self.at_point and self.status["S"] == IDLE:
            self.inserted = what
            self._start_second()
        elif self.status["S"] == BLOCKED:
            self._switch("F", "S")

    def run_point(self, side: str, what: str) -> None:
        """A run point of ``side`` (a REC it runs is running, and it holds no lock): counted, and
        where S is started in a run that inserts at run points."""
        self._check()
        index = self.points[side]
        self.points[side] += 1
        if side == "F" and self.at_point and index == self.insert_at and self.status["S"] == IDLE:
            self.inserted = what
            self._start_second()

    def failed_try(self, side: str, table: GranuleTable, idx: int, holder: int) -> None:
        """``side`` could not get granule idx's lock: the other goes, or the run is over."""
        self._check()
        other = "S" if side == "F" else "F"
        self.stalls += 1
        self.waits[side] = f"{table.addr(idx):#x}, held by {describe_owner(holder)}"
        waits = f"{self.names[side]} waits for {self.waits[side]}"
        if self.status[other] in (IDLE, DONE):
            self.abandon(f"{waits}, which nothing running will release (a leaked lock)")
        if self.stalls >= 2:
            # The other's last failed try was the one just before (no lock event since): it
            # still waits for that lock, which this side holds.
            self.abandon(f"deadlock: {waits}, while {self.names[other]} waits for {self.waits[other]}")
        self.status[side] = BLOCKED
        self._switch(side, other)
        self.status[side] = RUNNING

    def finished(self, side: str) -> None:
        """``side``'s call returned (or raised): the other goes on, or S is started after F."""
        with self.cond:
            self.status[side] = DONE
            if side == "F" and self.status["S"] == IDLE and self.insert_at is None and not self.trouble:
                self.inserted = "after A returned"
                self.status["S"] = RUNNING
                self.turn = "S"
                self.start_second()
            else:
                self.turn = "S" if side == "F" else "F"
            self.cond.notify_all()

    def abandon(self, why: str) -> None:
        """End the run: every call raises ExploreAbort at its next turn or lock event."""
        with self.cond:
            self.trouble = self.trouble or why
            self.cond.notify_all()
        raise ExploreAbort(why)

    def _check(self) -> None:
        if self.trouble:
            raise ExploreAbort(self.trouble)

    def _start_second(self) -> None:
        with self.cond:
            self.status["S"] = RUNNING
            self.turn = "S"
            self.start_second()
            self._wait_for("F", "S")

    def _switch(self, me: str, other: str) -> None:
        with self.cond:
            self.turn = other
            self.cond.notify_all()
            self._wait_for(me, other)

    def _wait_for(self, me: str, other: str) -> None:
        deadline = time.monotonic() + self.timeout
        while self.turn != me and not self.trouble:
            left = deadline - time.monotonic()
            if left <= 0:
                self.trouble = (f"{self.names[other]} neither finished nor waited for a lock within "
                                f"{self.timeout:g} s")
                self.cond.notify_all()
                break
            self.cond.wait(left)
        if self.trouble:
            raise ExploreAbort(self.trouble)

    def wait_turn(self, me: str) -> None:
        """Block a thread that has not started its call until it is ``me``'s turn."""
        with self.cond:
            self._wait_for(me, "F" if me == "S" else "S")


class _Hooks:
    """The observer and waiter of one side's granule table: they hand every event to _Turns."""

    def __init__(self, turns: _Turns, side: str) -> None:
        self.turns = turns
        self.side = side

    def acquired(self, table: GranuleTable, idx: int, waited_ns: int) -> None:
        self.turns.event(self.side, f"after {self.turns.names[self.side]} acquired {table.addr(idx):#x}")

    def released(self, table: GranuleTable, idx: int) -> None:
        self.turns.event(self.side, f"after {self.turns.names[self.side]} released {table.addr(idx):#x}")

    def wait(self, table: GranuleTable, idx: int, holder: int) -> None:
        self.turns.failed_try(self.side, table, idx, holder)


# -- run points --------------------------------------------------------------------------------

RUN_POINTS = {points.REC_RUN: "run loop", points.RSI_ENTRY: "before", points.RSI_EXIT: "after"}
"""The hw.points a REC_ENTER passes while its REC runs, holding no lock: before each turn of the
run loop (realm_run), and before and after each RSI or PSCI call of the realm (rsi_dispatch)."""

_SMC_NAMES = {**{int(f): f.name for f in PsciFid}, **{int(f): f.name for f in RsiFid}}

_current = threading.local()
"""The side (and _Turns) of the call this thread runs, for the point hook."""


def point_text(kind: int, argument: int) -> str:
    """``before RSI_HOST_CALL``, ``run loop``: a run point as a report names it."""
    if kind == points.REC_RUN:
        return RUN_POINTS[kind]
    return f"{RUN_POINTS[kind]} {_SMC_NAMES.get(argument, f'SMC {argument:#x}')}"


def _point_hook(previous: "Callable[[int, int], None] | None") -> Callable[[int, int], None]:
    """hw.points.hook for a run: the run points of the two calls go to their _Turns (chained
    after a hook already installed in this process)."""
    def hook(kind: int, argument: int) -> None:
        if previous is not None:
            previous(kind, argument)
        turns: "_Turns | None" = getattr(_current, "turns", None)
        if turns is not None and kind in RUN_POINTS:
            side = _current.side
            turns.run_point(side, f"{turns.names[side]}'s {point_text(kind, argument)} ({turns.points[side]})")
    return hook


# -- one run -----------------------------------------------------------------------------------

@dataclass
class _Side:
    cpu: "Cpu"
    call: Call
    result: "tuple[int, ...] | str" = "not run"


def in_pair_call() -> bool:
    """Whether this thread runs one of a pair's two calls: a pair's setup runs in the caller's
    thread, where nothing races it (explore_cli counts an injected bug's calls here only)."""
    return getattr(_current, "side", None) is not None


def _run_call(turns: _Turns, side: str, me: _Side, wait_first: bool) -> None:
    _current.turns, _current.side = turns, side
    try:
        if wait_first:
            turns.wait_turn(side)
        me.result = tuple(me.cpu.smc(*me.call))
    except ExploreAbort:
        me.result = "abandoned"
    except Exception as exc:       # an RMM crash (RmmInternalError) is an outcome like any other
        me.result = f"{type(exc).__name__}: {exc}"
    finally:
        turns.finished(side)


@dataclass(frozen=True)
class Run:
    """One run: its outcome, where the second call was inserted ("" if it never was), the calls
    made, and how many run points each call ("A", "B") passed."""

    outcome: Outcome
    inserted: str
    calls: tuple[Call, Call]
    points: dict[str, int] = field(default_factory=dict)


def run_once(pair: Pair, insert_at: int | None, b_first: bool = False,
             timeout: float = DEFAULT_TIMEOUT_S, at_point: bool = False) -> Run:
    """One run on a fresh machine, B inserted at A's lock event ``insert_at``; None is a serial
    run (A then B, or with ``b_first`` B then A). With ``at_point``, the second call is inserted
    at the first one's run point ``insert_at`` instead (with ``b_first``: A at B's)."""
    with Machine.create("host", cpus=2, time_slice=pair.time_slice) as machine:
        prepared = pair.setup(machine)
        a, b = _Side(machine.cpu(0), prepared.a), _Side(machine.cpu(1), prepared.b)
        first, second = (b, a) if b_first else (a, b)
        threads: list[threading.Thread] = []
        turns = _Turns(insert_at, timeout, ("B", "A") if b_first else ("A", "B"), at_point)
        second_thread = threading.Thread(target=_run_call, args=(turns, "S", second, True), daemon=True)
        turns.start_second = lambda: _start(second_thread, threads)
        tables = (first.cpu.granules, second.cpu.granules)
        for table, side in zip(tables, ("F", "S")):
            hooks = _Hooks(turns, side)
            table.observer, table.waiter = hooks, hooks
        previous_hook = points.hook
        points.hook = _point_hook(previous_hook)
        try:
            _start(threading.Thread(target=_run_call, args=(turns, "F", first, False), daemon=True), threads)
            _supervise(turns, threads, timeout)
        finally:
            points.hook = previous_hook
            for table in tables:
                table.observer, table.waiter = None, None
        if not turns.trouble and isinstance(a.result, tuple) and isinstance(b.result, tuple):
            turns.trouble = leaked_locks(machine)     # (a call that crashed keeps its locks: its result says so)
        state = () if turns.trouble else end_state(machine, prepared.dram_end)
        seen = () if turns.trouble else tuple((name, _view(read, machine)) for name, read in prepared.watch)
        counts = {turns.names[side]: n for side, n in turns.points.items()}
        return Run(Outcome(a.result, b.result, state, turns.trouble, seen), turns.inserted,
                   (prepared.a, prepared.b), counts)


def _view(read: Callable[[Machine], str], machine: Machine) -> str:
    try:
        return read(machine)
    except Exception as exc:    # a view of memory the run moved out of reach is an outcome too
        return f"{type(exc).__name__}: {exc}"


def _start(thread: threading.Thread, threads: list[threading.Thread]) -> None:
    # Started before it is listed: the first call's thread starts the second while _supervise
    # joins what the list holds, and joining a thread not yet started raises RuntimeError.
    thread.start()
    threads.append(thread)


def _supervise(turns: _Turns, threads: list[threading.Thread], timeout: float) -> None:
    """Wait for both calls; on Ctrl-C (or a run far past the limit) abandon them first."""
    try:
        deadline = time.monotonic() + 4 * timeout
        while any(t.is_alive() for t in list(threads)):
            if time.monotonic() > deadline:
                _abandon_quietly(turns, f"the run took more than {4 * timeout:g} s")
                break
            for t in list(threads):
                t.join(0.05)
    except BaseException:
        _abandon_quietly(turns, "interrupted")
        raise
    finally:
        for t in list(threads):
            t.join(timeout)


def _abandon_quietly(turns: _Turns, why: str) -> None:
    try:
        turns.abandon(why)
    except ExploreAbort:
        pass


def leaked_locks(machine: Machine) -> str:
    """What a run whose calls both returned left locked ("" if nothing): every RMI call
    releases what it took, so a lock still held once both returned is a leak, even where no
    call waited for it (both serial orders leaking alike would otherwise be a reference)."""
    table = machine.granule_table(0)
    held = [i for i, word in enumerate(table.snapshot()[0]) if word]
    if not held:
        return ""
    locks = ", ".join(f"{table.addr(i):#x}, held by {describe_owner(table.holder(i))}" for i in held)
    return f"{locks}: still locked after both calls returned (a leaked lock)"


def end_state(machine: Machine, dram_end: int) -> tuple[tuple[str, str], ...]:
    """Digests of what two runs must agree on: lock words, granule state words, GPT, VMIDs, DRAM."""
    locks, words = machine.granule_table(0).snapshot()
    vmids = bytes(machine.control.buf[OFF_VMID_BITMAP:OFF_VMID_BITMAP + VMID_BITMAP_BYTES])
    used = max(0, min(dram_end, machine.platform.dram.end) - machine.dram_base)
    parts = (("lock words", repr(locks).encode()), ("granule states", repr(words).encode()),
             ("GPT", machine.gpt.snapshot()), ("VMIDs", vmids), ("memory", bytes(machine.memory.buf[:used])))
    return tuple((name, hashlib.sha256(data).hexdigest()[:16]) for name, data in parts)


# -- a pair ------------------------------------------------------------------------------------

MAX_EVENTS = 10_000
"""Lock events of A at which B is inserted, at most (a bound on a pair's time, not a limit any
catalogued pair reaches: their A takes a few dozen)."""


def explore(pair: Pair, timeout: float = DEFAULT_TIMEOUT_S, max_events: int = MAX_EVENTS) -> PairReport:
    """Run ``pair`` serially both ways, each call whole at every run point of the other, and B at
    every lock event of A up to ``max_events`` of them; report what no serial order (nor a call
    at a run point) gives, and (``capped``) whether A had lock events past the cap."""
    if max_events < 1:
        # With 0 nothing is tried and the one run that looks past the cap is at event 0: the
        # report said capped=0, "every lock event tried", of a pair whose A took locks.
        raise ValueError(f"max_events = {max_events!r}: expected 1 or more (the lock events of A at which B is "
                         "inserted, at most)")
    start = time.monotonic()
    first = run_once(pair, None, timeout=timeout)
    second = run_once(pair, None, b_first=True, timeout=timeout)
    serial = {"A;B": first.outcome, "B;A": second.outcome}
    during, broken = _during(pair, (first, second), timeout)
    troubles = tuple(f"{order}: {o.trouble}" for order, o in {**serial, **during}.items() if o.trouble)
    references = {**serial, **{label: o for label, o in during.items() if label not in broken}}
    found: list[NonSerial] = []
    tried = 0
    for k in range(max_events):
        run = run_once(pair, k, timeout=timeout)
        if not run.inserted:
            break           # A finished before its k-th lock event: that run was A;B
        tried += 1
        why = verdict(run.outcome, references)
        if why:
            found.append(NonSerial(k, run.inserted, run.outcome.a, run.outcome.b, why, run.outcome.seen))
    # Every one of max_events tried: one run more says whether A had a lock event past them,
    # which the report must name (the cap was reached silently: "every one serial" of a part).
    capped = max_events if tried == max_events and run_once(pair, max_events, timeout=timeout).inserted else 0
    return PairReport(pair.name, *first.calls, serial, tried, tuple(found), time.monotonic() - start, troubles,
                      during, tuple(f"{label}: {why}" for label, why in broken.items()), capped)


def _during(pair: Pair, serial: tuple[Run, Run], timeout: float) -> tuple[dict[str, Outcome], dict[str, str]]:
    """Each call run whole at each run point of the other (the run points each passed in the
    serial run where it went first); the outcomes by label, and the labels whose outcome broke
    the pair's overlap rule, with why."""
    during: dict[str, Outcome] = {}
    broken: dict[str, str] = {}
    for reference, b_first in zip(serial, (False, True)):
        for j in range(reference.points["B" if b_first else "A"]):
            run = run_once(pair, j, b_first=b_first, timeout=timeout, at_point=True)
            if not run.inserted:
                continue
            label = f"{'A' if b_first else 'B'} at {run.inserted}"
            during[label] = run.outcome
            inserted = run.outcome.a if b_first else run.outcome.b
            why = pair.overlap_rule(inserted) if pair.overlap_rule and not run.outcome.trouble else ""
            if why:
                broken[label] = why
    return during, broken


def verdict(outcome: Outcome, references: dict[str, Outcome]) -> str:
    """Why ``outcome`` is none of the references ("" when it is one): the serial outcomes
    ("A;B", "B;A"), and those of one call run whole at a run point of the other."""
    if any(outcome.same(s) for s in references.values()):
        return ""
    if outcome.trouble:
        return outcome.trouble
    for order, s in references.items():
        if (outcome.a, outcome.b) == (s.a, s.b) and not s.trouble:
            return f"the results of {order}, but the end state differs in: {', '.join(outcome.differing_parts(s))}"
    if len(references) > 2:
        return "results that no serial order gives, nor a call at a run point of the other"
    return "results that no serial order gives"
