"""The parent's close of the machine after a run (run.closed): when it raises, the run's report
is still returned and says what happened, and no shared memory is left without a word."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmm_mp import Machine
from rmm_mp.hw import segment
from rmm_mp.workload import render, render_json, spec
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload

pytestmark = pytest.mark.multiprocess


def _run(tmp_path: Path, machines: list[Machine]) -> render.RunReport:
    """A few delegate-churn steps on one CPU; ``machines`` gets the run's machine."""
    path = tmp_path / "w.toml"
    path.write_text("iterations = 3\ncpus = 1\nactivities = { delegate-churn = 1 }\n")
    return run_workload(resolve(spec.load(str(path))), RunOptions(progress=False), machines.append)


def _segments(machine: Machine) -> list[str]:
    return [p for p in (segment.segment_path(machine.name, part) for part in segment.PARTS) if os.path.lexists(p)]


def test_a_close_that_raises_keeps_the_report_and_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine.close raises once (an unlink refused) after a healthy run: run_workload returns
    the report, which is OK with a warning naming the failure, and the machine's segments are
    gone all the same (run.closed unlinks them again)."""
    real = Machine.close
    calls: list[Machine] = []

    def refusing(self: Machine) -> None:
        calls.append(self)
        if len(calls) == 1:
            raise PermissionError(13, "Permission denied", "/dev/shm/x.ctl")
        real(self)

    monkeypatch.setattr(Machine, "close", refusing)
    machines: list[Machine] = []
    report = _run(tmp_path, machines)
    monkeypatch.setattr(Machine, "close", real)
    try:
        warned = [w for w in render_json.warnings(report) if "closing the machine" in w]
        assert len(warned) == 1 and "PermissionError" in warned[0] and "removed all the same" in warned[0]
        assert report.ok, report.problems
        assert _segments(machines[0]) == []
        text = render.format_report(report)
        assert "WARNING: closing the machine after the run failed (PermissionError" in text
        assert all(len(line) <= 118 for line in text.splitlines())
    finally:
        machines[0].close()


def test_a_close_that_leaves_segments_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine.close raises every time and the segments cannot be unlinked: the report is still
    returned, not OK, with a problem naming each file left and how to remove it."""
    real, unlink_parts = Machine.close, segment.unlink_parts

    def refusing(self: Machine) -> None:
        raise PermissionError(13, "Permission denied", "/dev/shm/x.ctl")

    monkeypatch.setattr(Machine, "close", refusing)
    monkeypatch.setattr(segment, "unlink_parts", lambda prefix: None)
    machines: list[Machine] = []
    try:
        report = _run(tmp_path, machines)
        left = _segments(machines[0])
    finally:
        monkeypatch.setattr(Machine, "close", real)
        monkeypatch.setattr(segment, "unlink_parts", unlink_parts)
        for machine in machines:
            machine.close()
    assert left
    assert not report.ok
    problem, = [p for p in report.problems if "closing the machine" in p]
    assert all(path in problem for path in left) and "rmm-mp clean" in problem
    assert "result: FAILED: 1 problem" in render.format_report(report)
    assert _segments(machines[0]) == []
