"""Everything a run's report is turned into: text, JSON, CSV and PNG (the runner's one entry point).

    format_report(report) -> str        the text printed at the end of `rmm-mp run` (render_text)
    to_json(report) -> dict             the JSON document, docs/report-schema.json (render_json)
    write_json / write_csv(report, path)
    write_plot(report, path)            latency distributions as a PNG (stats.plot); raises
                                        PlotUnavailable when matplotlib is missing
    check_plot()                        raises PlotUnavailable at once: call it while validating
                                        --plot, before anything runs
    warnings(report) -> list[str]       the WARNING lines of both the text and the JSON

Trace files are not made from a report (a report keeps no ring contents): see
stats.trace_export.write_trace. docs/latency.md explains every figure.

This module owns the public surface of rendering. It must not run anything or touch a machine.
"""

from __future__ import annotations

from rmm_mp.stats import plot
from rmm_mp.stats.plot import PlotUnavailable
from rmm_mp.words import count as _count
from rmm_mp.workload.render_json import SCHEMA, to_json, warnings, write_csv, write_json
from rmm_mp.workload.render_text import format_report
from rmm_mp.workload.report import RunReport

__all__ = ["SCHEMA", "PlotUnavailable", "check_plot", "format_report", "to_json", "warnings", "write_csv",
           "write_json", "write_plot"]


def check_plot() -> None:
    """Raise PlotUnavailable if matplotlib is missing, so `--plot` fails before the run, not after."""
    plot.require_matplotlib()


def write_plot(report: RunReport, path: str) -> None:
    """Latency distributions of the busiest calls per CPU as a PNG (stats.plot).

    Raises:
        PlotUnavailable: matplotlib is not installed (the message says how to install it).
        ValueError: the run recorded no latency (--no-latency, or no call was made).
    """
    if not report.latency_recorded:
        raise ValueError("latency was not recorded (--no-latency): there is nothing to plot")
    title = (f"rmm-mp run {report.workload} on {report.platform}: {_count(report.cpus, 'CPU')}, seed {report.seed}, "
             f"{report.elapsed_s:.2f} s")
    plot.write_plot(report.stats, path, title)
