"""Per-CPU plans (rmm_mp.workload.plan): one seed gives every CPU the same activity sequence in
every run; another seed, another CPU or another phase gives a different one; the sequence
follows the weights; the activities' own choices come from a generator of their own."""

from __future__ import annotations

from collections import Counter

from rmm_mp.workload import spec
from rmm_mp.workload.plan import Chooser, activity_rng, plan
from rmm_mp.workload.resolve import resolve

WEIGHTS = (("run", 6.0), ("lifecycle", 1.0), ("rtt-churn", 2.0), ("map-shared", 1.0))


def test_same_seed_same_plan_per_cpu_and_phase() -> None:
    """Two plans for the same (seed, CPU, phase) are identical, step for step."""
    assert plan(7, 2, "main", WEIGHTS, 5000) == plan(7, 2, "main", WEIGHTS, 5000)


def test_seed_cpu_and_phase_each_change_the_plan() -> None:
    """Another seed, another CPU or another phase name, the rest unchanged: each gives a different
    200-step plan."""
    base = plan(7, 2, "main", WEIGHTS, 200)
    assert plan(8, 2, "main", WEIGHTS, 200) != base
    assert plan(7, 3, "main", WEIGHTS, 200) != base
    assert plan(7, 2, "warm-up", WEIGHTS, 200) != base


def test_plan_follows_the_weights() -> None:
    """Over 20,000 steps each activity's share is its weight's share within 2 points (a fixed
    seed: this is a property of the sequence, not a timing)."""
    counts = Counter(plan(1, 0, "main", WEIGHTS, 20000))
    total = sum(w for _, w in WEIGHTS)
    for name, weight in WEIGHTS:
        assert abs(counts[name] / 20000 - weight / total) < 0.02, (name, counts)


def test_single_activity_and_chooser_agree() -> None:
    """A lone activity is always chosen; Chooser.next gives what plan lists."""
    assert set(plan(3, 1, "p", (("run", 1.0),), 100)) == {"run"}
    chooser = Chooser(3, 1, "p", WEIGHTS)
    assert [chooser.next() for _ in range(300)] == plan(3, 1, "p", WEIGHTS, 300)


def test_extreme_weights_still_choose() -> None:
    """Any finite weights >= 0 the file format accepts give a plan: a subnormal lone weight
    (5e-324, whose product with random() can reach the total) and two of 1e308 (whose sum
    overflows to inf) once raised IndexError in Chooser.next, killing the CPU process."""
    assert set(plan(1, 0, "main", (("run", 5e-324),), 2000)) == {"run"}
    counts = Counter(plan(1, 0, "main", (("run", 1e308), ("rtt-churn", 1e308)), 4000))
    assert set(counts) == {"run", "rtt-churn"} and abs(counts["run"] / 4000 - 0.5) < 0.05
    counts = Counter(plan(1, 0, "main", (("run", 1.0), ("rtt-churn", 5e-324)), 2000))
    assert counts == {"run": 2000}


def test_activity_generators_are_separate_from_the_plan() -> None:
    """An activity's generator depends on (seed, CPU, activity) only."""
    a, b = activity_rng(5, 0, "rtt-churn"), activity_rng(5, 0, "rtt-churn")
    assert [a.random() for _ in range(10)] == [b.random() for _ in range(10)]
    assert activity_rng(5, 0, "map-shared").random() != activity_rng(5, 0, "rtt-churn").random()


def test_an_activity_stream_is_never_a_plan_stream() -> None:
    """A phase may be named like an activity; the plan of phase 'delegate-churn' used to be the
    very stream delegate-churn drew its own choices from, so the activity's first choice was
    tied to whether the plan's first step picked it."""
    from rmm_mp.workload.plan import plan_rng
    for activity in ("delegate-churn", "rtt-churn", "map-shared", "run"):
        assert plan_rng(5, 0, activity).random() != activity_rng(5, 0, activity).random()


def test_bundled_workload_plans_are_reproducible() -> None:
    """For quickstart, the resolved weights of each CPU give the same first 1,000 steps for one
    seed whenever it is resolved, and a different sequence under --seed 2."""
    def plans(seed: int | None) -> list[list[str]]:
        w = resolve(spec.load("quickstart"), seed=seed)
        return [plan(w.seed, c, p.name, p.weights[c], 1000) for p in w.phases for c in range(w.cpus)]

    assert plans(None) == plans(None)
    assert plans(2) != plans(None)
