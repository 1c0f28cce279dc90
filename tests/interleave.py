"""Explicit interleavings of threads, as a model checker drives them (a test helper, not a test file).

The actors of a run are functions run in threads of this process; each shared access they make
goes through ``point()`` (or a ``Stepped`` AtomicView, whose every operation is one), and a
``Scheduler`` lets exactly one actor run from one point to its next, in the order it chooses. A
waiter's backoff is ``spin()``: it parks the waiter until another actor has written (a spin that
nothing can end is reported as a ``Hang``). ``explore`` runs every schedule up to a bound on
preemptions (switching away from an actor that could have gone on), depth first.

A schedule is replayed from its recorded choices, so a run must depend on nothing but them: the
``make`` callable that ``explore`` is given builds fresh actors and resets every word they read.
A replay that finds the actor it should run not ready says so (``Diverged``) instead of waiting
for a thread that has ended. Used by tests/hw/test_tlb_interleavings.py and
tests/host/test_runqueue_interleavings.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import atomicshm

Actors = dict[str, Callable[[], None]]

TURN_TIMEOUT = 60.0
"""Seconds the scheduler waits for an actor to hand its turn back (it never should take long:
an actor that blocks outside the points is a harness bug, reported rather than hanging)."""


class Hang(AssertionError):
    """Every actor left is spinning: nothing can end the wait."""


class Diverged(AssertionError):
    """A replayed schedule found a different set of ready actors: the run depends on more than
    the scheduler's choices (some per-run state was not reset)."""


class _Stop(BaseException):
    """Raised in an actor's thread at its next point when a run is torn down."""


class Scheduler:
    """Runs ``actors`` one step at a time in the order ``prefix`` gives, then without preemption
    (the running actor goes on while it can, else the first one that can); records the choices."""

    def __init__(self, actors: Actors, prefix: Sequence[str], max_steps: int) -> None:
        self.actors = actors
        self.prefix = prefix
        self.max_steps = max_steps
        self.trace: list[tuple[tuple[str, ...], str]] = []
        self.state = dict.fromkeys(actors, "ready")
        self._turn = {name: threading.Semaphore(0) for name in actors}
        self._back = threading.Semaphore(0)
        self._local = threading.local()
        self._stop = False
        self.error: BaseException | None = None
        self._writes = dict.fromkeys(actors, False)
        """Actor -> whether the step it is granted next starts with a write."""
        self._dirty = dict.fromkeys(actors, False)
        """Actor -> whether another wrote since its last spin (what it loaded may be stale)."""

    def point(self, write: bool = True) -> None:
        """Before a shared access (a write unless ``write`` is False): hand the turn back and
        wait for the next one."""
        name = self._local.name
        self._writes[name] = write
        self._back.release()
        self._turn[name].acquire()
        if self._stop:
            raise _Stop

    def spin(self) -> None:
        """A waiter backs off: unless another actor wrote since its last spin, it is parked until
        one does (running it again would only load the same values)."""
        name = self._local.name
        if self._dirty[name]:
            self._dirty[name] = False
        else:
            self.state[name] = "spinning"
        self.point(write=False)

    def _body(self, name: str) -> None:
        self._local.name = name
        self._turn[name].acquire()
        try:
            if not self._stop:
                self.actors[name]()
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the scheduler, which raises it
            if self.error is None:
                self.error = e
        finally:
            self.state[name] = "done"
            self._back.release()

    def _choose(self, enabled: tuple[str, ...], current: str) -> str:
        i = len(self.trace)
        if i < len(self.prefix):
            if self.prefix[i] not in enabled:
                raise Diverged(f"step {i}: the replayed schedule runs {self.prefix[i]!r}, but only {enabled} "
                               f"can run (a run must depend only on the choices): {self.choices()}")
            return self.prefix[i]
        return current if current in enabled else enabled[0]

    def run(self) -> None:
        threads = [threading.Thread(target=self._body, args=(name,), daemon=True) for name in self.actors]
        for t in threads:
            t.start()
        current = ""
        try:
            while self.error is None:
                enabled = tuple(n for n in self.actors if self.state[n] == "ready")
                if not enabled:
                    spinning = [n for n in self.actors if self.state[n] == "spinning"]
                    if spinning:
                        raise Hang(f"{spinning} spin with no one left to end the wait: {self.choices()}")
                    break
                choice = self._choose(enabled, current)
                self.trace.append((enabled, choice))
                if len(self.trace) > self.max_steps:
                    raise AssertionError(f"more than {self.max_steps} steps: {self.choices()}")
                current = choice
                wrote, self._writes[choice] = self._writes[choice], False
                self._turn[choice].release()
                if not self._back.acquire(timeout=TURN_TIMEOUT):
                    raise AssertionError(f"{choice!r} kept its turn for {TURN_TIMEOUT} s (blocked outside the "
                                         f"scheduling points?): {self.choices()}")
                if wrote:
                    for n in self.actors:
                        if n != choice and self.state[n] == "spinning":
                            self.state[n], self._dirty[n] = "ready", False
                        elif n != choice:
                            self._dirty[n] = True
            if self.error is not None:
                raise self.error
        finally:
            self._stop = True
            for name in self.actors:
                self._turn[name].release()
            for t in threads:
                t.join(timeout=10)

    def choices(self) -> list[str]:
        return [c for _, c in self.trace]


class _Current:
    sched: Scheduler | None = None


_current = _Current()


def explore(make: Callable[[], Actors], bound: int, *, check: Callable[[], None] | None = None,
            max_steps: int = 400) -> int:
    """Runs every schedule of the actors ``make()`` returns (fresh ones for each run, over reset
    state) with at most ``bound`` preemptions, depth first; the actors check invariants as they
    go, and ``check()`` (in this thread) once they are all done. Returns the number of schedules
    run."""
    stack: list[list[str]] = [[]]
    runs = 0
    while stack:
        prefix = stack.pop()
        sched = Scheduler(make(), prefix, max_steps)
        _current.sched = sched
        try:
            sched.run()
        finally:
            _current.sched = None
        if check is not None:
            try:
                check()
            except AssertionError as e:
                raise AssertionError(f"{e}\nschedule: {sched.choices()}") from e
        runs += 1
        preempted = 0
        for i, (enabled, chosen) in enumerate(sched.trace):
            prev = sched.trace[i - 1][1] if i else ""
            if i >= len(prefix):
                for alt in enabled:
                    extra = prev in enabled and alt != prev
                    if alt != chosen and preempted + extra <= bound:
                        stack.append(sched.choices()[:i] + [alt])
            preempted += prev in enabled and chosen != prev
    return runs


class Stepped:
    """An AtomicView whose every operation is a scheduling point of the current run."""

    def __init__(self, view: atomicshm.AtomicView) -> None:
        self._view = view

    def __getattr__(self, name: str) -> Callable[..., int | None]:
        op = getattr(self._view, name)

        write = not name.startswith("load")

        def stepped(*args: int) -> int | None:
            sched = _current.sched
            assert sched is not None, "a stepped view used outside a run's actors"
            sched.point(write)
            return op(*args)          # type: ignore[no-any-return]
        return stepped


def point() -> None:
    """A scheduling point of the current run (an actor's shared access that is not a view's)."""
    sched = _current.sched
    assert sched is not None
    sched.point()


def spin() -> None:
    """A waiter's backoff in the current run (Scheduler.spin)."""
    sched = _current.sched
    assert sched is not None
    sched.spin()
