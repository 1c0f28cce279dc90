"""Per-CPU plans: which activity a CPU does at each step of a phase, from the seed.

CPU ``c`` in phase ``p`` draws its activities from ``random.Random(f"{seed}:{c}:{p}")`` (p is the
phase's name), each step picking one activity with probability weight / sum of weights. The
draw depends on nothing else, so one seed gives every CPU the same sequence of activities on
every run (``plan`` lists it; tests compare runs). What each activity then finds (which vCPU
the run queue hands out, whether a lifecycle realm has finished) depends on timing.

Activities draw their own choices (which realm, which table operation) from a separate
generator per CPU and activity, ``random.Random(f"{seed}:{c}:activity:{activity}")``, so those
choices do not shift the plan either. The word ``activity`` keeps the two kinds of stream
apart: a phase may be named like an activity (``delegate-churn``), and a phase name holds no
colon, so no activity's stream is ever a plan's.

This module owns the plan. It runs nothing.
"""

from __future__ import annotations

import bisect
import itertools
import random

from rmm_mp.workload.spec import Weights


def plan_rng(seed: int, cpu: int, phase: str) -> random.Random:
    return random.Random(f"{seed}:{cpu}:{phase}")


def activity_rng(seed: int, cpu: int, activity: str) -> random.Random:
    return random.Random(f"{seed}:{cpu}:activity:{activity}")


class Chooser:
    """The activity sequence of one CPU in one phase."""

    __slots__ = ("names", "cumulative", "total", "random")

    def __init__(self, seed: int, cpu: int, phase: str, weights: Weights) -> None:
        self.names = tuple(name for name, _ in weights)
        # Weights relative to the largest: any finite weights > 0 the file may hold (5e-324, or
        # two of 1e308 whose sum overflows) give a finite total in (0, len(weights)].
        top = max(w for _, w in weights)
        self.cumulative = tuple(itertools.accumulate(w / top for _, w in weights))
        self.total = self.cumulative[-1]
        self.random = plan_rng(seed, cpu, phase).random

    def next(self) -> str:
        # random() < 1, but random() * total can round up to total: that is the last activity.
        i = bisect.bisect_right(self.cumulative, self.random() * self.total)
        return self.names[i] if i < len(self.names) else self.names[-1]


def plan(seed: int, cpu: int, phase: str, weights: Weights, steps: int) -> list[str]:
    """The first ``steps`` activities CPU ``cpu`` does in ``phase``."""
    chooser = Chooser(seed, cpu, phase, weights)
    return [chooser.next() for _ in range(steps)]
