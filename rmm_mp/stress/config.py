"""What a stress run is asked to do (StressConfig), checked before anything is created.

This module owns the options, their defaults and their validation. It must not run anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rmm_mp.stress.ops import WORKLOADS

SCHEDULES = ("free", "random", "pct", "replay")
CHECKERS = ("lockdep", "ownership", "invariants", "watchdog")
"""Checkers a run can switch on ("functional" checks, crashes and statuses, are always on)."""
DEFAULT_CHECKERS = CHECKERS
"""Every checker is on unless a run asks for fewer (docs/performance.md, "Lock-correctness stress
testing": together they cost a free-running run 20 to 40 % of its operations per CPU second)."""


def quiescent_every_problem(value: float, deterministic: bool) -> str | None:
    """What is wrong with a quiescent-check interval, or None. A deterministic run counts it in
    steps, so a fraction is refused: 0.5 used to become 0, which turned the checks off silently."""
    if deterministic and value != int(value):
        return "a deterministic run checks every N steps; expected a whole number of steps (0 for no checks)"
    return None


@dataclass(frozen=True)
class StressConfig:
    """Options of one stress run.

    Attributes:
        workload: a bundled workload (stress.ops.WORKLOADS).
        cpus: CPU processes (2..the platform's CPUs).
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
            every this many steps (deterministic) or seconds (free-running); 0 for none. The
            invariants are checked at the end of every run that ends between operations.
        platform, time_slice: the machine (time_slice: guest instructions per REC entry).
        guests: whether the population includes running guest realms.
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

    def __post_init__(self) -> None:
        from rmm_mp.stress.bugs import BUGS
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload = {self.workload!r}: expected one of {', '.join(WORKLOADS)}")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or not 2 <= self.cpus <= 16:
            raise ValueError(f"cpus = {self.cpus!r}: expected 2..16 CPU processes")
        if not 0 < self.seconds <= 86_400:
            raise ValueError(f"seconds = {self.seconds!r}: expected a duration in (0, 86400]")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule = {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if not 1 <= self.steps <= 100_000_000:
            raise ValueError(f"steps = {self.steps!r}: expected a step budget in 1..100000000")
        if not 1 <= self.pct_depth <= 64:
            raise ValueError(f"pct_depth = {self.pct_depth!r}: expected 1..64")
        unknown = [b for b in self.inject if b not in BUGS]
        if unknown:
            raise ValueError(f"inject: unknown bug(s) {', '.join(unknown)}; `rmm-mp stress --list-bugs` lists them")
        bad = [c for c in self.checkers if c not in CHECKERS]
        if bad:
            raise ValueError(f"checkers: unknown {', '.join(bad)}; expected some of {', '.join(CHECKERS)}")
        if self.schedule == "replay" and not self.switches:
            raise ValueError("schedule = 'replay' needs the recorded switches of a schedule file")
        if self.quiescent_every < 0:
            raise ValueError(f"quiescent_every = {self.quiescent_every!r}: expected >= 0")
        problem = quiescent_every_problem(self.quiescent_every, self.deterministic)
        if problem:
            raise ValueError(f"quiescent_every = {self.quiescent_every!r}: {problem}")

    @property
    def deterministic(self) -> bool:
        return self.schedule != "free"

    def on(self, checker: str) -> bool:
        return checker in self.checkers

    def replace(self, **changes: Any) -> "StressConfig":
        return dataclasses.replace(self, **changes)
