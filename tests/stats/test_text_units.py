"""The text report's times in us: rmm_mp.workload.render_text.us, used by the latency, time split
and lock tables.

Scenario: integer nanoseconds are shown as microseconds with two decimals, rounded to the nearest
10 ns, a value ending in exactly 5 ns rounded up (docs/latency.md, "One clock"). Until 2026-11
the figure went through a float, so such a tie went up or down by the float's binary error
(15 ns read 0.01 us, 25 ns 0.03 us; 116,735 ns 116.73 us, 20,052,525 ns 20,052.53 us), and the
text could not be told from the JSON by one rule.
"""

from __future__ import annotations

import pytest

from rmm_mp.workload.render_text import us


@pytest.mark.parametrize(("ns", "shown"), [
    (0, "0.00"), (4, "0.00"), (5, "0.01"), (15, "0.02"), (25, "0.03"), (45, "0.05"), (1_234, "1.23"),
    (1_235, "1.24"), (1_236, "1.24"), (2_945, "2.95"), (116_735, "116.74"), (2_686_975, "2,686.98"),
    (20_052_525, "20,052.53"), (999_995, "1,000.00"), (2**63 - 1, "9,223,372,036,854,775.81")])
def test_us_rounds_to_the_nearest_10_ns_ties_up(ns: int, shown: str) -> None:
    assert us(ns) == shown


def test_us_is_exact_for_every_tie_below_a_millisecond() -> None:
    """Every value ending in 5 ns below 1 ms reads 5 ns above it: the rule holds, not a sample."""
    for ns in range(5, 1_000_000, 10):
        assert us(ns) == f"{(ns + 5) // 1000:,}.{(ns + 5) // 10 % 100:02d}", ns


@pytest.mark.parametrize(("ns", "shown"), [(-5, "-0.01"), (-7, "-0.01"), (-1_235, "-1.24")])
def test_us_of_a_negative_is_the_positive_with_a_sign(ns: int, shown: str) -> None:
    """No report figure is negative (a mean per call, a lock wait on a monotonic clock, the handler
    part clamped at 0), but a negative must not read as another number: through floor division
    -7 ns read -1.99 us (tens -1: -1 // 100 and -1 % 100)."""
    assert us(ns) == shown
