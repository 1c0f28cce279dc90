"""A timed `rmm-mp run` ends even when a CPU process stops making progress (SIGSTOP, a lock
that is never released): the parent asks the CPUs to stop a while after the run's end
(run.TimeUp), and one that still does not return is killed after the grace time and reported,
where the run used to wait for it for ever."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from children import bound_pid, cpu_children
from lost_cpu import LOST, drop_the_lost_cpus_result, owned_where_run, pinned_realms

from rmm_mp import Machine
from rmm_mp.host.runqueue import OFF_ARRIVED
from rmm_mp.workload import render, run, spec
from rmm_mp.workload.report import RunReport
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, TimeUp, run_workload

pytestmark = pytest.mark.multiprocess

STUCK = 1
"""The CPU the test stops with SIGSTOP once every CPU has reached the start barrier."""


def _stop_once_running(machine: Machine, released: threading.Event) -> None:
    """SIGSTOP CPU STUCK's process once the run has begun; SIGCONT it if the run has not ended
    30 s later (so that code which waits for it for ever fails the test instead of hanging)."""
    deadline = time.monotonic() + 60
    pid = 0
    while time.monotonic() < deadline and not released.is_set():
        pid = bound_pid(machine, STUCK)
        if pid and machine.control.view.load_u64(OFF_ARRIVED) >= machine.cpus:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:      # it ended already (a starved watcher): nothing to let go
                pid = 0
            break
        time.sleep(0.005)
    if pid and not released.wait(30):
        os.kill(pid, signal.SIGCONT)


def _run_with_a_stopper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        stopper: Callable[[Machine, threading.Event], None],
                        length: str = "seconds = 0.5", workload: str | None = None,
                        grace_s: float = 1.0) -> RunReport:
    """A run of 2 CPUs churning delegations (0.5 s unless ``length`` says otherwise), or of
    ``workload`` (a whole file's text), with ``grace_s`` of grace time on any host and
    ``stopper(machine, released)`` in a thread from the moment the machine exists; ``released``
    is set once the run has ended."""
    monkeypatch.setattr(run, "GRACE_S", grace_s)
    monkeypatch.setattr(run, "oversubscription", lambda cpus: 1.0)    # the same on a 1-core host
    path = tmp_path / "w.toml"
    path.write_text(workload or f"{length}\ncpus = 2\nactivities = {{ delegate-churn = 1 }}\n")
    released = threading.Event()
    watchers: list[threading.Thread] = []

    def on_machine(machine: Machine) -> None:
        watcher = threading.Thread(target=stopper, args=(machine, released), daemon=True)
        watchers.append(watcher)
        watcher.start()

    try:
        return run_workload(resolve(spec.load(str(path))), RunOptions(progress=False), on_machine)
    finally:
        released.set()
        for watcher in watchers:
            watcher.join(5)


def test_a_stuck_cpu_is_killed_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A timed run whose CPU 1 is stopped with SIGSTOP once every CPU reached the barrier: it ends, CPU 1
    is reported killed after the grace time (any other failed CPU the same way), and the run is not
    ok."""
    monkeypatch.setattr(run, "OVERRUN_S", 0.5)
    report = _run_with_a_stopper(tmp_path, monkeypatch, _stop_once_running)
    stuck = [f for f in report.failures if f.cpu == STUCK]
    assert [f.how for f in stuck] == ["did not stop within 1 s of being asked and was terminated"]
    # The other CPU may have been waiting for a granule lock the stopped one held: killed too.
    assert all(f.how == stuck[0].how for f in report.failures)
    assert report.host["stopped_by"].startswith("time is up") and not report.ok


def _stop_a_cpu_as_it_starts(released: threading.Event) -> None:
    """SIGSTOP the first CPU process this process spawns, long before it can reach the start
    barrier (its interpreter is still starting); SIGCONT it if the run has not ended 30 s later
    (so that a run that waits for it for ever fails the test instead of hanging)."""
    deadline = time.monotonic() + 60
    pid = 0
    while not pid and time.monotonic() < deadline and not released.is_set():
        for child in cpu_children():
            try:
                os.kill(child.pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            pid = child.pid
            break
        time.sleep(0.002)
    if pid and not released.wait(30):
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("length", ["seconds = 0.5", "iterations = 50"])
def test_a_cpu_stuck_before_the_start_barrier_is_killed_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     length: str) -> None:
    """A CPU process stopped while it starts up never reaches the start barrier, where the other
    CPUs wait for it: the run used to wait for ever (TimeUp counted only from the barrier, and
    for a run of iterations not at all). Now the CPUs of a timed run and of a run of iterations
    alike are asked to stop STARTUP_S after they were started, and the stuck one is killed."""
    monkeypatch.setattr(run, "STARTUP_S", 4.0)
    report = _run_with_a_stopper(tmp_path, monkeypatch, lambda machine, released: _stop_a_cpu_as_it_starts(released),
                                 length)
    # The stopped CPU is killed; on a loaded host the other may not have reached the barrier in
    # 4 s either, and is then killed the same way.
    hows = [f.how for f in report.failures]
    assert hows and set(hows) == {"did not stop within 1 s of being asked and was terminated"}, hows
    assert report.host["stopped_by"] == "time is up (CPUs not all at the start barrier 4 s after they were started)"
    assert not report.ok


def test_time_up_waits_for_the_barrier_at_most_startup_seconds() -> None:
    """A run whose CPUs are not all at the start barrier is up once ``startup`` seconds have
    passed, not before: a timed run and a run bounded by steps (seconds None) alike."""
    for seconds in (2.0, None):
        timed = TimeUp(seconds, lambda: False, run.OVERRUN_S, startup=50.0)
        assert timed(49.9) is None
        assert timed(50.0) == "time is up (CPUs not all at the start barrier 50 s after they were started)"


def test_time_up_counts_from_the_barrier_and_never_ends_a_run_of_steps() -> None:
    """TimeUp says nothing before the barrier up to ``startup`` seconds, says "time is up" exactly
    when the run's seconds plus the overrun have passed since the barrier, and never for a counted
    run whose CPUs all passed the barrier."""
    arrived = [False]
    timed = TimeUp(2.0, lambda: arrived[0], run.OVERRUN_S, startup=150.0)
    assert timed(100.0) is None                 # start-up: up to ``startup`` seconds
    arrived[0] = True
    assert timed(101.0) is None                 # the barrier, seen at 101 s
    assert timed(101.0 + 2.0 + run.OVERRUN_S - 0.01) is None
    assert timed(101.0 + 2.0 + run.OVERRUN_S).startswith("time is up")
    counted = TimeUp(None, lambda: True, run.OVERRUN_S, startup=150.0)
    assert counted(1.0) is None and counted(1e9) is None   # past the barrier a run of steps waits for its CPUs


def test_the_allowances_grow_with_the_cpus_per_host_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """OVERRUN_S and GRACE_S are stretched by simulated CPUs per host core, 1 to 6: a step takes
    that much longer on an oversubscribed host, and a CPU killed in one is a failed run."""
    from rmm_mp import runtime
    monkeypatch.setattr(runtime, "host_cores", lambda: [0, 1])
    assert [runtime.oversubscription(n) for n in (1, 2, 3, 4, 12, 64)] == [1.0, 1.0, 1.5, 2.0, 6.0, 6.0]
    arrived = [True]
    timed = TimeUp(1.0, lambda: arrived[0], run.OVERRUN_S * runtime.oversubscription(4))
    assert timed(0.0) is None
    assert timed(1.0 + 2 * run.OVERRUN_S - 0.01) is None
    assert timed(1.0 + 2 * run.OVERRUN_S) == f"time is up (CPUs still running {2 * run.OVERRUN_S:g} s after the run's end)"


def test_the_realms_of_a_cpu_that_returned_nothing_are_reported_as_unknown(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead CPU's lifecycle realms (built, run and torn down by it alone) are in no result the
    parent receives: the report names them as not reported, where it used to leave them out and
    count "N of N ok" over the others' realms. The lifecycle guest is ripas-loop, which never
    turns itself off, so CPU 1's instance is surely still built at the end: with hello, a run in
    which CPU 1's last step tore its finished instance down left only a "torn down" row (the
    3.13.0 suite met it once under load)."""
    drop_the_lost_cpus_result(monkeypatch)
    path = tmp_path / "w.toml"
    path.write_text('iterations = 4\ncpus = 2\nactivities = { lifecycle = 1 }\n'
                    '[[realm]]\nname = "vm"\nguest = "ripas-loop"\nlifecycle = true\ninstances = 2\n'
                    '[[realm]]\nname = "res"\nguest = "hello"\n')
    w = resolve(spec.load(str(path)))
    lost_keys = [key for key, cpu in w.owners if cpu == LOST]
    assert lost_keys, "the workload must give the lost CPU a lifecycle realm"
    report = run_workload(w, RunOptions(progress=False))
    unknown = [r for r in report.realms if "not reported" in r.detail]
    assert [r.name.split("#")[0] for r in unknown] == ["vm[1]"]
    assert not unknown[0].ok and f"CPU {LOST}" in unknown[0].detail
    assert any(r.name.startswith("vm[0]#") for r in report.realms) and any(r.name == "res" for r in report.realms)
    assert not report.ok


def test_the_instances_a_cpu_tore_down_before_it_returned_nothing_are_counted(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1 builds, runs and tears down generations of its lifecycle realm vm1, then its result is
    dropped (as if its process were killed at the end). The instances it had torn down were in that result
    only, so "Realms: N of M" left them out; now the report has a row of them (from the tally CPU 1
    published as it went), the instance still built is named by its generation, and the report counts as
    many instances, and as many ok, as CPU 1's result held. vm1 runs on CPU 1 alone, so CPU 1 tears
    some down on every run (lost_cpu.pinned_realms)."""
    dropped = drop_the_lost_cpus_result(monkeypatch)
    path = tmp_path / "w.toml"
    path.write_text('iterations = 100\ncpus = 2\nactivities = { lifecycle = 1 }\n' + pinned_realms("vm", "hello"))
    report = run_workload(owned_where_run(resolve(spec.load(str(path)))), RunOptions(progress=False))
    lost = dropped[0]
    torn_down = len(lost.finished) + sum(f.instances for f in lost.folded)
    torn_down_ok = sum(not f.failed for f in lost.finished) + sum(f.instances for f in lost.folded if f.ok)
    assert torn_down >= 1, "CPU 1 must have torn down an instance for the test to mean anything"
    rows = [r for r in report.realms if r.name.startswith("vm1")]
    assert sum(r.instances for r in rows) == torn_down + len(lost.live)
    assert sum(r.instances for r in rows if r.ok) == torn_down_ok
    counted = [r for r in rows if "torn down by CPU 1" in r.detail]
    assert counted and all(r.exceptions is None and "only their number is known" in r.detail for r in counted)
    assert [r.name for r in rows if "not reported" in r.detail] == [f"vm1#{torn_down}"] * len(lost.live)
    assert f"vm1 ({torn_down_ok} instance" in render.format_report(report)


def _kill_after_two_teardowns(machine: Machine, released: threading.Event) -> None:
    """SIGKILL CPU LOST's process once its lifecycle tally (its only instance, entry 0) says it has
    torn down two instances."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not released.is_set():
        area = machine.cpu_area(LOST)
        try:
            pid = area.binding() & 0xFFFF_FFFF
            _, ok, failed, _ = area.lifecycle_tally(1)[0]
        finally:
            area.release()
        if pid and ok + failed >= 2:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.001)


def test_a_killed_cpu_s_torn_down_instances_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1 is killed with SIGKILL mid-run, after it has torn down two generations of its lifecycle
    instance: what it published as it went still counts them, so the report has a row of at least
    two torn-down instances of vm1 besides the CPU's failure. vm1 runs on CPU 1 alone, so CPU 1 tears
    two down on every run (lost_cpu.pinned_realms)."""
    workload = 'iterations = 5000\ncpus = 2\nactivities = { lifecycle = 1 }\n' + pinned_realms("vm", "hello")
    (tmp_path / "pinned.toml").write_text(workload)
    owned_where_run(resolve(spec.load(str(tmp_path / "pinned.toml"))))
    # The grace time is only waited for if CPU 0 fails to stop; 5 s was too short on a 2-core host at
    # a load average of 38 (CPU 0 was terminated too), so this is generous.
    report = _run_with_a_stopper(tmp_path, monkeypatch, _kill_after_two_teardowns, workload=workload, grace_s=30.0)
    assert [(f.cpu, f.how) for f in report.failures] == [(LOST, "was killed by SIGKILL")]
    counted = [r for r in report.realms if r.name.startswith("vm1 (") and "torn down by CPU 1" in r.detail]
    assert sum(r.instances for r in counted) >= 2, [r.name for r in report.realms]


def test_the_tokens_a_cpu_saved_before_it_returned_nothing_are_counted(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Attest realms on 2 CPUs with --save-tokens; CPU 1's result is dropped (as if it were killed at
    the end). The tokens it saved are in the directory all the same: the report's count ("Written:
    tokens DIR (N tokens)") is the number of files there, where it used to leave CPU 1's out. att1
    runs on CPU 1 alone, so CPU 1 saves tokens on every run (lost_cpu.pinned_realms)."""
    drop_the_lost_cpus_result(monkeypatch)
    path = tmp_path / "w.toml"
    path.write_text('iterations = 120\ncpus = 2\nactivities = { attest = 1 }\n'
                    + pinned_realms("att", "attest", 'ram = "3M"\n'))
    tokens = tmp_path / "tokens"
    w = owned_where_run(resolve(spec.load(str(path))))
    report = run_workload(w, RunOptions(progress=False, tokens_dir=str(tokens)))
    files = sorted(p.name for p in tokens.iterdir())
    assert any(name.startswith("att1-") for name in files), "CPU 1 must have saved a token for the test to mean anything"
    assert report.tokens_saved == len(files), files


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_before_a_cpu_started_tears_down_its_realms_and_counts_it_as_never_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two CPUs, each owning a lifecycle instance (generation #0 built by the parent) and doing
    rtt-churn, ripas-churn and delegate-churn (granules set aside for each). The parent withholds
    CPU 1's go (rmm_mp.cpu_start), as when CPU 1 is slow to start, and a Ctrl-C comes once CPU 0
    has bound its CPU: CPU 1 is killed as never started. The report says so in a line of its
    own; CPU 1 is no failure, nor one that did not report ("only 1 of 2 CPUs reported back"), nor
    are its realms "not reported": its vm[1]#0, which it never touched, is read and torn down with
    the others, what was set aside for it is freed, and the leak checks after the teardown and
    the invariant check find nothing."""
    from rmm_mp import cpu_start
    give = cpu_start.StartGate.up
    monkeypatch.setattr(cpu_start.StartGate, "up", lambda self, cpu: give(self, cpu) if cpu == 0 else None)

    def ctrl_c_once_cpu0_is_bound(machine: Machine, released: threading.Event) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not released.is_set():
            pid = bound_pid(machine, 0)
            if pid not in (0, os.getpid()):     # the parent binds CPU 0 while it builds the realms
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)

    workload = ('seconds = 30\ncpus = 2\n'
                'activities = { run = 4, lifecycle = 2, rtt-churn = 1, ripas-churn = 1, delegate-churn = 1 }\n'
                '[[realm]]\nname = "vm"\nguest = "ripas-loop"\nlifecycle = true\ninstances = 2\n')
    report = _run_with_a_stopper(tmp_path, monkeypatch, ctrl_c_once_cpu0_is_bound, workload=workload, grace_s=30.0)
    assert report.interrupted and report.host["stopped_by"] == "interrupted (Ctrl-C)", report.host
    assert not report.failures and not report.problems, (report.failures, report.problems)
    assert ("CPU 1 was never started: the run was interrupted (Ctrl-C) during its start-up, before it bound to "
            "the machine, so it made no call") in report.not_done, report.not_done
    assert not [r for r in report.realms if "not reported" in r.detail], [r.detail for r in report.realms]
    assert "vm[1]#0" in [r.name for r in report.realms], [r.name for r in report.realms]
    assert report.invariants is not None and report.invariants.ok
    assert "never started" in render.format_report(report)
