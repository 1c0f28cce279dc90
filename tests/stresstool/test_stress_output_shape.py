"""The shape of `rmm-mp stress`'s text a new user met: the shrink progress line's cut finding, the
summary line's width.
Made-up reports: no CPU runs."""

from __future__ import annotations

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
