"""The latency PNG (rmm_mp/stats/plot.py) and render.write_plot.

Scenarios: a report's plot is a real PNG of some size; with more calls than panels only the
busiest get one and the rest are named; the cumulative line steps at bucket upper edges (capped
at the maximum) and reaches 1; x limits span whole decades; without matplotlib (its import made
to fail) PlotUnavailable says how to install it and no file is written; a report without
latency cannot be plotted; a call a killed flush left with no bucketed call is still plotted;
a CPU's curve, and "all", reach 1 when some of its calls are in no bucket.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from report_samples import hand_built, stats_of
from rmm_mp.stats import calls, histogram, plot
from rmm_mp.stats.histogram import CallStats
from rmm_mp.workload import render

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_plot_makes_a_png(tmp_path: Path) -> None:
    """A two-CPU report with every kind of call becomes a PNG of more than 20 kB."""
    path = tmp_path / "latency.png"
    render.write_plot(hand_built(), str(path))
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000
    render.check_plot()  # matplotlib is there: no error


def test_title_gives_the_runs_length_as_the_text_report_does(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.03 s run is titled '0.03 s' (it was '0.0 s'), as the text header says 'ran 0.03 s'."""
    from dataclasses import replace
    titles: list[str] = []
    monkeypatch.setattr(plot, "write_plot", lambda stats, path, title: titles.append(title) or [])
    render.write_plot(replace(hand_built(), elapsed_s=0.031), str(tmp_path / "x.png"))
    assert titles[0].endswith(", 0.03 s")


def test_only_the_busiest_calls_get_a_panel(tmp_path: Path) -> None:
    """Five calls with 5..1 calls each and room for three: the two quietest are left out, by name."""
    stats = {0: {slot: stats_of(slot, [1000 * slot + 500] * (6 - slot)) for slot in range(1, 6)}}
    shown, left_out = plot.busiest(stats, 3)
    assert shown == [1, 2, 3] and left_out == [4, 5]
    path = tmp_path / "few.png"
    assert plot.write_plot(stats, str(path), "t", max_calls=3) == [calls.name(4), calls.name(5)]
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_heading_names_the_calls_without_a_panel() -> None:
    """The title says how many calls got no panel and names them, in English for one as for
    several (it used to say "20 calls with fewer calls")."""
    assert plot.heading("run", []) == "run\nshare of calls at most x us (histogram bucket upper edges)"
    several = plot.heading("run", [4, 5]).splitlines()[-1]
    assert several == (f"no panel for 2 more calls, each made at most as often as those shown: "
                       f"{calls.name(4)}, {calls.name(5)}")
    assert plot.heading("", [4]).splitlines()[-1].startswith("no panel for 1 more call, each")


def test_heading_does_not_say_fewer_of_a_call_left_out_at_a_tie() -> None:
    """Two calls made 159 times each and room for one panel: one is left out although it was
    made as often as the one shown (a quickstart run left out RSI_HOST_CALL, 159 calls, and
    showed EXIT_HOST_CALL, 159 calls, under a title saying the ones left out were made fewer
    times)."""
    stats = {0: {slot: stats_of(slot, [1000] * 159) for slot in (1, 2)}}
    shown, left_out = plot.busiest(stats, 1)
    assert (shown, left_out) == ([1], [2])
    line = plot.heading("run", left_out).splitlines()[-1]
    assert "fewer" not in line and line.startswith("no panel for 1 more call, each made at most as often as")


def test_cdf_steps_at_bucket_upper_edges() -> None:
    """Samples 1000 x3 and 2000 x1: steps at 1.007 us (bucket [992, 1007]) and at the max 2.0 us."""
    xs, ys = plot.cdf(stats_of(0, [1000, 1000, 1000, 2000]))
    assert xs == [1.007, 2.0] and ys == [0.75, 1.0]
    assert plot.decades(1.007, 2.0) == (1.0, 10.0)
    assert plot.decades(0.5, 150.0) == (0.1, 1000.0)
    assert plot.decades(10.0, 10.0) == (10.0, 100.0)


def test_cdf_reaches_the_maximum_in_the_open_last_bucket() -> None:
    """Calls of 2^41 ns and more share the last bucket with the values just below 2^41, so that
    bucket's nominal upper edge is below them: the step is at the exact maximum, as
    CallStats.percentile reports it, not at 2^41 - 1 ns (which drew a 2^42 ns call as 2^41)."""
    stats = stats_of(0, [1000, 1 << 42])
    xs, ys = plot.cdf(stats)
    assert xs == [1.007, (1 << 42) / 1000] and ys == [0.5, 1.0]
    assert xs[-1] * 1000 == stats.percentile(100)


def test_missing_matplotlib_raises_plot_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With matplotlib unimportable the error names the extra to install, and nothing is written."""
    # None in sys.modules makes an import fail; submodules an earlier test imported are cached
    # under their own names, so every one of them is blocked too.
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    path = tmp_path / "latency.png"
    with pytest.raises(render.PlotUnavailable, match=r"pip install 'rmm-mp\[plot\]'") as info:
        render.write_plot(hand_built(), str(path))
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(render.PlotUnavailable, match="matplotlib"):
        render.check_plot()
    assert not path.exists()


def test_a_report_without_latency_cannot_be_plotted(tmp_path: Path) -> None:
    """A report of a run with --no-latency cannot be plotted: a ValueError naming --no-latency; the
    plotter given no calls at all says so."""
    with pytest.raises(ValueError, match="--no-latency"):
        render.write_plot(hand_built(latency_recorded=False, stats={}), str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="no calls"):
        plot.write_plot({}, str(tmp_path / "x.png"))


def _first_flush_cut_off(slot: int, samples: list[int], monkeypatch: pytest.MonkeyPatch,
                         flushed: tuple[int, ...] = ()) -> CallStats:
    """The slot a CPU process leaves when it is killed in its first flush of ``slot`` (after one
    of ``flushed``, if any), after the count, sum and maximum were written and before any bucket
    was (docs/latency.md, "Flushing")."""
    region = memoryview(bytearray(histogram.REGION_BYTES))
    recorder = histogram.Recorder(region)
    if flushed:
        for total in flushed:
            recorder.appends[slot](total)
        recorder.flush(0)
    for total in samples:
        recorder.appends[slot](total)

    class Killed(Exception):
        """The process ending there, as far as the shared region can tell."""

    def killed(*_: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(histogram, "_add_to_buckets", killed)
        with pytest.raises(Killed):
            recorder.flush(0)
    recorder.release()
    return histogram.read_slot(region, slot)


def test_a_slot_whose_first_flush_was_cut_off_is_still_plotted(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1 was killed during its first flush of 500 DELEGATE calls: the slot counts them and
    its histogram holds none (the report warns of it). The plot still gets drawn, with CPU 0's and
    the "all" curve in that panel, and a panel whose only CPU has no bucketed call says so; the
    empty curve made write_plot fail with an IndexError, which no caller expects (rmm-mp run
    ended with a traceback, before its JSON and text report)."""
    torn = _first_flush_cut_off(1, [5000] * 500, monkeypatch)
    assert torn.count == 500 and sum(torn.buckets) == 0
    assert plot.cdf(torn) == ([], [])
    stats = {0: {1: stats_of(1, [1000] * 10), 2: stats_of(2, [900] * 5)}, 1: {1: torn}}
    path = tmp_path / "torn.png"
    render.write_plot(hand_built(stats=stats), str(path))
    assert path.read_bytes()[:8] == PNG_MAGIC
    only_torn = tmp_path / "only-torn.png"
    plot.write_plot({0: {1: torn}}, str(only_torn), "t")
    assert only_torn.read_bytes()[:8] == PNG_MAGIC


def test_curves_reach_one_when_a_flush_left_calls_outside_the_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1 flushed 10 DELEGATE calls of 1 us, then was killed in its next flush of 500 more: the
    slot counts 510 calls and its buckets hold 10. Its curve and the "all" curve (CPU 0's 10
    calls of 2 us beside them) are shares of the calls in the buckets, so both end at 1; as
    shares of the counts they ended at 10/510 and 20/520, under the panel's 0.05 floor, so that
    the "all" line of the panel could not be seen. The legend says how many of the CPU's calls
    its histogram holds."""
    torn = _first_flush_cut_off(1, [5000] * 500, monkeypatch, flushed=(1000,) * 10)
    assert torn.count == 510 and sum(torn.buckets) == 10 and torn.half_written()
    assert plot.cdf(torn) == ([1.007], [1.0])
    both = torn.merged(stats_of(1, [2000] * 10))
    assert plot.cdf(both)[1] == [0.5, 1.0]
    figure_cls, _ = plot._matplotlib()
    ax = figure_cls().add_subplot()
    plot._panel(ax, 1, {0: {1: stats_of(1, [2000] * 10)}, 1: {1: torn}}, both)
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["CPU 0", "CPU 1: 10 of 510 in its histogram", "all: 20 of 520 in its histogram"], labels
    assert [list(line.get_ydata())[-1] for line in ax.get_lines()] == [1.0, 1.0, 1.0]
