"""The stress summary's words on the CPUs that returned no result (StressReport.unreported): what
their counters in the stress segment added, and which of them added nothing."""

from __future__ import annotations

from children import bound_pid
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


def test_a_killed_cpus_counts_by_kind_are_read_from_the_stress_segment() -> None:
    """CPU 1 killed (SIGKILL) once it has completed some operations: its counts by kind and its
    events are in the report (JSON ``counts_unreported``), read from its counters in the stress
    segment, and they add up to its operation total there. They went with its process: only
    the total was known."""
    import os
    import signal
    from typing import Any

    from rmm_mp.stress import run
    from rmm_mp.stress.ops import WORKLOADS

    machines: list[Any] = []
    killed: list[int] = []

    def kill_cpu_1(elapsed: float, seg: Any) -> None:
        if killed or seg.ops(1) < 5:
            return
        pid = bound_pid(machines[0], 1)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    cfg = StressConfig(workload="mixed", seed=3, cpus=2, seconds=30, checkers=("watchdog",))
    report = run(cfg, on_tick=kill_cpu_1, on_machine=machines.append)
    assert killed and report.unreported == (1,), report.text()
    counts = report.unreported_counts[1]
    # The kind is counted just before the total (stress.worker): a kill between the two leaves
    # the kinds one ahead.
    kinds = sum(n for k, n in counts.items() if k in WORKLOADS["mixed"])
    assert report.unreported_ops[1] >= 5 and kinds - report.unreported_ops[1] in (0, 1), (counts, report.unreported_ops)
    assert report.to_json()["counts_unreported"] == {1: counts}


def test_a_killed_cpus_lock_figures_and_bug_calls_are_kept_as_it_published_them() -> None:
    """CPU 1 killed (SIGKILL) once it has run the injected bug's code: the calls it counted in the
    stress segment are in the report (JSON ``bug_calls_unreported``), and the lock figures its EL3
    had published in its CPU area, marked partial in the text and the JSON (``locks_unreported``).
    Both went with its process: the report had neither (the report's fields did not exist)."""
    import os
    import signal
    from typing import Any

    from rmm_mp.stress import run
    from rmm_mp.stress.bugs import BUG_INDEX

    bug = "rec-create-no-rd-lock"
    machines: list[Any] = []
    killed: list[int] = []

    def kill_cpu_1(elapsed: float, seg: Any) -> None:
        if killed or seg.ops(1) < 5 or not seg.bug_calls(1, {bug: BUG_INDEX[bug]})[bug]:
            return
        pid = bound_pid(machines[0], 1)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    cfg = StressConfig(workload="lifecycle", seed=3, cpus=2, seconds=30, checkers=("watchdog",), inject=(bug,))
    report = run(cfg, on_tick=kill_cpu_1, on_machine=machines.append)
    assert killed and report.unreported == (1,), report.text()
    assert report.unreported_bug_calls[1][bug] >= 1, report.unreported_bug_calls
    acquired, contended, _, _ = report.unreported_locks[1]
    assert acquired > 0 and 0 <= contended <= acquired, report.unreported_locks
    line = next(x for x in report.text().splitlines() if x.startswith("lock contention:"))
    assert "partial figures, as last published in shared memory by CPU 1, which returned none" in line, line
    doc = report.to_json()
    assert doc["bug_calls_unreported"] == {"1": report.unreported_bug_calls[1]}
    assert doc["locks_unreported"]["1"]["partial"] is True and doc["locks_unreported"]["1"]["acquired"] == acquired
    assert "1" not in (doc["locks"] or {}).get("per_cpu", {})


def test_partial_lock_figures_are_said_apart_even_when_no_cpu_returned_a_result() -> None:
    """Every CPU killed: the line says no CPU returned its figures and gives what they published;
    with nothing published there is no line, as before."""
    report = StressReport(StressConfig(cpus=2), (), "interrupted", 1.0, {}, unreported=(0, 1),
                          unreported_locks={0: (10, 2, 0, 0)})
    assert report.lock_contention() == ("lock contention: no CPU returned its figures; partial figures, as last "
                                        "published in shared memory by CPU 0, which returned none: CPU 0 had 2 of 10 "
                                        "contended")
    # Two CPUs, each its figures after "had": "CPU 1 107 of 295,291" read as one run of numbers.
    two = StressReport(StressConfig(cpus=3), (), "interrupted", 1.0, {}, unreported=(1, 2),
                       unreported_locks={1: (295_291, 107, 0, 0), 2: (10, 3, 0, 0)})
    assert two.lock_contention().endswith("by CPUs 1 and 2, which returned none: CPU 1 had 107 of 295,291, "
                                          "CPU 2 had 3 of 10 contended"), two.lock_contention()
    assert StressReport(StressConfig(cpus=2), (), "interrupted", 1.0, {}, unreported=(0, 1)).lock_contention() == ""


def test_partial_lock_figures_are_read_from_one_record_per_class_so_a_torn_publish_stays_whole() -> None:
    """EL3 publishes its overall lock figures, then one record per lock class, as separate
    stores (el3.monitor publish_lock_stats): a CPU killed between them leaves the overall record
    newer than the class records. Its contended count was read from the overall record and its
    acquisitions from the class records, so such a CPU read '9 of 7 contended'. Each class
    record is one store with its own acquisitions, contentions and waits, as `rmm-mp run` reads
    a dead CPU's figures (workload.report.collect_locks)."""
    from typing import Any

    from rmm_mp.hw.granule import CLASSES
    from rmm_mp.stress.ending import _published_locks

    class TornArea:
        released = 0

        def lock_stats(self) -> tuple[int, int, int, int]:
            return (9, 900, 300, 0)            # published after the class records below

        def lock_class_stats(self, classes: int) -> list[tuple[int, int, int, int]]:
            rows = [(4, 2, 250, 200), (3, 0, 0, 0)] + [(0, 0, 0, 0)] * (classes - 2)
            return rows[:classes]

        def release(self) -> None:
            TornArea.released += 1

    class FakeMachine:
        def cpu_area(self, cpu: int) -> Any:
            return TornArea()

    assert CLASSES >= 2
    assert _published_locks(FakeMachine(), [1]) == {1: (7, 2, 250, 200)}  # type: ignore[arg-type]
    assert TornArea.released == 1


def _killed_cpu_report(unreported_calls: dict[int, dict[str, int]], checkers: tuple[str, ...] = ("ownership",),
                       ended: str = "time") -> StressReport:
    """A made-up lifecycle run injecting rec-create-no-rd-lock whose CPU 0 returned its result,
    never having run the bug, and whose CPU 1 was killed with ``unreported_calls`` read."""
    cfg = StressConfig(workload="lifecycle", cpus=2, inject=("rec-create-no-rd-lock",), checkers=checkers)
    return StressReport(cfg, (), ended, 1.0, {0: 7}, unreported=(1,), bug_calls={"rec-create-no-rd-lock": 0},
                        unreported_ops={1: 4}, unreported_bug_calls=unreported_calls)


def test_a_killed_cpus_segment_count_decides_whether_an_injected_bug_never_ran() -> None:
    """CPU 1 returned no result (made-up reports, no CPU run): its calls in the stress segment are
    counted before the bug's code runs (stress.bugs.install), so a 0 there proves it never ran the
    bug, and with CPU 0's 0 the report says the bug never ran; a count of 2 there is no such
    line; with CPU 1's calls not read, nothing is said. Until this change any CPU without a
    result silenced the line, the segment's count unread (the first case failed)."""
    bug = "rec-create-no-rd-lock"
    assert _killed_cpu_report({1: {bug: 0}}).unreached() == [bug]
    assert any(line.startswith(f"injected {bug} never ran: ") for line in _killed_cpu_report({1: {bug: 0}}).text()
               .splitlines())
    assert _killed_cpu_report({1: {bug: 2}}).unreached() == []
    assert _killed_cpu_report({}).unreached() == []


def test_a_bug_run_only_by_a_killed_cpu_with_its_checker_off_gets_the_checker_off_line() -> None:
    """The bug ran only on CPU 1, which returned no result (3 calls in the stress segment), in a
    clean run with ownership, its checker, off (a made-up report): the report says the bug ran but
    its checker was off. It read only the returned CPUs' calls (0) and said "no findings" alone
    (failed before this change)."""
    text = _killed_cpu_report({1: {"rec-create-no-rd-lock": 3}}, checkers=("lockdep",)).text()
    assert ("injected rec-create-no-rd-lock ran, but the checker that catches it, ownership (unlocked read), was off "
            "(checkers: lockdep), so \"no findings\" says nothing of the bug") in text.splitlines(), text
