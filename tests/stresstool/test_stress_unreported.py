"""The stress summary's words on the CPUs that returned no result (StressReport.unreported): what
their counters in the stress segment added, and which of them added nothing."""

from __future__ import annotations

from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.report import StressReport


def _summary(ops: dict[int, int], unreported_ops: dict[int, int]) -> str:
    return StressReport(StressConfig(), (), "time", 1.0, ops, unreported=tuple(sorted(unreported_ops)),
                        unreported_ops=unreported_ops).summary()


def test_only_the_cpus_that_counted_are_named_beside_the_more() -> None:
    """CPUs 0 and 2 returned no result, CPU 0 had counted 7 operations and CPU 2 none: "7 more
    counted by CPU 0", and CPU 2 said apart to have counted none. All were named beside the
    count ("by CPUs 0 and 2"), as if CPU 2 had added some of the 7."""
    line = _summary({1: 4}, {0: 7, 2: 0})
    assert ("4 operations (over the CPUs that returned a result; 7 more counted in shared memory by CPU 0, which "
            "returned none; CPU 2, which returned none too, had counted none) in 1.0 s") in line, line


def test_every_cpu_that_counted_is_named_beside_the_more() -> None:
    """Every CPU that returned none had counted some: all of them beside the count, nothing else."""
    line = _summary({}, {0: 5, 1: 3, 2: 1})
    assert ("0 operations (over the CPUs that returned a result; 9 more counted in shared memory by CPUs 0 to 2, "
            "which returned none) in 1.0 s") in line, line
    assert "counted none" not in line, line


def test_cpus_that_all_counted_nothing_are_said_to_have_counted_none() -> None:
    line = _summary({3: 2}, {0: 0, 1: 0})
    assert ("2 operations (over the CPUs that returned a result; CPUs 0 and 1, which returned none, had counted none "
            "in shared memory) in 1.0 s") in line, line
