"""A Ctrl-C while a stress run's CPU processes start up: those that had not had the parent's go
(rmm_mp.cpu_start) are killed at once and named in one "never started" line, where each used to
finish its start-up first, or be killed after the grace time as one "still starting up"."""

from __future__ import annotations

import os
import signal
import time

import pytest

from children import bound_pid
from rmm_mp import cpu_start
from rmm_mp.stress import runner
from rmm_mp.stress.config import StressConfig

pytestmark = [pytest.mark.multiprocess, pytest.mark.usefixtures("ctrl_c")]


@pytest.mark.parametrize("schedule", ["free", "random"])
def test_a_ctrl_c_before_the_cpus_had_their_go_names_them_as_never_started(
        monkeypatch: pytest.MonkeyPatch, schedule: str) -> None:
    """Two CPUs, neither given its go (the parent withholds it, as a CPU still starting up has not
    asked for it), and a Ctrl-C at the first tick, with a minute of grace time: both are killed
    at once, the run ends interrupted in well under that minute, with no finding. The report
    says how far the start-up had come (0 of 2 ready) and, in a line of its own, that CPUs 0 and
    1 were never started; a deterministic run does not list them as CPUs that returned no
    result; and the invariants are still checked at the end (no CPU made a call)."""
    monkeypatch.setattr(cpu_start.StartGate, "up", lambda self, cpu: None)
    monkeypatch.setattr(runner, "FREE_GRACE_S", 60.0)
    monkeypatch.setattr(runner, "DETERMINISTIC_GRACE_S", 60.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)
    sent: list[float] = []

    def first_tick(elapsed: float, seg: object) -> None:
        if not sent:
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

    report = runner.run(StressConfig(workload="tables", seconds=60, schedule=schedule), on_tick=first_tick)
    assert sent and time.monotonic() - sent[0] < 30, "the CPUs were waited for"
    assert report.interrupted and report.ended == "interrupted" and report.findings == (), report.text()
    assert report.not_done[0] == ("the start-up not finished, interrupted (Ctrl-C): 0 of 2 CPUs had become "
                                  "ready by the run's end"), report.not_done
    assert report.not_done[1] == ("CPUs 0 and 1 (2) were never started: the run was interrupted (Ctrl-C) during "
                                  "their start-up, before they bound to the machine, so none made a call")
    assert not any(line.startswith("invariants not checked") for line in report.not_done), report.not_done
    assert report.unreported == ()


def _kill_cpu0_if_bound(machine: object, killed: list[int]) -> int:
    """SIGKILL CPU 0's process once it has bound the machine (its pid in its area's binding
    word), noting it in ``killed``; the pid, or 0 while it has not bound yet."""
    pid = bound_pid(machine, 0)
    if pid:
        killed.append(pid)
        os.kill(pid, signal.SIGKILL)
    return pid


def test_a_cpu_still_starting_when_another_dies_is_no_finding_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Free-running, two CPUs: CPU 1 never gets its go (the parent withholds it, as for a CPU whose
    start-up outlasts the grace time on a loaded host), and CPU 0 is killed (SIGKILL) once it is
    bound. The run is stopped by that death; CPU 1, killed after the 1 s grace time still
    starting up, made no call: the death is the one finding, and CPU 1 is named in a line of its
    own as still starting up when the run was stopped, as a deterministic run names such a CPU.
    Before, it was a second cpu-died finding ("did not stop within 1 s of being asked")."""
    real_up = cpu_start.StartGate.up
    monkeypatch.setattr(cpu_start.StartGate, "up", lambda self, cpu: None if cpu == 1 else real_up(self, cpu))
    monkeypatch.setattr(runner, "FREE_GRACE_S", 1.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)
    machines: list[object] = []
    killed: list[int] = []

    def kill_cpu0_once_bound(elapsed: float, seg: object) -> None:
        if killed or not machines:
            return
        _kill_cpu0_if_bound(machines[0], killed)

    report = runner.run(StressConfig(workload="tables", seconds=60, cpus=2), on_tick=kill_cpu0_once_bound,
                        on_machine=machines.append)
    assert killed, "CPU 0 never bound"
    assert [(f.rule, f.cpu) for f in report.findings] == [("cpu-died", 0)], report.text()
    assert any(line.startswith("CPU 1 was still starting up when the run was stopped: it did not stop within 1 s")
               for line in report.not_done), report.not_done


def test_a_cpu_still_starting_when_the_tools_abort_for_a_death_stopped_the_run_is_no_finding_of_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As above, but the stress tool's own tick sees CPU 0's death first (its abort, "a CPU
    process died", is what stopped the run, before the runtime's "CPU 0 died"): made so by
    killing CPU 0 inside that tick's look for dead CPUs and waiting until it is a zombie, after
    the runtime's look of the same tick. CPU 1 is still no finding of its own. The report tells
    this stop by the supervisor's flag, not by the abort's words."""
    from rmm_mp.hw import process
    real_up = cpu_start.StartGate.up
    monkeypatch.setattr(cpu_start.StartGate, "up", lambda self, cpu: None if cpu == 1 else real_up(self, cpu))
    monkeypatch.setattr(runner, "FREE_GRACE_S", 1.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)
    real_died = runner._Supervisor._a_cpu_died
    killed: list[int] = []

    def kill_cpu0_then_look(self: runner._Supervisor) -> bool:
        if not killed:
            pid = _kill_cpu0_if_bound(self.machine, killed)
            if pid:
                deadline = time.monotonic() + 30.0
                while process.alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
        return real_died(self)

    monkeypatch.setattr(runner._Supervisor, "_a_cpu_died", kill_cpu0_then_look)
    stops: list[str] = []
    real_report = runner.ending.report

    def report(*args: object, **kwargs: object) -> object:
        stops.append(args[3].stopped_by)     # type: ignore[attr-defined]
        return real_report(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner.ending, "report", report)
    report_ = runner.run(StressConfig(workload="tables", seconds=60, cpus=2))
    assert killed, "CPU 0 never bound"
    assert stops == ["aborted (a CPU process died)"], stops
    assert [(f.rule, f.cpu) for f in report_.findings] == [("cpu-died", 0)], report_.text()
    assert any(line.startswith("CPU 1 was still starting up when the run was stopped: it did not stop within 1 s")
               for line in report_.not_done), report_.not_done


@pytest.mark.parametrize("stop", ["watchdog", "invariants"])
def test_a_cpu_still_starting_when_a_finding_of_the_tools_stopped_the_run_is_no_finding_of_its_own(
        monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    """Free-running, two CPUs: CPU 1 never gets its go (as for a start-up that outlasts the grace
    time), and once CPU 0 is ready the stress tool's own tick stops the run for a finding: the
    watchdog's (its look made to find a stuck call: an abort) or a broken invariant at a
    quiescent point (the check made to report one: a drain). CPU 1, killed after the 1 s grace
    time still starting up, made no call: that finding is the only one, and CPU 1 is named in a
    line of its own as still starting up when the run was stopped. Before, it was a cpu-died
    finding of its own ("did not stop within 1 s of being asked"), as it was after another CPU's
    death until that case was fixed."""
    from rmm_mp.check import Violation
    from rmm_mp.stress.findings import Finding
    from rmm_mp.stress.shared import ABSENT
    real_up = cpu_start.StartGate.up
    monkeypatch.setattr(cpu_start.StartGate, "up", lambda self, cpu: None if cpu == 1 else real_up(self, cpu))
    monkeypatch.setattr(runner, "FREE_GRACE_S", 1.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)
    segs: list[object] = []

    def note_seg(elapsed: float, seg: object) -> None:
        segs[:] = [seg]

    def cpu0_ready() -> bool:
        return bool(segs) and segs[0].status(0) != ABSENT      # type: ignore[attr-defined]

    if stop == "watchdog":
        found: list[Finding] = []

        def tick(self: object) -> Finding | None:
            if found or not cpu0_ready():
                return None
            found.append(Finding("watchdog", "stuck-call", "CPU 0 spun for ever (made so by the test)", 0))
            return found[0]

        monkeypatch.setattr(runner.Watchdog, "tick", tick)
        config = StressConfig(workload="tables", seconds=60, cpus=2)
        expected = [("stuck-call", 0)]
    else:
        real_invariants = runner.invariants

        class Broken:
            violations = [Violation("made-up", None, "broken by the test")]

        def invariants(machine: object) -> object:
            return Broken() if cpu0_ready() else real_invariants(machine)

        monkeypatch.setattr(runner, "invariants", invariants)
        config = StressConfig(workload="tables", seconds=60, cpus=2, quiescent_every=0.1)
        expected = [("made-up", None)]
    report = runner.run(config, on_tick=note_seg)
    assert [(f.rule, f.cpu) for f in report.findings] == expected, report.text()
    assert any(line.startswith("CPU 1 was still starting up when the run was stopped: it did not stop within 1 s")
               for line in report.not_done), report.not_done
