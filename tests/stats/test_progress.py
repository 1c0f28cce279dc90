"""The progress bar (rmm_mp/stats/progress.py): per-CPU rates from the published call counts,
one redrawn line when enabled, nothing when not."""

from __future__ import annotations

import io
import os

import pytest

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.stats.progress import Progress


def test_rates_come_from_published_counts() -> None:
    """After CPU 0 publishes 3 calls and CPU 1 none, a tick 0.5 s in shows 3 calls in all,
    6 calls/s, and per CPU 6 and 0 calls/s; a disabled bar writes nothing."""
    with Machine.create("host", cpus=2) as m:
        cpu = m.cpu(0)
        for _ in range(3):
            cpu.smc(RmiFid.RMI_VERSION, 0x10000)
        cpu.flush_statistics()
        out = io.StringIO()
        bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True, width=120)
        assert bar.counts() == {0: 3, 1: 0}
        bar.tick(0.5)
        bar.close()
        text = out.getvalue()
        assert text.startswith("\r[") and text.endswith("\n")
        assert "  3 records  6/s  per CPU 6 0" in text
        quiet = io.StringIO()
        silent = Progress(m, [0, 1], 10.0, stream=quiet, enabled=False)
        silent.tick(0.5)
        silent.close()
        assert quiet.getvalue() == ""


def test_time_counts_from_the_start_barrier() -> None:
    """With `started`, the line says the CPU processes are starting until it is true, and the
    run's time counts from the last tick before that (the run's length excludes start-up)."""
    with Machine.create("host", cpus=2) as m:
        out = io.StringIO()
        ready = [False]
        bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True, started=lambda: ready[0], width=120)
        bar.tick(0.5)
        assert out.getvalue().startswith("\rstarting 2 CPU processes ...  0.5 s")
        ready[0] = True
        bar.tick(1.0)
        bar.tick(3.0)
        lines = out.getvalue().split("\r")[1:]
        assert lines[1].startswith("[#.......................]   0.5/10 s  0 records")
        assert lines[2].startswith("[######..................]   2.5/10 s")



def test_the_starting_line_says_how_many_cpu_processes_are_ready() -> None:
    """With `ready`, the starting line counts the CPU processes at the start barrier, so that a
    slow start-up (tens of seconds for 64 CPUs on 2 cores) reads apart from a stuck one; the
    count never exceeds the CPUs (the barrier's word may count past them)."""
    with Machine.create("host", cpus=2) as m:
        out = io.StringIO()
        up = [1]
        bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True, started=lambda: False, width=120,
                       ready=lambda: up[0])
        bar.tick(0.5)
        up[0] = 3
        bar.tick(1.0)
        lines = out.getvalue().split("\r")[1:]
        assert lines[0].startswith("starting 2 CPU processes: 1 of 2 ready ...  0.5 s"), lines
        assert lines[1].startswith("starting 2 CPU processes: 2 of 2 ready ...  1.0 s"), lines


def test_the_line_fits_the_terminal() -> None:
    """A line that wrapped could not be redrawn in place. At 120 columns a 4-CPU run's line has
    the wide bar; at 80 the narrow bar and every CPU's rate; at 56 the rates that fit, then
    "...". No drawn line is longer than its width, and a shorter line blanks what is left of
    the longer one before it, no further than the width."""
    with Machine.create("host", cpus=4) as m:
        out = io.StringIO()
        bar = Progress(m, [0, 1, 2, 3], 10.0, stream=out, enabled=True)
        for width, elapsed in ((120, 0.5), (80, 1.0), (56, 1.5)):
            bar.width = width
            bar.tick(elapsed)
        bar.close()
        wide, narrow, cut = out.getvalue().rstrip("\n").split("\r")[1:]
        assert wide == "[#.......................]   0.5/10 s  0 records  0/s  per CPU 0 0 0 0", wide
        assert narrow.rstrip() == "[#.........]   1.0/10 s  0 records  0/s  per CPU 0 0 0 0", narrow
        assert len(narrow) == len(wide)     # blanks over the rest of the longer line
        assert cut.rstrip() == "[#.........]   1.5/10 s  0 records  0/s  per CPU 0 0 ...", cut
        assert len(cut) == 56               # ... but not past the (narrower) width


def test_a_run_without_latency_recording_says_its_records_are_not_counted() -> None:
    """The CPUs count their records (calls, REC runs, host steps) in their latency histograms:
    with --no-latency the bar shows the time and says, in the word the bar uses for them,
    that the records are not counted and so there are no rates, instead of 0 records at 0/s.
    It said "calls not counted": not the bar's figure, and not why the rates were missing."""
    with Machine.create("host", cpus=2) as m:
        out = io.StringIO()
        bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True, width=120, counted=False)
        bar.tick(0.5)
        bar.close()
        assert out.getvalue() == ("\r[#.......................]   0.5/10 s  records not counted (--no-latency), "
                                  "so no rates\n")
    for width, shown in ((60, "  records not counted (--no-latency)"), (45, "")):
        with Machine.create("host", cpus=2) as m:
            out = io.StringIO()
            bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True, width=width, counted=False)
            bar.tick(0.5)
            assert out.getvalue() == f"\r[..........]   0.5/10 s{shown}", (width, out.getvalue())


def test_a_narrow_line_leaves_out_whole_figures() -> None:
    """At 42 columns the line was cut in the middle of a figure ("... 192,973 calls  38" for a
    rate of 385.9k/s), which reads as a smaller number, and at 50 in the middle of "per CPU";
    now a figure that does not fit is left out whole, as the per-CPU rates always were."""
    with Machine.create("host", cpus=2) as m:
        out = io.StringIO()
        bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True, width=42)
        bar.counts = lambda: {0: 115_973, 1: 77_000}    # type: ignore[method-assign]
        bar.tick(0.5)
        bar.width = 50
        bar.tick(1.0)
        first, second = out.getvalue().split("\r")[1:]
        assert first.rstrip() == "[..........]   0.5/10 s  192,973 records", first
        assert second.rstrip() == "[#.........]   1.0/10 s  192,973 records  0/s", second


def test_a_terminal_of_no_known_width_is_not_taken_for_a_narrow_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pseudo-terminal nobody sized (`script`, `docker run -t`) reports 0 columns; the bar
    took that for its narrowest width, 40, and cut every line there. Now 0 means unknown: the
    width comes from COLUMNS or the default, as shutil.get_terminal_size gives it."""
    monkeypatch.setenv("COLUMNS", "120")
    main, sub = os.openpty()
    try:
        with os.fdopen(sub, "w", closefd=False) as stream, Machine.create("host", cpus=1) as m:
            assert os.get_terminal_size(sub).columns == 0
            assert Progress(m, [0], 10.0, stream=stream, enabled=True)._width() == 119
    finally:
        os.close(main)
        os.close(sub)


def test_the_count_is_labelled_records_since_it_is_not_calls_alone() -> None:
    """CPU 0 makes 2 RMI calls and records one host activity step (HOST_RUN's slot): the bar's
    count is 3, every record of the latency tables, as the report header's "N calls, REC runs
    and host steps" is. It was labelled "3 calls", which claimed a call that was never made
    (in a quickstart run some 30 % more calls than were made); now "3 records"."""
    from rmm_mp.stats import calls
    with Machine.create("host", cpus=1) as m:
        cpu = m.cpu(0)
        for _ in range(2):
            cpu.smc(RmiFid.RMI_VERSION, 0x10000)
        assert cpu.recorder is not None
        cpu.recorder.record(calls.HOST_BASE, 1_000, 0, 0, False)
        cpu.flush_statistics()
        out = io.StringIO()
        bar = Progress(m, [0], 10.0, stream=out, enabled=True, width=120)
        bar.tick(0.5)
        text = out.getvalue()
        assert "  3 records  6/s  per CPU 6" in text, text
        assert " calls" not in text, text


def test_a_count_of_one_reads_in_the_singular() -> None:
    """A bar whose CPUs have published one record between them says "1 record", not "1 records"
    (the report's header says "1 iteration" and "1 CPU" likewise); 2 read "2 records"."""
    with Machine.create("host", cpus=2) as m:
        out = io.StringIO()
        bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True, width=120)
        bar.counts = lambda: {0: 1, 1: 0}    # type: ignore[method-assign]
        bar.tick(0.5)
        bar.counts = lambda: {0: 1, 1: 1}    # type: ignore[method-assign]
        bar.tick(1.0)
        first, second = out.getvalue().split("\r")[1:]
        assert "0.5/10 s  1 record  " in first, first
        assert "1.0/10 s  2 records  " in second, second


def test_the_run_s_length_is_shown_with_its_digits() -> None:
    """A run of --seconds 100000.5 reads "/100000.5 s" on the bar, as in the report's header and
    `workloads show` (10 significant digits), not %g's "/100000 s"."""
    with Machine.create("host", cpus=1) as m:
        out = io.StringIO()
        bar = Progress(m, [0], 100_000.5, stream=out, enabled=True, width=120)
        bar.tick(0.5)
        bar.close()
        assert "   0.5/100000.5 s  " in out.getvalue(), out.getvalue()
