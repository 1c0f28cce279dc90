"""Quiescent points: park every CPU between calls while another process inspects the machine.

The invariants (rmm_mp.check) hold only on a machine where no CPU is inside a call. `rmm-mp
check` on a running machine and the stress tool's periodic checks get one this way: a
*requester* asks for a pause; every *participant* (a CPU process's workload loop, the stress
worker, the host run loop, the parent while it builds or tears down realms) calls ``point()``
between calls, and parks there while a pause is asked for (looking whether it is over after
PARK_SLEEP_FIRST_S, then twice as long each time up to PARK_SLEEP_MAX_S: park_sleep). The
requester waits until every participant is parked, inspects, and lets them go on. A
participant leaves its point only after it has cleared its parked word and then found no pause
asked for: a requester reads the parked words after claiming its slot, so one that claims as
the participant leaves either sees it gone or is seen by it (and it parks again).

Words in the control block (hw.control owns the offsets):

    OFF_QUIESCE_SLOTS  8 requester slots, u64 each: a CLOCK_MONOTONIC deadline in ns, 0 = free
    OFF_QUIESCE_USED   participant table entries in use u32 (a high-water mark: the scan bound)
    OFF_PARTICIPANTS   participant table: per entry, the participant's process word u64 (pid
                       and start time, as a CPU binding word; 0 = free) and parked u32

A pause is asked for while any slot's deadline lies ahead. A requester claims a free or
expired slot and a thread of its own renews the deadline every LEASE_NS / 4, so a requester
that is killed stops renewing and the CPUs go on within LEASE_NS; several requesters (a stress
run's own checks and a user's `rmm-mp check`) each hold their own slot. A requester that was
stopped or starved past its lease finds out (Pause.held() is False: the CPUs may have gone on
meanwhile) and never writes into the expired slot once another requester has claimed it.

Each participant has an entry of its own, naming its process, so that one whose process died
(SIGKILL: it never left the table) is recognised as dead and not awaited: with a bare count of
participants a pause waited for it until the requester gave up. A dead participant's entry
stays in the table, named among the dead, while a free entry is left; once the table is full a
joiner takes over an entry whose process has ended (compare-and-swap on its process word, then
it clears the parked word the dead process may have left set), and that dead participant is
no longer named. An entry is claimed below the high-water
mark, which is raised first, so a requester that scans up to the mark sees every entry claimed
before it read the mark; one claimed later belongs to a participant that will see the pause at
its first point.

This module owns the protocol. It must not know what the participants run or what the
requester checks.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import atomicshm

from rmm_mp.hw import process
from rmm_mp.hw.control import (
    OFF_PARTICIPANTS, OFF_QUIESCE_SLOTS, OFF_QUIESCE_USED, PARTICIPANT_SIZE, PARTICIPANTS_MAX, QUIESCE_SLOTS,
    Control,
)
from rmm_mp.hw.cpuarea import binding_ended, binding_word

LEASE_NS = 2_000_000_000
"""How long CPUs stay parked after the requester's last renewal."""
PARK_SLEEP_FIRST_S = 0.0005
"""A parked participant's first sleep between two looks at whether the pause is over."""
PARK_SLEEP_MAX_S = 0.01
"""Its longest sleep (see park_sleep): the most it can be late to see a pause end."""
_SLOTS_BYTES = 8 * QUIESCE_SLOTS
_NO_REQUEST = bytes(_SLOTS_BYTES)
_PARKED = 8
"""Offset of the parked word in a participant entry."""
_DEAD_LOOK_S = 0.02
"""How often a waiting requester looks whether the participants it waits for still live."""


def park_sleep(looks: int) -> float:
    """The seconds a parked participant sleeps after its ``looks``-th look (from 1) found the
    pause still asked for: PARK_SLEEP_FIRST_S, doubling at each look, up to PARK_SLEEP_MAX_S.

    Why not a fixed 0.5 ms: every parked participant wakes at that rate, and on a host with
    fewer cores than participants they took the cores from those the pause still waited for
    (each finishing its operation) and from the requester checking the machine. `rmm-mp stress
    realms --cpus 64` on 2 cores: a CPU spent 62 % of the run parked, a pause waited 0.9 to
    1.3 s for the last CPU and its 0.14 s invariant check took up to 5 s; see docs/stress.md,
    "Reading a report". A participant parked from a pause's start sees it end less than its
    length plus 0.5 ms late, and never more than 10 ms late. A pause lasts at least its check:
    tenths of a second for a 64-CPU stress run, where that is little; 20 to 30 ms for
    `rmm-mp check` of a 4-CPU `rmm-mp run` machine, whose end a participant can then see up to
    10 ms late (it looks 15.5, 25.5 and 35.5 ms after parking), not within a millisecond."""
    return min(PARK_SLEEP_FIRST_S * (1 << min(max(looks - 1, 0), 16)), PARK_SLEEP_MAX_S)


class QuiesceError(RuntimeError):
    """Every requester slot is held by a live requester, or every participant entry by a live
    participant."""


def _dead(word: int) -> bool:
    """Whether the process a participant entry names has certainly ended (a zombie has) or its
    pid now names another process; in doubt (it cannot be looked at) it lives, and is waited for."""
    return binding_ended(word)


def _register(view: atomicshm.AtomicView, word: int) -> int:
    """Claim a participant entry for ``word``: a free one, or else (the table is full) one whose
    process died without leaving; its offset."""
    for i in range(PARTICIPANTS_MAX):
        off = OFF_PARTICIPANTS + PARTICIPANT_SIZE * i
        if view.load_u64(off) != 0:
            continue
        # The mark first: a requester that reads it afterwards scans this entry.
        while (used := view.load_u32(OFF_QUIESCE_USED)) <= i:
            view.cas_u32(OFF_QUIESCE_USED, used, i + 1)
        if view.cas_u64(off, 0, word) == 0:
            return off
    # Every entry is taken, some perhaps by processes killed without leaving: without this a
    # machine that outlives 1,024 such deaths refused every new participant. Only now, not
    # before: a dead participant's entry is what names it dead to `rmm-mp check`.
    for i in range(view.load_u32(OFF_QUIESCE_USED)):
        off = OFF_PARTICIPANTS + PARTICIPANT_SIZE * i
        old = view.load_u64(off)
        if old == 0:
            # Left since the first scan (a leaving participant clears its parked word first).
            if view.cas_u64(off, 0, word) == 0:
                return off
            continue
        if not _dead(old):
            continue
        # Compare-and-swap on the dead word: of two joiners that found the same dead entry one
        # takes it. Its parked word may be left set (killed at a point) and only the taker
        # clears it: a joiner that lost the swap must not touch the entry, whose new owner may
        # be parked by then. Until it is cleared a requester counts the new owner as parked,
        # which is the truth for what matters: it has made no call yet, and its first point
        # (after the exchange's barrier) sees a pause asked for, as does a participant whose
        # fresh entry was claimed after the requester read the mark.
        if view.cas_u64(off, old, word) == old:
            view.exchange_u32(off + _PARKED, 0)
            return off
    raise QuiesceError(f"all {PARTICIPANTS_MAX} participant entries of the machine are taken by live "
                       "participants")


@dataclass(frozen=True)
class Census:
    """The participant table at one look."""

    participants: int
    """Live participants."""
    parked: int
    """Live participants parked at a point."""
    dead: tuple[int, ...]
    """The process words (pid in bits [31:0], as a CPU binding word) of participants whose
    process died without leaving, parked or not: none of them is awaited."""
    live: tuple[tuple[int, bool], ...] = field(default=(), compare=False)
    """(process word, parked) of each live participant: a report can tell the machine's
    creator (a run's parent building or tearing down realms) from its CPU processes. Left out
    of comparisons: the counts above are the census, this says whose they are."""


def census(control: Control) -> Census:
    """Count the participants, looking up whether each one's process lives (tens of µs each:
    for reports, not for a polling loop)."""
    view = control.view
    dead: list[int] = []
    live: list[tuple[int, bool]] = []
    for i in range(view.load_u32(OFF_QUIESCE_USED)):
        off = OFF_PARTICIPANTS + PARTICIPANT_SIZE * i
        word = view.load_u64(off)
        if not word:
            continue
        if _dead(word):
            dead.append(word)
            continue
        live.append((word, view.load_u32(off + _PARKED) != 0))
    return Census(len(live), sum(parked for _, parked in live), tuple(dead), tuple(live))


def _requested(view: atomicshm.AtomicView) -> bool:
    now = time.monotonic_ns()
    return any(view.load_u64(OFF_QUIESCE_SLOTS + 8 * i) > now for i in range(QUIESCE_SLOTS))


class Participant:
    """One participant's side: ``with Participant(control) as part: ... part.point() ...``.

    It parks at a point until no pause is asked for or the machine's stop flag is set."""

    __slots__ = ("buf", "view", "control", "parked_s", "_entry")

    def __init__(self, control: Control) -> None:
        self.buf = control.buf
        self.view = control.view
        self.control = control
        self.parked_s = 0.0
        """Time spent parked, in seconds."""
        self._entry = -1

    def __enter__(self) -> "Participant":
        self._entry = _register(self.view, binding_word(os.getpid(), process.own_start_ms()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.view.store_u64(self._entry, 0)
        self._entry = -1

    def point(self) -> None:
        """A quiescent point: park here while a pause is asked for."""
        # All slots zero is the common case: one slice compare, no atomic load per slot.
        if self.buf[OFF_QUIESCE_SLOTS:OFF_QUIESCE_SLOTS + _SLOTS_BYTES] == _NO_REQUEST:
            return
        view = self.view
        if not _requested(view):
            return
        t0 = time.monotonic()
        parked = self._entry + _PARKED
        try:
            while True:
                # Exchanges, not plain stores: a full barrier between this word and the look
                # at the slots that follows (the requester's side: claim its slot, then read).
                view.exchange_u32(parked, 1)
                looks = 0
                try:
                    while _requested(view) and not self.control.stop_requested:
                        looks += 1
                        time.sleep(park_sleep(looks))
                finally:
                    view.exchange_u32(parked, 0)
                # Leave only if no pause is asked for once this participant no longer counts as
                # parked: a requester that claimed a slot after the look above and before the
                # word was cleared counted it parked, and is checking now. (A requester reads
                # the parked words after claiming its slot, so one of the two sees the other.)
                if self.control.stop_requested or not _requested(view):
                    return
        finally:
            self.parked_s += time.monotonic() - t0


class Pause:
    """A requester: ``with Pause(control) as p: if p.wait(timeout): ...inspect...``."""

    def __init__(self, control: Control, lease_ns: int = LEASE_NS) -> None:
        self.control = control
        self.view = control.view
        self.lease_ns = lease_ns
        self._slot = -1
        self._deadline = 0
        """The deadline this requester last stored in its slot."""
        self.lapsed = False
        """The lease ran out at least once (this process was stopped or starved for longer than
        the lease), or another requester took the expired slot: the participants may have gone
        on in between, whatever they do now."""
        self._done = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> "Pause":
        view = self.view
        for i in range(QUIESCE_SLOTS):
            off = OFF_QUIESCE_SLOTS + 8 * i
            old = view.load_u64(off)
            deadline = time.monotonic_ns() + self.lease_ns
            if old <= time.monotonic_ns() and view.cas_u64(off, old, deadline) == old:
                self._slot, self._deadline = off, deadline
                break
        else:
            raise QuiesceError(f"all {QUIESCE_SLOTS} pause slots are held by live requesters")
        self._renewer = threading.Thread(target=self._renew, name="quiesce-lease", daemon=True)
        self._renewer.start()
        return self

    def _renew(self) -> None:
        while not self._done.wait(self.lease_ns / 4e9):
            if not self._renew_once():
                return

    def _renew_once(self) -> bool:
        """Push the deadline on; False once the slot is no longer this requester's.

        Compare-and-swap on the deadline last stored: after a lapse another requester may have
        claimed the expired slot, and a plain store would then extend (and __exit__ end) its
        pause."""
        now = time.monotonic_ns()
        if now >= self._deadline:
            self.lapsed = True
        new = now + self.lease_ns
        if self.view.cas_u64(self._slot, self._deadline, new) != self._deadline:
            self.lapsed = True
            return False
        self._deadline = new
        return True

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._renewer is not None:
            self._renewer.join()
        self.view.cas_u64(self._slot, self._deadline, 0)

    def held(self) -> bool:
        """The pause has held without a break since it was taken: the lease never ran out, so
        no participant can have left its point (unless the stop flag was set)."""
        return not self.lapsed and time.monotonic_ns() < self._deadline

    @property
    def participants(self) -> int:
        """Live participants (census)."""
        return census(self.control).participants

    @property
    def parked(self) -> int:
        """Live participants parked (census)."""
        return census(self.control).parked

    def census(self) -> Census:
        """The participant table now: live, parked and dead participants (module census)."""
        return census(self.control)

    def _waiting_for(self) -> list[int]:
        """The participant entries (offsets) not parked now, dead ones included."""
        view = self.view
        out = []
        for i in range(view.load_u32(OFF_QUIESCE_USED)):
            off = OFF_PARTICIPANTS + PARTICIPANT_SIZE * i
            if view.load_u64(off) and not view.load_u32(off + _PARKED):
                out.append(off)
        return out

    def _all_dead(self, entries: list[int]) -> bool:
        view = self.view
        for off in entries:
            word = view.load_u64(off)
            # Parked or gone since the first look, or dead: not awaited.
            if word and not view.load_u32(off + _PARKED) and not _dead(word):
                return False
        return True

    def quiescent(self) -> bool:
        """Every participant is parked or dead (a participant that joins now parks at its first
        point)."""
        waiting = self._waiting_for()
        return not waiting or self._all_dead(waiting)

    def wait(self, timeout_s: float) -> bool:
        """Wait until every participant is parked or dead; False after ``timeout_s`` or once the
        machine's stop flag is set (parked participants then leave). Whether the processes of
        those not parked live is looked up every _DEAD_LOOK_S, not every poll."""
        deadline = time.monotonic() + timeout_s
        control = self.control
        next_look = time.monotonic()
        while waiting := self._waiting_for():
            now = time.monotonic()
            if now >= next_look:
                if self._all_dead(waiting):
                    break
                next_look = now + _DEAD_LOOK_S
            if now >= deadline or control.stop_requested:
                return False
            time.sleep(0.001)
        return True
