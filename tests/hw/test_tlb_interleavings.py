"""hw.tlb's invalidation protocol under explicit interleavings, as a model checker would drive it.

The real Tlb methods of two or three CPUs run in threads of this process, over AtomicViews of
private buffers laid out as the machine's (control block, CPU areas, DRAM), and every shared
load, store or read-modify-write is a scheduling point: a scheduler lets exactly one CPU run
from one point to its next, in an order it chooses. The invalidating wait's backoff is a point
too, at which the waiter stays parked until another CPU has taken a step (a spin that nothing
can end is reported as a hang). The schedules are explored exhaustively up to a bound on
preemptions (switching away from a CPU that could have gone on), depth first.

Each scenario models a stage-2 mapping (or a GPT entry) as a version a CPU that executes realm
code copies into its cached translation after a sync point that dropped its caches (a walk), and
uses at every later step; the changing CPU moves the version, then invalidates. The invariant:
once invalidate_realm (invalidate_gpt) has returned, no CPU uses a translation cached before the
change. A second entry into the same realm keeps what was cached (the protocol's "kept
translations" rule), so a cache made before the change can cross a leave and an enter.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import atomicshm
import pytest

from rmm_mp.hw import process
from rmm_mp.hw import tlb as tlb_module
from rmm_mp.hw.cpuarea import OFF_BIND, binding_word
from rmm_mp.hw.tlb import Tlb

AREA = 0x1000
"""Bytes of one CPU area in the model (the offsets the protocol uses are below 0x400)."""
CTL_BYTES, DRAM_BYTES = 0x1000, 0x4000
RD_X, GEN_X = 0x8000_1000, 0x1000
"""A realm's RD PA and its TLB generation word's DRAM offset."""
RD_Y, GEN_Y = 0x8000_2000, 0x2000
"""Another realm's."""
PREEMPTIONS = 2
MAX_STEPS = 400


class Hang(AssertionError):
    """Every CPU left is spinning: nothing can end the wait."""


class _Stop(BaseException):
    """Raised in a CPU's thread at its next point when a run is torn down."""


class Scheduler:
    """Runs ``actors`` one step at a time in the order ``prefix`` gives, then without preemption
    (the running actor goes on while it can, else the first one that can); records the choices."""

    def __init__(self, actors: dict[str, Callable[[], None]], prefix: Sequence[str]) -> None:
        self.actors = actors
        self.prefix = prefix
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
                i = len(self.trace)
                choice = self.prefix[i] if i < len(self.prefix) else current if current in enabled else enabled[0]
                self.trace.append((enabled, choice))
                if len(self.trace) > MAX_STEPS:
                    raise AssertionError(f"more than {MAX_STEPS} steps: {self.choices()}")
                current = choice
                wrote, self._writes[choice] = self._writes[choice], False
                self._turn[choice].release()
                self._back.acquire()
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


def explore(make: Callable[[], dict[str, Callable[[], None]]], bound: int = PREEMPTIONS) -> int:
    """Runs every schedule of the actors ``make()`` returns (fresh ones for each run) with at most
    ``bound`` preemptions, depth first; the actors check the invariants as they go. Returns the
    number of schedules run."""
    stack: list[list[str]] = [[]]
    runs = 0
    while stack:
        prefix = stack.pop()
        sched = Scheduler(make(), prefix)
        _current.sched = sched
        try:
            sched.run()
        finally:
            _current.sched = None
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


class _Current:
    sched: Scheduler | None = None


_current = _Current()


class Stepped:
    """An AtomicView whose every operation is a scheduling point of the current run."""

    def __init__(self, view: atomicshm.AtomicView) -> None:
        self._view = view

    def __getattr__(self, name: str) -> Callable[..., int | None]:
        op = getattr(self._view, name)

        write = not name.startswith("load")

        def stepped(*args: int) -> int | None:
            sched = _current.sched
            assert sched is not None
            sched.point(write)
            return op(*args)          # type: ignore[no-any-return]
        return stepped


def _point() -> None:
    sched = _current.sched
    assert sched is not None
    sched.point()


def _spin() -> None:
    sched = _current.sched
    assert sched is not None
    sched.spin()


@pytest.fixture(autouse=True)
def _backoff_is_a_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invalidating wait's backoff parks the waiter until another CPU takes a step."""
    monkeypatch.setattr(tlb_module, "backoff", lambda tries: _spin())


Key = int | str
"""What a mapping belongs to: a realm's stage 2 (its RD PA), or "gpt"."""


@dataclass
class World:
    """One run's shared state: the machine's words (in AtomicViews of private buffers), and the
    model's mappings."""

    cpus: int = 2
    version: dict[Key, int] = field(default_factory=lambda: {RD_X: 0, RD_Y: 0, "gpt": 0})
    """The version of each mapping a change moves."""
    done: dict[Key, int] = field(default_factory=dict)
    """Mapping -> the version an invalidation that has returned was made for."""
    instance: dict[int, int] = field(default_factory=lambda: {RD_X: 1, RD_Y: 1})
    """The realm made on each RD (a realm rebuilt on the same RD is another instance)."""

    def __post_init__(self) -> None:
        self.ctl = atomicshm.AtomicView(bytearray(CTL_BYTES))
        self.areas = atomicshm.AtomicView(bytearray(AREA * self.cpus))
        self.dram = atomicshm.AtomicView(bytearray(DRAM_BYTES))
        word = binding_word(os.getpid(), process.own_start_ms())
        for cpu in range(self.cpus):
            self.areas.store_u64(cpu * AREA + OFF_BIND, word)   # live CPUs: a look finds them alive

    def tlb(self, cpu: int) -> Tlb:
        return Tlb(cpu, Stepped(self.ctl), Stepped(self.areas), Stepped(self.dram), AREA,  # type: ignore[arg-type]
                   self.cpus)


@dataclass
class Executor:
    """A CPU executing realm code: enters, and at each of its steps syncs, walks what its caches
    lack (a dropped cache is empty), and uses what it cached twice (two instructions between
    sync points). Its caches are not tagged with the
    realm (as the interpreter's are not) and are kept across entries as tlb.py allows."""

    world: World
    tlb: Tlb
    cache: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """"s2" or "gpt" -> (RD, realm instance, version) it was cached from."""

    def entry(self, rd: int, gen: int, steps: int = 2) -> None:
        self.tlb.enter(rd, gen)
        for _ in range(steps):
            if self.tlb.sync():
                self.cache.clear()
            for kind, key in (("s2", rd), ("gpt", "gpt")):
                if kind not in self.cache:
                    _point()                # the walk reads the tables
                    self.cache[kind] = (rd, self.world.instance[rd], self.world.version[key])
            for _ in range(2):              # straight-line code: uses with no sync point between
                _point()
                self.check(rd)
        self.tlb.leave()

    def check(self, rd: int) -> None:
        for kind, key in (("s2", rd), ("gpt", "gpt")):
            cached_rd, instance, version = self.cache[kind]
            assert (cached_rd, instance) == (rd, self.world.instance[rd]), \
                f"CPU {self.tlb.cpu} executing the realm at {rd:#x} (instance {self.world.instance[rd]}) used a " \
                f"translation cached for the realm at {cached_rd:#x} (instance {instance})"
            done = self.world.done.get(key)
            assert done is None or version >= done, \
                f"CPU {self.tlb.cpu} used a {kind} translation of version {version} after the invalidation for " \
                f"version {done} returned"


def _changer(world: World, tlb: Tlb, key: Key) -> Callable[[], None]:
    """The CPU that changes a mapping (an unmap, a granule transition), then invalidates."""
    def run() -> None:
        _point()                            # the RTT or GPT store
        world.version[key] += 1
        if key == "gpt":
            tlb.invalidate_gpt()
        else:
            tlb.invalidate_realm(int(key), GEN_X if key == RD_X else GEN_Y)
        world.done[key] = world.version[key]
    return run


Actors = dict[str, Callable[[], None]]


@pytest.mark.parametrize("after_first_entry", [False, True], ids=["anytime", "after-first-entry"])
@pytest.mark.parametrize("key", [RD_X, "gpt"], ids=["stage2", "gpt"])
def test_no_cpu_uses_an_old_translation_once_the_invalidation_returned(key: Key, after_first_entry: bool) -> None:
    """CPU 1 enters realm X twice (its caches kept across the entries), syncing, walking and
    using its cached translations at each step; CPU 0 changes a mapping (X's stage 2, or the GPT)
    and invalidates, interleaved with CPU 1's steps in every way with at most PREEMPTIONS
    preemptions (``after_first_entry``: CPU 0 starts once CPU 1 has left the first time, each
    entry has one sync point instead of two, and one more preemption is allowed). Once the
    invalidation has returned, CPU 1 never uses a translation cached before the change, and no
    schedule hangs. Fails if the invalidator reads the executing count before it bumps the
    generation (only the after-first-entry runs catch that), if an entry does not count the CPU
    in, if the wait accepts a CPU one generation behind or looks for the RD without its bit 0,
    or if a sync compares only one of the two generations."""
    def make() -> Actors:
        world = World()
        ex = Executor(world, world.tlb(1))
        left = [False]
        change = _changer(world, world.tlb(0), key)

        steps = 1 if after_first_entry else 2

        def executor() -> None:
            ex.entry(RD_X, GEN_X, steps)
            left[0] = True
            _point()
            ex.entry(RD_X, GEN_X, steps)

        def changer() -> None:
            while after_first_entry and not left[0]:
                _spin()
            change()
        return {"cpu1": executor, "cpu0": changer}
    assert explore(make, bound=PREEMPTIONS + after_first_entry) > 100


def test_two_invalidations_and_two_realms() -> None:
    """CPU 2 executes realm X, then realm Y, then X again (one step each, its caches carried from
    one entry to the next as tlb.py allows; both realms' generations at 0); CPU 0 changes X's
    stage 2 and invalidates it and CPU 1 does the same for the GPT, all interleaved with at most
    2 preemptions. CPU 2 never uses a translation cached for the other realm, nor one cached
    before a change whose invalidation has returned, and no invalidation waits for ever (CPU 2
    in Y is not waited for by X's). Fails if an entry into another realm keeps the caches."""
    def make() -> Actors:
        world = World(cpus=3)
        ex = Executor(world, world.tlb(2))

        def executor() -> None:
            ex.entry(RD_X, GEN_X, steps=1)
            ex.entry(RD_Y, GEN_Y, steps=1)
            ex.entry(RD_X, GEN_X, steps=1)
        return {"cpu2": executor, "cpu0": _changer(world, world.tlb(0), RD_X),
                "cpu1": _changer(world, world.tlb(1), "gpt")}
    assert explore(make, bound=1) > 100


def test_a_realm_rebuilt_on_the_same_rd_starts_with_nothing_cached() -> None:
    """CPU 1 executes realm X (generation 0, never invalidated) and leaves with its caches; once
    it has left, CPU 0 destroys X (REALM_DESTROY: end_stage2, then the RD zeroed) and makes a new
    realm on the same RD, whose generation is 0 again; CPU 1 then enters it. Whatever the order
    of their steps, CPU 1 never uses the old realm's translations in the new one, although both
    generations read as before. Fails without the stage-2 epoch check at entry."""
    def make() -> Actors:
        world = World()
        ex = Executor(world, world.tlb(1))
        state = {"left": False, "rebuilt": False}
        destroyer = world.tlb(0)

        def executor() -> None:
            ex.entry(RD_X, GEN_X)
            state["left"] = True
            _point()
            while not state["rebuilt"]:     # REC_ENTER of the new realm's REC, once there is one
                _spin()
            ex.entry(RD_X, GEN_X)

        def cpu0() -> None:
            while not state["left"]:        # REALM_DESTROY fails while X has a REC
                _spin()
            destroyer.end_stage2()
            destroyer.dram.store_u64(GEN_X, 0)
            world.instance[RD_X] += 1
            state["rebuilt"] = True
        return {"cpu1": executor, "cpu0": cpu0}
    assert explore(make) > 10
