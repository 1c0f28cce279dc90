"""The parent's close of the machine after a run (run.closed): when it raises, the run's report
is still returned and says what happened, and no shared memory is left without a word."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmm_mp import Machine
from rmm_mp import machine as machine_module
from rmm_mp.hw import reaper, segment
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


def test_a_close_whose_unlink_is_refused_is_finished_and_left_to_the_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every unlink of the machine's segments is refused (PermissionError): close() raises it, but
    the machine is closed all the same, out of the at-exit list (machine._live), so that the
    process's exit hook does not close it again; its segments are still registered with the
    reaper, which unlinks them when the process ends. Before, the machine stayed open and in
    _live, and the exit hook's close failed the same way: a traceback after the report."""
    def refusing(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    m = Machine.create("host", cpus=1)
    monkeypatch.setattr(segment, "_unlink_quietly", refusing)
    try:
        with pytest.raises(PermissionError):
            m.close()
        assert m not in machine_module._live and repr(m).endswith(" closed>"), repr(m)
        assert m.name in reaper.registered(), "the segments left must stay the reaper's to unlink"
        m.close()   # idempotent: nothing is tried again
    finally:
        monkeypatch.undo()
        segment.unlink_parts(m.name)
        reaper.forget(m.name)
    assert _segments(m) == []


# A run whose close cannot unlink the segments; prints the report's problem and the machine's name.
REFUSED_RUN = r"""
import os, sys
from rmm_mp.hw import segment
from rmm_mp.workload import render, spec
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload

def refusing(path):
    raise PermissionError(13, "Permission denied", path)

if __name__ == "__main__":
    names = []
    run = resolve(spec.load(sys.argv[1]))
    segment._unlink_quietly = refusing
    report = run_workload(run, RunOptions(progress=False), lambda m: names.append(m.name))
    print(render.format_report(report))
    print("NAME", names[0])
"""


def test_a_run_whose_segments_cannot_be_unlinked_exits_quietly(tmp_path: Path) -> None:
    """A run in a process of its own whose every unlink is refused: the report names the files
    left, each once, the process exits with no traceback (its exit hook used to close the
    machine again and print "Exception ignored in atexit callback" with one), and once it has
    ended its reaper, which no patch reaches, unlinks the files."""
    path = tmp_path / "w.toml"
    path.write_text("iterations = 3\ncpus = 1\nactivities = { delegate-churn = 1 }\n")
    script = tmp_path / "refused_run.py"
    script.write_text(REFUSED_RUN)
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, \
        done.stderr
    name = done.stdout.rsplit("NAME ", 1)[1].strip()
    files = [segment.segment_path(name, part) for part in ("ctl", "dram")]
    text = done.stdout.replace("\n    ", " ")
    left = text[text.index("are left: ") + len("are left: "):].split(";")[0].split(", ")
    assert sorted(left) == sorted(segment.segment_path(name, p) for p in segment.MACHINE_PARTS), left
    assert text.count("are left: ") == 1 and text.count(files[1]) == 1, text
    assert "result: FAILED: 1 problem" in done.stdout, done.stdout
    deadline = time.monotonic() + 10
    while any(os.path.lexists(f) for f in files) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.lexists(f) for f in files), "the reaper did not unlink the files left"


# Two machines whose every unlink is refused; then close_all() or a SIGTERM (argv[1]).
REFUSED_TWO = r"""
import os, signal, sys, time
from rmm_mp import Machine, machine, machine_exit
from rmm_mp.hw import segment

def refusing(path):
    raise PermissionError(13, "Permission denied", path)

if __name__ == "__main__":
    machines = [Machine.create("host", cpus=1) for _ in range(2)]
    segment._unlink_quietly = refusing
    if sys.argv[1] == "close_all":
        try:
            machine_exit.close_all()
        except PermissionError:
            print("RAISED")
        print("OPEN", sum(m in machine._live for m in machines), flush=True)
    else:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
        print("STILL ALIVE", flush=True)
"""


def test_refused_unlinks_stop_neither_close_all_nor_a_sigterm(tmp_path: Path) -> None:
    """Two machines in a process of their own, every unlink refused. close_all() (the at-exit
    hook's and the SIGTERM handler's) closes both and then raises the error: it used to stop at
    the first, leaving the other open. A SIGTERM then still ends the process by that signal:
    the error used to escape the handler into the code it interrupted, which went on (exit
    status 1 and a traceback), with the report file being written not removed."""
    script = tmp_path / "refused_two.py"
    script.write_text(REFUSED_TWO)
    done = subprocess.run([sys.executable, str(script), "close_all"], capture_output=True, text=True, timeout=60)
    assert "RAISED" in done.stdout and "OPEN 0" in done.stdout, (done.stdout, done.stderr)
    done = subprocess.run([sys.executable, str(script), "sigterm"], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGTERM and "STILL ALIVE" not in done.stdout, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr


def test_the_files_left_are_named_escaped_when_the_segment_directory_is_not_printable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RMM_MP_SHM_DIR may hold an ESC (segment.py shows it escaped everywhere else): the problem
    naming the files a failed close left wrote their paths raw, so the escape reached the
    terminal. They are shown as shown_path shows a path now."""
    from rmm_mp.printable import shown_path
    real, unlink_parts, real_path = Machine.close, segment.unlink_parts, segment.segment_path
    odd = tmp_path / "shm\x1b[2Jdir"
    odd.mkdir()

    def refusing(self: Machine) -> None:
        raise PermissionError(13, "Permission denied", "/dev/shm/x.ctl")

    def odd_path(name: str, part: str) -> str:
        real_path(name, part)       # its checks of name and part
        return str(odd / f"{name}.{part}")

    monkeypatch.setattr(Machine, "close", refusing)
    monkeypatch.setattr(segment, "unlink_parts", lambda prefix: None)
    monkeypatch.setattr(segment, "segment_path", odd_path)
    machines: list[Machine] = []
    try:
        report = _run(tmp_path, machines)
    finally:
        monkeypatch.setattr(Machine, "close", real)
        monkeypatch.setattr(segment, "unlink_parts", unlink_parts)
        for machine in machines:
            machine.close()
        monkeypatch.setattr(segment, "segment_path", real_path)
    assert not any(odd.iterdir()), list(odd.iterdir())
    problem, = [p for p in report.problems if "closing the machine" in p]
    assert "\x1b" not in problem, problem
    assert shown_path(str(odd / f"{machines[0].name}.{segment.PARTS[0]}")) in problem, problem
