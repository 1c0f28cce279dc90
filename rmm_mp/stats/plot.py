"""Latency distributions as a PNG: one panel per call, one cumulative line per CPU.

Each panel shows, for one call, the share of calls that took at most x microseconds (log x),
drawn from the histogram buckets (stats.histogram): a step at each non-empty bucket's upper
edge, as the reported percentiles are. The y axis is a logit scale, so p50, p90, p99 and p99.9
sit evenly spaced and the tail is as visible as the median. With more than one CPU an "all"
line (black) sums them. A CPU whose flush was cut off (a half-written slot, which counts calls
its buckets do not hold) is drawn as shares of the calls its buckets hold, its legend entry
saying how many ("CPU 1: 10 of 510 in its histogram"), or, with none, as a legend entry alone
("CPU 1: none in its histogram"). Only the ``max_calls`` busiest calls get a panel; the
figure's title names the ones left out.

matplotlib is an optional dependency (the `plot` extra): it is imported only when a plot is
drawn, and its absence raises PlotUnavailable with the command that installs it. The figure is
drawn with the Agg canvas directly (no pyplot), so no global backend state is touched.

This module owns the picture. It must not read a machine.
"""

from __future__ import annotations

import math
from typing import Any

from rmm_mp.outpaths import replacing
from rmm_mp.stats import calls
from rmm_mp.stats.histogram import CallStats
from rmm_mp.stats.report import merged
from rmm_mp.words import count

MAX_CALLS = 12
COLUMNS = 3
INSTALL_HINT = "pip install 'rmm-mp[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed, so no PNG can be drawn."""


def require_matplotlib() -> None:
    """Raise PlotUnavailable now if a plot could not be drawn (for checking before a long run)."""
    _matplotlib()


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(f"the latency plot needs matplotlib, which is not installed: {INSTALL_HINT}") from exc
    return Figure, FigureCanvasAgg


def _formatters() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker


def cdf(s: CallStats) -> tuple[list[float], list[float]]:
    """(x in us, share of calls <= x) at the upper edge of each non-empty bucket, capped at max
    (CallStats.upper_edge, as the reported percentiles are). The shares are of the calls the
    buckets hold: a slot whose flush was cut off (CallStats.half_written) counts calls none of
    them holds, and as shares of its count its curve, and "all" beside it, stopped short of 1."""
    xs: list[float] = []
    ys: list[float] = []
    bucketed = sum(s.buckets)
    seen = 0
    for bucket, n in enumerate(s.buckets):
        if n:
            seen += n
            xs.append(s.upper_edge(bucket) / 1000)
            ys.append(seen / bucketed)
    return xs, ys


def busiest(stats: dict[int, dict[int, CallStats]], max_calls: int) -> tuple[list[int], list[int]]:
    """Slots to plot (most calls first, then by name) and the slots left out."""
    total = merged(stats)
    order = sorted(total, key=lambda slot: (-total[slot].count, calls.name(slot)))
    return order[:max_calls], order[max_calls:]


def decades(low_us: float, high_us: float) -> tuple[float, float]:
    """x limits: whole powers of ten around [low_us, high_us], at least one decade apart."""
    lo = 10.0 ** math.floor(math.log10(max(low_us, 1e-3)))
    hi = 10.0 ** math.ceil(math.log10(max(high_us, 1e-3)))
    return lo, hi if hi > lo else lo * 10


def _panel(ax: Any, slot: int, stats: dict[int, dict[int, CallStats]], total: CallStats) -> None:
    lines: list[tuple[str, CallStats, str | None]] = [(f"CPU {cpu}", stats[cpu][slot], None) for cpu in sorted(stats)
                                                      if slot in stats[cpu]]
    if len(lines) > 1:
        lines.append(("all", total, "black"))
    low = high = 0.0
    for label, s, color in lines:
        xs, ys = cdf(s)
        if not xs:
            # A CPU process killed during its first flush of this call leaves a slot that counts
            # calls none of its buckets holds (CallStats.half_written; the report warns of it):
            # no curve, but a legend entry, so that the CPU is not silently missing.
            ax.plot([], [], label=f"{label}: none in its histogram", color=color, linewidth=1.0)
            continue
        bucketed = sum(s.buckets)
        if bucketed != s.count:
            label += f": {bucketed:,} of {s.count:,} in its histogram"
        # Start the step just below the first edge with nothing below it, so a single bucket still shows.
        ax.step([xs[0] * 0.97, *xs], [1e-4, *ys], where="post", label=label, color=color, linewidth=1.0)
        low, high = min(low or xs[0], xs[0] * 0.97), max(high, xs[-1])
    ax.set_xscale("log")
    ax.set_xlim(*decades(low, high))
    # Plain labels at powers of ten only: minor labels of a narrow log axis overlap.
    ax.xaxis.set_major_formatter(_formatters().FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(_formatters().NullFormatter())
    ax.set_yscale("logit", nonpositive="clip")
    ax.set_ylim(0.05, 0.9995)
    ax.set_yticks([0.1, 0.5, 0.9, 0.99, 0.999])
    ax.set_yticklabels(["p10", "p50", "p90", "p99", "p99.9"])
    ax.set_title(f"{calls.name(slot)} ({total.count:,} call{'s' * (total.count != 1)})", fontsize=9)
    ax.set_xlabel("latency (us)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", alpha=0.3)
    ax.xaxis.grid(True, which="minor", alpha=0.15)
    ax.legend(fontsize=6, loc="lower right")


def write_plot(stats: dict[int, dict[int, CallStats]], path: str, title: str = "",
               max_calls: int = MAX_CALLS) -> list[str]:
    """Draw the busiest ``max_calls`` calls of ``stats`` into the PNG ``path``; the names left out.

    Raises:
        PlotUnavailable: matplotlib is not installed.
        ValueError: ``stats`` holds no calls.
    """
    figure_cls, canvas_cls = _matplotlib()
    shown, left_out = busiest(stats, max_calls)
    if not shown:
        raise ValueError("no calls were recorded: there is no latency to plot")
    total = merged(stats)
    rows = -(-len(shown) // COLUMNS)
    columns = min(COLUMNS, len(shown))
    # Constrained layout makes room for the suptitle however many lines it wraps to.
    fig = figure_cls(figsize=(4.2 * columns, 3.2 * rows + 0.8), dpi=100, layout="constrained")
    canvas_cls(fig)
    for n, slot in enumerate(shown):
        _panel(fig.add_subplot(rows, columns, n + 1), slot, stats, total[slot])
    fig.suptitle(heading(title, left_out), fontsize=9, wrap=True)
    with replacing(path) as temp:
        fig.savefig(temp, format="png")
    return [calls.name(slot) for slot in left_out]


def heading(title: str, left_out: list[int]) -> str:
    """The figure's title: the run, what the curves show, and the calls without a panel."""
    text = title + ("\n" if title else "") + "share of calls at most x us (histogram bucket upper edges)"
    if left_out:
        names = ", ".join(calls.name(slot) for slot in left_out)
        # "At most as often", not "fewer times": busiest() breaks a tie in counts by name.
        text += (f"\nno panel for {count(len(left_out), 'more call')}, each made at most as often as those shown: "
                 f"{names}")
    return text
