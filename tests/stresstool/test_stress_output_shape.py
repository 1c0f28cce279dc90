"""The shape of `rmm-mp stress`'s text a new user met: the shrink progress line's cut finding.
Made-up reports: no CPU runs."""

from __future__ import annotations

from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.report import StressReport


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
