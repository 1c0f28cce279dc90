"""The bug-injection catalog has teeth: every catalogued mistake is caught by its named checker
in a deterministic run from a recorded seed, the run's schedule file replays to the same
report, and the same runs on unmodified code report nothing.

Each run is two CPU processes under the uniform random schedule with a step budget of a few
thousand steps (well under a second of scheduling). The recorded seeds were found with
tools/bench_stress.py; a seed that stops catching its bug after a change to the RMM or the
workload is worth a look before it is replaced (the bug may have become unreachable).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp.stress import BUGS, StressConfig, run
from rmm_mp.stress import schedule as schedule_file
from rmm_mp.stress.config import CHECKERS
from rmm_mp.stress.findings import CHECKERS as FINDING_CHECKERS

pytestmark = pytest.mark.multiprocess

STEPS = 6000
RECORDED = {
    "rec-create-no-rd-lock": 1,
    "lock-two-unordered": 1,
    "walk-unlock-parent-first": 1,
    "rec-enter-not-running": 1,
    "rtt-destroy-refcount-unlocked": 1,
    "psci-complete-unordered": 2,
    "delegate-state-before-pas": 1,
    "rd-refcount-plain-rmw": 1,
    "rtt-create-parent-released-early": 1,
    "data-create-copy-under-rd": 1,
    "map-unprotected-leaks-lock": 2,
    "data-create-rtt-before-rd": 1,
    "data-destroy-wipe-after-rtt": 1,
    "rec-destroy-aux-after-rec": 1,
    "lock-two-check-late": 1,
}
"""The seed (random schedule, STEPS budget) at which each bug is caught."""


def _config(name: str, inject: bool) -> StressConfig:
    bug = BUGS[name]
    return StressConfig(workload=bug.workload, cpus=2, seed=RECORDED[name], schedule="random", steps=STEPS,
                        seconds=120, inject=(name,) if inject else (),
                        checkers=(bug.checker,) if inject else CHECKERS,
                        quiescent_every=1000 if bug.checker == "invariants" or not inject else 0)


def test_catalog_has_a_recorded_seed_for_every_bug() -> None:
    """At least 8 catalogued bugs, each named by a known checker, each with a recorded seed."""
    assert len(BUGS) >= 8
    assert set(RECORDED) == set(BUGS)
    assert {b.checker for b in BUGS.values()} <= set(FINDING_CHECKERS)
    assert len({b.summary for b in BUGS.values()}) == len(BUGS)


@pytest.mark.parametrize("name", sorted(BUGS))
def test_bug_is_caught_and_its_schedule_replays(name: str, tmp_path: Path) -> None:
    """A deterministic run with the bug injected and only its named checker on reports the
    catalogued rule, each broken invariant once; the schedule file it writes replays to the
    same findings, steps and switches."""
    bug = BUGS[name]
    report = run(_config(name, inject=True))
    hits = [f for f in report.findings if f.checker == bug.checker and f.rule == bug.rule]
    assert hits, report.text()
    assert report.bug_calls.get(name, 0) > 0 and not report.unreached(), report.bug_calls
    assert report.ended in ("finding", "aborted", "budget"), report.ended
    assert hits[0].step is not None and hits[0].step <= report.steps
    # A violation found at a quiescent point is still there when the run's end is checked: it
    # must be reported once (rtt-create-parent-released-early listed each twice).
    broken = [f.message for f in report.findings if f.checker == "invariants"]
    assert len(broken) == len(set(broken)), report.text()
    path = schedule_file.write(report, tmp_path / "bug.schedule.json")
    data = schedule_file.read(path)
    assert [f.text() for f in schedule_file.recorded_findings(data)] == [f.text() for f in report.findings]
    replay = run(schedule_file.replay_config(data))
    assert replay.findings_text() == report.findings_text()
    assert (replay.steps, replay.switches) == (report.steps, report.switches)


@pytest.mark.parametrize("name", sorted(BUGS))
def test_same_budget_on_unmodified_code_reports_nothing(name: str) -> None:
    """The bug's recorded run without the bug, with every checker on (quiescent invariant
    checks every 1000 steps), reports nothing and spends its whole budget."""
    report = run(_config(name, inject=False))
    assert report.ok, report.text()
    assert report.ended == "budget" and report.steps >= STEPS


def test_a_run_that_never_reaches_the_injected_code_says_so() -> None:
    """rec-create-no-rd-lock injected into the rtts workload, which makes no REC_CREATE: no
    finding, and the report says the bug's code never ran (JSON bug_calls 0) and names the
    bug's own workload, where "no findings" alone read as the bug not being caught."""
    report = run(StressConfig(workload="rtts", cpus=2, seed=0, schedule="random", steps=300, seconds=120,
                              inject=("rec-create-no-rd-lock",), checkers=("lockdep",), quiescent_every=0))
    assert report.ok and sum(report.ops.values()) > 0, report.text()
    assert report.unreached() == ["rec-create-no-rd-lock"]
    assert report.to_json()["bug_calls"] == {"rec-create-no-rd-lock": 0}
    assert ("injected rec-create-no-rd-lock never ran: this run made no call of the RMI_REC_CREATE handler, so it "
            "tested nothing of the bug; its own workload is lifecycle") in report.text()


@pytest.mark.parametrize("checkers, calls, said", [
    (("lockdep",), 4, True), (("ownership",), 4, False), ((), 4, True), (("lockdep",), 0, False),
], ids=["its-checker-off", "its-checker-on", "no-checker", "never-ran"])
def test_a_clean_run_whose_bug_ran_without_its_checker_says_so(checkers: tuple[str, ...], calls: int,
                                                               said: bool) -> None:
    """rec-create-no-rd-lock (caught by ownership) injected, its code run 4 times, no finding
    (a made-up report, no CPU run): with ownership off (lockdep alone, or no checker) the report
    says the checker that catches it was off, so "no findings" says nothing of the bug; with
    ownership on, or when the bug never ran (the never-ran line covers that), it does not.
    `--inject rec-create-no-rd-lock --checkers lockdep` said "no findings" alone, exit 0."""
    from rmm_mp.stress.report import StressReport

    cfg = StressConfig(workload="lifecycle", cpus=2, seed=0, schedule="random", steps=3000, seconds=120,
                       inject=("rec-create-no-rd-lock",), checkers=checkers)
    report = StressReport(cfg, (), "budget", 1.0, {0: 1, 1: 1}, steps=3000,
                          bug_calls={"rec-create-no-rd-lock": calls})
    line = f"injected rec-create-no-rd-lock ran, but the checker that catches it, ownership (unlocked read), was off " \
           f"(checkers: {', '.join(checkers) or 'none'}), so \"no findings\" says nothing of the bug"
    assert (line in report.text().splitlines()) is said, report.text()


@pytest.mark.parametrize("checkers, said", [
    (("ownership",), False), (("invariants",), False), (("lockdep", "watchdog"), True),
], ids=["other-catcher-on", "catalogue-checker-on", "all-catchers-off"])
def test_a_clean_run_whose_bug_has_two_catchers_names_both_only_when_both_are_off(
        checkers: tuple[str, ...], said: bool) -> None:
    """rtt-create-parent-released-early, which invariants (rtt-refcount, the catalogue's checker)
    and ownership (unlocked write) each catch on their own, injected, its code run, no finding
    (a made-up report, no CPU run): with ownership on and invariants off the run tested the bug
    and no checker-off line is printed; with neither on, the line names both. Found by review:
    the line named only the catalogue's checker, so `--checkers ownership` was told the
    bug's checker was off."""
    from rmm_mp.stress.report import StressReport

    cfg = StressConfig(workload="rtts", cpus=2, seed=0, schedule="random", steps=3000, seconds=120,
                       inject=("rtt-create-parent-released-early",), checkers=checkers)
    report = StressReport(cfg, (), "budget", 1.0, {0: 1, 1: 1}, steps=3000,
                          bug_calls={"rtt-create-parent-released-early": 2})
    said_off = [line for line in report.text().splitlines() if "was off" in line or "were off" in line]
    expected = ["injected rtt-create-parent-released-early ran, but the checkers that catch it, invariants "
                "(rtt-refcount) and ownership (unlocked write), were off (checkers: lockdep, watchdog), so "
                "\"no findings\" says nothing of the bug"]
    assert said_off == (expected if said else []), report.text()


def test_a_clean_run_of_rd_refcount_plain_rmw_with_invariants_on_has_no_checker_off_line() -> None:
    """rd-refcount-plain-rmw injected, its code run, no finding, invariants the only checker on
    (a made-up report, no CPU run): the lost update breaks the rd-refcount invariant, which
    invariants reports on its own (`--checkers invariants --schedule random --seed 5` at step
    13,290; free-running within seconds), so the run tested the bug and no checker-off line is
    printed. With lockdep alone on, the line names ownership and invariants. Found by review:
    the bug's `also` was empty, so `--checkers invariants` was told the checker that catches
    it was off."""
    from rmm_mp.stress.report import StressReport

    def off_lines(checkers: tuple[str, ...]) -> list[str]:
        cfg = StressConfig(workload="lifecycle", cpus=2, seed=0, schedule="random", steps=3000, seconds=120,
                           inject=("rd-refcount-plain-rmw",), checkers=checkers)
        report = StressReport(cfg, (), "budget", 1.0, {0: 1, 1: 1}, steps=3000,
                              bug_calls={"rd-refcount-plain-rmw": 3})
        return [line for line in report.text().splitlines() if line.startswith("injected ")]

    assert off_lines(("invariants",)) == []
    assert off_lines(("lockdep",)) == [
        "injected rd-refcount-plain-rmw ran, but the checkers that catch it, ownership (unlocked read) and "
        "invariants (rd-refcount), were off (checkers: lockdep), so \"no findings\" says nothing of the bug"]


ALONE = ("; the run ended at a finding before it got there (`rmm-mp stress --inject map-unprotected-leaks-lock` "
         "runs it alone)")


@pytest.mark.parametrize("ended, interrupted, hint", [
    ("finding", False, ALONE),
    ("aborted", False, ALONE),
    ("budget", False, "; more --steps or --seconds may reach it"),
    ("interrupted", True, ""),
], ids=["finding", "aborted", "budget", "interrupted"])
def test_an_unreached_bug_of_the_runs_own_workload_gets_advice_that_fits_how_the_run_ended(
        ended: str, interrupted: bool, hint: str) -> None:
    """lock-two-unordered and map-unprotected-leaks-lock, both of the tables workload, injected
    together; the second's code never ran (made-up reports, no CPU run). When the first bug's
    finding ended the run (`--schedule random`, seed 0: step 87), no budget would have got
    there, so the line says the run ended at a finding and how to run the bug alone; it said
    "more --steps or --seconds may reach it", which only fits a run that spent its budget. An
    interrupted run gets no advice."""
    from rmm_mp.stress.findings import Finding
    from rmm_mp.stress.report import StressReport

    cfg = StressConfig(workload="tables", cpus=2, seed=0, schedule="random", steps=3000, seconds=120,
                       inject=("lock-two-unordered", "map-unprotected-leaks-lock"), checkers=("lockdep",))
    findings = (Finding("lockdep", "rule 2", "m", cpu=1, site="x.py:1 (f)", step=87),) if hint == ALONE else ()
    report = StressReport(cfg, findings, ended, 1.0, {0: 1, 1: 1}, steps=87, interrupted=interrupted,
                          bug_calls={"lock-two-unordered": 3})
    line = [t for t in report.text().splitlines() if t.startswith("injected ")]
    assert line == ["injected map-unprotected-leaks-lock never ran: this run made no call of the "
                    f"RMI_RTT_MAP_UNPROTECTED handler, so it tested nothing of the bug{hint}"], report.text()



def test_a_bugs_call_is_counted_in_the_segment_first_and_before_its_code_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """stress.bugs.install with both counters (a stress CPU's own ``calls`` and its count in the
    stress segment, ``publish``), for a made-up bug replacing a method of a class of its own: the
    segment's count, which outlives a killed CPU, comes first, and both before the buggy copy
    runs, so the segment is never short of the calls begun and its 0 proves the bug never ran on
    that CPU (StressReport.unreached). The own count came first (failed before this change)."""
    from rmm_mp.stress import bugs
    from rmm_mp.stress.probe import Patches

    seen: list[tuple[str, int]] = []
    calls: dict[str, int] = {}

    class Owner:
        def method(self) -> None:
            raise AssertionError("the bug's copy should run")

    def buggy(self: Owner) -> None:
        seen.append(("body", calls["made-up"]))

    monkeypatch.setitem(bugs.BUGS, "made-up", bugs.Bug("made-up", "m", "lockdep", "rule 1", "tables",
                                                       (Owner, "method"), buggy))
    probe = Patches()
    bugs.install(("made-up",), probe, calls, lambda name: seen.append(("segment", calls.get(name, 0))))
    try:
        Owner().method()
    finally:
        probe.restore()
    assert seen == [("segment", 0), ("body", 1)], seen
