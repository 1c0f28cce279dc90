"""Quiescent points: park every CPU between calls while another process inspects the machine.

The invariants (rmm_mp.check) hold only on a machine where no CPU is inside a call. `rmm-mp
check` on a running machine and the stress tool's periodic checks get one this way: a
*requester* asks for a pause; every *participant* (a CPU process's workload loop, the stress
worker, the host run loop, the parent while it builds or tears down realms) calls ``point()``
between calls, and parks there while a pause is asked for. The requester waits until every
participant is parked, inspects, and lets them go on. A participant leaves its point only
after it has dropped its parked count and then found no pause asked for: a requester reads the
count after claiming its slot, so one that claims as the participant leaves either sees it gone
or is seen by it (and it parks again).

Words in the control block (hw.control owns the offsets):

    OFF_QUIESCE_SLOTS  8 requester slots, u64 each: a CLOCK_MONOTONIC deadline in ns, 0 = free
    OFF_QUIESCE_COUNT  participants u32, parked participants u32

A pause is asked for while any slot's deadline lies ahead. A requester claims a free or
expired slot and a thread of its own renews the deadline every LEASE_NS / 4, so a requester
that is killed stops renewing and the CPUs go on within LEASE_NS; several requesters (a stress
run's own checks and a user's `rmm-mp check`) each hold their own slot. A requester that was
stopped or starved past its lease finds out (Pause.held() is False: the CPUs may have gone on
meanwhile) and never writes into the expired slot once another requester has claimed it.

This module owns the protocol. It must not know what the participants run or what the
requester checks.
"""

from __future__ import annotations

import threading
import time

import atomicshm

from rmm_mp.hw.control import OFF_QUIESCE_COUNT, OFF_QUIESCE_SLOTS, QUIESCE_SLOTS, Control

LEASE_NS = 2_000_000_000
"""How long CPUs stay parked after the requester's last renewal."""
_PARK_SLEEP_S = 0.0005
_SLOTS_BYTES = 8 * QUIESCE_SLOTS
_NO_REQUEST = bytes(_SLOTS_BYTES)
_OFF_PARKED = OFF_QUIESCE_COUNT + 4


class QuiesceError(RuntimeError):
    """Every requester slot is held by a live requester."""


def _requested(view: atomicshm.AtomicView) -> bool:
    now = time.monotonic_ns()
    return any(view.load_u64(OFF_QUIESCE_SLOTS + 8 * i) > now for i in range(QUIESCE_SLOTS))


class Participant:
    """One participant's side: ``with Participant(control) as part: ... part.point() ...``.

    It parks at a point until no pause is asked for or the machine's stop flag is set."""

    __slots__ = ("buf", "view", "control", "parked_s")

    def __init__(self, control: Control) -> None:
        self.buf = control.buf
        self.view = control.view
        self.control = control
        self.parked_s = 0.0
        """Time spent parked, in seconds."""

    def __enter__(self) -> "Participant":
        self.view.fetch_add_u32(OFF_QUIESCE_COUNT, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.view.fetch_sub_u32(OFF_QUIESCE_COUNT, 1)

    def point(self) -> None:
        """A quiescent point: park here while a pause is asked for."""
        # All slots zero is the common case: one slice compare, no atomic load per slot.
        if self.buf[OFF_QUIESCE_SLOTS:OFF_QUIESCE_SLOTS + _SLOTS_BYTES] == _NO_REQUEST:
            return
        view = self.view
        if not _requested(view):
            return
        t0 = time.monotonic()
        try:
            while True:
                view.fetch_add_u32(_OFF_PARKED, 1)
                try:
                    while _requested(view) and not self.control.stop_requested:
                        time.sleep(_PARK_SLEEP_S)
                finally:
                    view.fetch_sub_u32(_OFF_PARKED, 1)
                # Leave only if no pause is asked for once this participant no longer counts as
                # parked: a requester that claimed a slot after the look above and before the
                # decrement counted it parked, and is checking now. (A requester reads the
                # parked count after claiming its slot, so one of the two sees the other.)
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
        return self.view.load_u32(OFF_QUIESCE_COUNT)

    @property
    def parked(self) -> int:
        return self.view.load_u32(_OFF_PARKED)

    def quiescent(self) -> bool:
        """Every participant is parked (a participant that joins now parks at its first point)."""
        return self.parked >= self.participants

    def wait(self, timeout_s: float) -> bool:
        """Wait until every participant is parked; False after ``timeout_s`` or once the
        machine's stop flag is set (parked participants then leave)."""
        deadline = time.monotonic() + timeout_s
        control = self.control
        while not self.quiescent():
            if time.monotonic() >= deadline or control.stop_requested:
                return False
            time.sleep(0.001)
        return True
