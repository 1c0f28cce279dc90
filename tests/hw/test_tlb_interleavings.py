"""hw.tlb's invalidation protocol under explicit interleavings, as a model checker would drive it.

The real Tlb methods of two or three CPUs run in threads of this process, over AtomicViews of
private buffers laid out as the machine's (control block, CPU areas, DRAM), and every shared
load, store or read-modify-write is a scheduling point: a scheduler lets exactly one CPU run
from one point to its next, in an order it chooses. The invalidating wait's backoff is a point
too, at which the waiter stays parked until another CPU has taken a step (a spin that nothing
can end is reported as a hang). The schedules are explored exhaustively up to a bound on
preemptions (switching away from a CPU that could have gone on), depth first (the scheduler is
tests/interleave.py's).

Each scenario models a stage-2 mapping (or a GPT entry) as a version a CPU that executes realm
code copies into its cached translation after a sync point that dropped its caches (a walk), and
uses at every later step; the changing CPU moves the version, then invalidates. The invariant:
once invalidate_realm (invalidate_gpt) has returned, no CPU uses a translation cached before the
change. A second entry into the same realm keeps what was cached (the protocol's "kept
translations" rule), so a cache made before the change can cross a leave and an enter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import atomicshm
import pytest
import interleave
from interleave import Actors, Stepped, point as _point, spin as _spin

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


def explore(make: Callable[[], Actors], bound: int = PREEMPTIONS) -> int:
    """Every schedule of ``make``'s actors with at most ``bound`` preemptions (interleave.explore)."""
    return interleave.explore(make, bound, max_steps=MAX_STEPS)


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
