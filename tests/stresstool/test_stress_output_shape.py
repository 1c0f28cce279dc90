"""The shape of `rmm-mp stress`'s text a new user met: the shrink progress line's cut finding, the
summary line's width, and the report's last line (its verdict) for each outcome.
Made-up reports: no CPU runs."""

from __future__ import annotations

import pytest

from rmm_mp.printable import columns
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.report import StressReport

WIDTH = 118


def test_the_shrink_progress_line_cuts_the_finding_at_a_word_with_an_ellipsis() -> None:
    """`  shrink attempt N: FINDING (verdict)`: a finding longer than 100 characters was cut at
    the 100th, mid-word and with nothing to say it was cut ("... RTT[L1] 0x8009" read as the
    whole address). Now at the last word that fits, then "...". Failed before: no "...", cut mid-word."""
    from rmm_mp.stress.cli import _brief

    message = ("CPU 1 waits for RTT[L1] 0x80090000, which it holds itself: taken again in this call, or leaked "
               "by an earlier one")
    report = StressReport(StressConfig(schedule="random"), (Finding("watchdog", "leaked-lock", message, cpu=1,
                                                                    step=12345),), "finding", 1.0, {0: 1})
    headline = report.findings[0].headline()
    assert len(headline) > 100
    brief = _brief(report)
    assert len(brief) <= 100 and brief.endswith("..."), brief
    kept = brief[:-3]
    assert headline.startswith(kept) and headline[len(kept)] == " " and not kept.endswith(" "), brief
    short = StressReport(StressConfig(schedule="random"), (Finding("lockdep", "rule 2", "m", cpu=1, step=3),),
                         "finding", 1.0, {0: 1})
    assert _brief(short) == short.findings[0].headline()


def _long_report(**kwargs: object) -> StressReport:
    cfg = StressConfig(workload="tables", cpus=8, seed=3, schedule="random", steps=3000,
                       inject=("lock-two-unordered", "map-unprotected-leaks-lock"),
                       checkers=("lockdep", "ownership", "watchdog", "invariants"), quiescent_every=50)
    return StressReport(cfg, (), "budget", 12.34, {c: 40 for c in range(6)}, steps=3088, switches=412,
                        preemptions=120, quiescent_checks=61, startup_s=3.2, unreported=(6, 7),
                        unreported_ops={6: 7, 7: 0}, bug_calls={"lock-two-unordered": 3,
                                                                "map-unprotected-leaks-lock": 1},
                        **kwargs)  # type: ignore[arg-type]


def test_the_summary_line_is_wrapped_between_phrases_at_118_columns() -> None:
    """The summary line ran to 187-234 columns in real runs, where `rmm-mp run`, `workloads show`
    and `platform show` keep to 118: it is wrapped after a phrase's ';', later lines indented by 4,
    and read together the lines give the summary whole. Failed before: one line past 118."""
    report = _long_report()
    summary = report.summary()
    assert columns(summary) > WIDTH
    lines = report.text().splitlines()
    n = 1
    while lines[n].startswith("    "):
        n += 1
    head = lines[:n]
    assert len(head) > 1, lines
    assert all(columns(line) <= WIDTH for line in head), head
    assert all(line.startswith("    ") and not line.startswith("     ") for line in head[1:]), head
    assert all(line.endswith(";") for line in head[:-1]), head
    assert " ".join(line.strip() for line in head) == summary


def test_a_short_summary_stays_one_line() -> None:
    report = StressReport(StressConfig(checkers=("lockdep",)), (), "time", 1.0, {0: 3})
    assert columns(report.summary()) <= WIDTH
    assert report.text().splitlines()[0] == report.summary()


def _last(report: StressReport) -> str:
    return report.text().splitlines()[-1]


@pytest.mark.parametrize("extra", [{}, {"not_done": ("invariants not checked at the end: interrupted (SIGTERM)",)}])
def test_the_last_line_says_an_interrupted_run_was_interrupted(extra: dict[str, object]) -> None:
    """An interrupted run with no finding (exit status 1) ended "no findings", or a `not done:` or
    `injected ... never ran` line after it; `rmm-mp run` ends with its verdict (`result: FAILED:
    interrupted`). Its last line is now the verdict, and says the run was interrupted, by which
    signal. Failed before: the last line was "no findings" or a line after it."""
    cfg = StressConfig(workload="tables", schedule="random", steps=3000,
                       inject=("lock-two-unordered", "map-unprotected-leaks-lock"))
    report = StressReport(cfg, (), "interrupted", 1.0, {0: 4}, steps=87, interrupted=True, interrupted_by="SIGTERM",
                          bug_calls={"lock-two-unordered": 3}, **extra)  # type: ignore[arg-type]
    last = _last(report)
    assert last.startswith("no findings, but the run was interrupted (SIGTERM)") and "no pass" in last, report.text()
    assert any(line.startswith("injected map-unprotected-leaks-lock never ran") for line in
               report.text().splitlines()), report.text()


def test_the_last_line_of_an_interrupted_run_that_completed_nothing_says_it_was_interrupted() -> None:
    """Failed before: "no findings, but no operation completed: nothing was tested", with no word
    of the interrupt."""
    report = StressReport(StressConfig(), (), "interrupted", 0.4, {}, interrupted=True, interrupted_by="Ctrl-C")
    last = _last(report)
    assert "interrupted (Ctrl-C)" in last and "nothing was tested" in last, report.text()


@pytest.mark.parametrize("outcome", ["none", "found", "interrupted", "stopped", "stopped-idle", "interrupted-found"])
def test_a_script_reading_the_last_line_gets_the_outcome(outcome: str) -> None:
    """The word a script reads off the report's last line, for each outcome, with `not done:` and
    `injected ... never ran` lines about: "no findings" alone for a pass; "interrupted" or
    "stopped" in a run cut short; never "no findings" alone with a finding. Failed before for the
    interrupted and stopped outcomes (a `not done:` or `injected` line came last)."""
    cfg = StressConfig(workload="tables", schedule="random", steps=3000,
                       inject=("lock-two-unordered", "map-unprotected-leaks-lock"))
    found = (Finding("lockdep", "rule 2", "m", cpu=1, site="x.py:1 (f)", step=87),)
    ops = {} if outcome == "stopped-idle" else {0: 4}
    findings = found if "found" in outcome else ()
    ended = {"none": "budget", "found": "finding", "interrupted": "interrupted", "stopped": "stopped",
             "stopped-idle": "stopped", "interrupted-found": "finding"}[outcome]
    report = StressReport(cfg, findings, ended, 1.0, ops, steps=87, interrupted="interrupted" in outcome,
                          interrupted_by="SIGTERM" if "interrupted" in outcome else "",
                          not_done=("CPU 1 was killed while starting up",), bug_calls={"lock-two-unordered": 3})
    last = _last(report)
    if outcome == "none":
        assert last == "no findings", report.text()
    elif outcome in ("found", "interrupted-found"):
        assert not last.startswith("no findings"), report.text()
    else:
        assert last.startswith("no findings, but") and outcome.split("-")[0] in last, report.text()
