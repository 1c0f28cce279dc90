"""What a stress run is asked to do (StressConfig), checked before anything is created.

This module owns the options, their defaults and their validation. It must not run anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rmm_mp.hw.tomlnum import int_range, number_range
from rmm_mp.printable import shown_path
from rmm_mp.stress.ops import WORKLOADS
from rmm_mp.stress.population import POPULATION, POPULATIONS
from rmm_mp.stress.shared import MAX_CPUS
from rmm_mp.workload.fields import is_finite_number, is_int
from rmm_mp.workload.spec import MIN_SECONDS

INTEGERS: dict[str, tuple[int, int, str]] = {
    "cpus": (2, MAX_CPUS, "a number of CPU processes"),
    "seed": (0, 2**64 - 1, "a seed"),
    "steps": (1, 100_000_000, "a step budget"),
    "pct_depth": (1, 64, "a PCT bug depth"),
    "time_slice": (1, 1_000_000_000, "a number of guest instructions per REC entry"),
}
"""The whole-number options: name -> (lowest, highest, what it is). StressConfig, the command line
and a schedule file's loader all take their ranges from here, so they cannot drift apart.
time_slice's range is the one Machine.create enforces: checked here too, so that a bad value is
refused before a machine is created rather than by the machine. cpus goes up to what the stress
segment and the host run queue hold (stress.shared.MAX_CPUS, 64: as many as `rmm-mp run`)."""

SCHEDULES = ("free", "random", "pct", "replay")
CHECKERS = ("lockdep", "ownership", "invariants", "watchdog")
"""Checkers a run can switch on ("functional" checks, crashes and statuses, are always on)."""
DEFAULT_CHECKERS = CHECKERS
"""Every checker is on unless a run asks for fewer (docs/performance.md, "Lock-correctness stress
testing": together they cost a free-running run 20 to 40 % of its operations per CPU second)."""


QUIESCE_STEPS_MAX = 2**64 - 1
"""The largest quiescent-check interval of a deterministic run (a u64 of the stress segment)."""


def _names(value: object) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(n, str) for n in value)


def quiescent_every_problem(value: float, deterministic: bool) -> str | None:
    """What is wrong with a quiescent-check interval, or None. A deterministic run counts it in
    steps, so a fraction is refused: 0.5 used to become 0, which turned the checks off silently.
    The steps go to a 64-bit field of the machine (runner._sched_plan): more did not fit, and
    infinity has no whole number, both OverflowErrors once the machine existed."""
    if not is_finite_number(value) or value < 0:
        return "expected a finite number >= 0 (0 for no checks)"
    if deterministic and value != int(value):
        return "a deterministic run checks every N steps; expected a whole number of steps (0 for no checks)"
    if deterministic and value > QUIESCE_STEPS_MAX:
        return f"a deterministic run checks every N steps; expected at most {QUIESCE_STEPS_MAX} steps (0 for no checks)"
    return None


def pct_depth_problem(pct_depth: int, steps: int) -> str | None:
    """What is wrong with a PCT depth for a step budget, or None. PCT draws d - 1 distinct
    change points among the budget's steps: with fewer steps than that the draw never ended
    (the run hung before its CPUs started, deaf to Ctrl-C)."""
    if pct_depth - 1 > steps:
        return (f"PCT needs d - 1 = {pct_depth - 1} distinct priority change points among the {steps} step(s) of "
                f"the budget; expected a depth of at most steps + 1 ({steps + 1})")
    return None


@dataclass(frozen=True)
class StressConfig:
    """Options of one stress run.

    Attributes:
        workload: a bundled workload (stress.ops.WORKLOADS).
        cpus: CPU processes (2..MAX_CPUS; the platform grows to them if it has fewer).
        seconds: how long a free-running run lasts; for a deterministic one, a safety limit.
        seed: drives the operations each CPU draws and, with a deterministic schedule, the order.
        schedule: "free" (the OS schedules), "random", "pct", or "replay" (of ``switches``).
        steps: the step budget of a deterministic run (schedule points); then CPUs finish the
            operation they are in and stop.
        pct_depth: PCT's bug depth d (d - 1 priority change points).
        inject: names of catalogued bugs (stress.bugs) to switch on.
        checkers: which of CHECKERS run.
        switches: the recorded context switches (step, CPU) a replay follows.
        log_points: keep every schedule point (deterministic mode) for a timeline.
        quiescent_every: invariant checks at quiescent points (with the "invariants" checker):
            every this many steps (deterministic) or seconds (free-running); 0 for none (the
            invariants are still checked at the end of every run that ends between operations).
        platform, time_slice: the machine (time_slice: guest instructions per REC entry).
        guests: whether the population includes running guest realms.
        population: which population (stress.population.POPULATION): the current one, or the
            one a schedule file of an older version recorded its run on, which its replay builds.
    """

    workload: str = "mixed"
    cpus: int = 2
    seconds: float = 10.0
    seed: int = 0
    schedule: str = "free"
    steps: int = 20_000
    pct_depth: int = 3
    inject: tuple[str, ...] = ()
    checkers: tuple[str, ...] = DEFAULT_CHECKERS
    switches: tuple[tuple[int, int], ...] = ()
    log_points: bool = False
    quiescent_every: float = 0
    platform: str = "host"
    time_slice: int = 400
    guests: bool = True
    population: int = POPULATION

    def __post_init__(self) -> None:
        from rmm_mp.stress.bugs import BUGS, inject_problem
        # Types as well as ranges: a wrong type (a seed of "1") used to get past here and fail
        # in the run, after the machine was created.
        if not isinstance(self.workload, str) or self.workload not in WORKLOADS:
            raise ValueError(f"workload = {self.workload!r}: expected one of {', '.join(WORKLOADS)}")
        for name, (lo, hi, what) in INTEGERS.items():
            value = getattr(self, name)
            if not is_int(value) or not lo <= value <= hi:
                raise ValueError(f"{name} = {value!r}: expected {what}, an integer in {int_range(lo, hi)}")
        # At least a nanosecond, as `rmm-mp run`'s (workload.spec.MIN_SECONDS): a subnormal
        # such as 1e-316 is surely a typo, and one tool's options should not disagree.
        if not is_finite_number(self.seconds) or not MIN_SECONDS <= self.seconds <= 86_400:
            raise ValueError(f"seconds = {self.seconds!r}: expected a duration in seconds, "
                             f"{number_range(MIN_SECONDS, 86_400)}")
        if not isinstance(self.schedule, str) or self.schedule not in SCHEDULES:
            raise ValueError(f"schedule = {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        # A string is iterable too: "lockdep" used to be read as the names l, o, c, ...
        if not _names(self.inject):
            raise ValueError(f"inject = {self.inject!r}: expected a tuple of bug names")
        unknown = [b for b in self.inject if b not in BUGS]
        if unknown:
            raise ValueError(f"inject: unknown bug(s) {', '.join(map(shown_path, unknown))}; "
                             "`rmm-mp stress --list-bugs` lists them")
        if problem := inject_problem(self.inject):
            raise ValueError(f"inject = {self.inject!r}: {problem[0]}; expected {problem[1]}")
        if not _names(self.checkers):
            raise ValueError(f"checkers = {self.checkers!r}: expected a tuple of checker names")
        bad = [c for c in self.checkers if c not in CHECKERS]
        if bad:
            raise ValueError(f"checkers: unknown {', '.join(map(shown_path, bad))}; "
                             f"expected some of {', '.join(CHECKERS)}")
        if self.schedule == "pct" and (depth_problem := pct_depth_problem(self.pct_depth, self.steps)):
            raise ValueError(f"pct_depth = {self.pct_depth!r}: {depth_problem}")
        if self.schedule == "replay" and not self.switches:
            raise ValueError("schedule = 'replay' needs the recorded switches of a schedule file")
        if not is_finite_number(self.quiescent_every) or self.quiescent_every < 0:
            raise ValueError(f"quiescent_every = {self.quiescent_every!r}: expected a number >= 0")
        every_problem = quiescent_every_problem(self.quiescent_every, self.deterministic)
        if every_problem:
            raise ValueError(f"quiescent_every = {self.quiescent_every!r}: {every_problem}")
        if not isinstance(self.guests, bool):
            raise ValueError(f"guests = {self.guests!r}: expected True or False")
        if not is_int(self.population) or self.population not in POPULATIONS:
            raise ValueError(f"population = {self.population!r}: expected one of {', '.join(map(str, POPULATIONS))}")

    @property
    def deterministic(self) -> bool:
        return self.schedule != "free"

    def on(self, checker: str) -> bool:
        return checker in self.checkers

    def replace(self, **changes: Any) -> "StressConfig":
        return dataclasses.replace(self, **changes)
