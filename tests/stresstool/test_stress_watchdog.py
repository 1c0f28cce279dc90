"""The watchdog: a deliberately leaked lock is reported with the CPU that holds it, a deadlock
with every CPU's call and locks, and the run ends cleanly in both modes.

The free-running case drives the pieces by hand (two CPU processes, the CPU targets live in this
module: spawned processes import it by name): CPU 0 takes a granule lock outside any call and
keeps it, CPU 1 then asks to DELEGATE that granule and spins; the parent's Watchdog, polled as
`rmm-mp stress` polls it, must name CPU 0 as the holder, and CPU 1 must leave its call when the
run is aborted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from children import bound_pid
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.hw.cpuarea import OFF_WAIT_SPINS, OFF_WAITING_FOR
from rmm_mp.hw.granule import host_owner
from rmm_mp.runtime import run_cpus
from rmm_mp.stress import StressConfig, instrument, run
from rmm_mp.stress import schedule as schedule_file
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.probe import StressAbort
from rmm_mp.stress.shared import END_ABORT, MODE_FREE, RUNNING, StressSegment
from rmm_mp.stress.watchdog import Watchdog, snapshots

pytestmark = pytest.mark.multiprocess

LEAKED = 200
"""Granule index CPU 0 leaks (an NS granule of the host platform)."""


def leak_or_wait(cpu) -> str:  # type: ignore[no-untyped-def]
    """CPU 0: lock granule LEAKED and keep it until the run ends. CPU 1: once it is held,
    DELEGATE it (through EL3, as a host would) and spin until the watchdog aborts the run."""
    seg = StressSegment.attach(cpu.machine.name)
    probe = instrument.install(cpu, seg, watchdog=True)
    table = cpu.granules
    try:
        if cpu.id == 0:
            table.lock(LEAKED)
            while seg.end != END_ABORT:
                time.sleep(0.005)
            return "held"
        while table.holder(LEAKED) == 0:
            time.sleep(0.001)
        try:
            cpu.smc(RmiFid.RMI_GRANULE_DELEGATE, table.addr(LEAKED))
        except StressAbort:
            return "aborted"
        return "delegated"
    finally:
        instrument.uninstall(probe)
        seg.close()


def test_free_running_watchdog_names_the_holder_of_a_leaked_lock() -> None:
    """CPU 1 spins on a lock CPU 0 leaked between calls: on two consecutive looks the watchdog
    sees it and reports "leaked-lock" naming CPU 0 as the holder and CPU 1's DELEGATE call; the
    abort makes CPU 1 leave its call, so both CPU processes return."""
    with Machine.create("host", cpus=2) as m:
        seg = StressSegment.create(m.name, 2, MODE_FREE, 0, 0, 1)
        try:
            dog = Watchdog(m)
            found = []

            def tick(elapsed: float) -> None:
                if not found and m.granule_table(0).holder(LEAKED):
                    finding = dog.tick()
                    if finding is not None:
                        found.append(finding)
                        seg.set_end(END_ABORT)

            result = run_cpus(m, leak_or_wait, on_tick=tick, tick_s=0.05, timeout_s=60)
        finally:
            seg.close()
    assert found, "the watchdog never reported"
    finding = found[0]
    assert (finding.checker, finding.rule, finding.cpu) == ("watchdog", "leaked-lock", 1), finding.text()
    assert "held by CPU 0, which is not in a call" in finding.message
    assert finding.call.startswith("RMI_GRANULE_DELEGATE(")
    assert any(line.startswith("CPU 0 (running): between calls; holds") for line in finding.details)
    assert result.results == {0: "held", 1: "aborted"}


def test_deterministic_deadlock_is_reported_and_replays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """DATA_CREATE_UNKNOWN locking root RTT 0 before the RD (a catalogued bug), with only the
    watchdog on: under the random schedule two CPUs block on each other's locks; the report
    names the cycle, each CPU's call and held locks (each by its granule's state: the RD and root RTT 0), the run is aborted, and its schedule
    replays to the same report."""
    cfg = StressConfig(workload="tables", seed=1, schedule="random", steps=4000, seconds=120,
                       inject=("data-create-rtt-before-rd",), checkers=("watchdog",))
    report = run(cfg)
    first = report.first()
    assert first is not None and (first.checker, first.rule) == ("watchdog", "deadlock"), report.text()
    assert "CPU 0 -> CPU 1 -> CPU 0" in first.message
    assert len([d for d in first.details if "(blocked)" in d and "waiting for" in d]) == 2, first.details
    # Each lock is named by its granule's state: the RD and root RTT 0, each held by one
    # CPU and waited for by the other (the addresses alone did not say which was which).
    assert sorted(d.split(": ", 1)[1].split(", waiting for ")[1] for d in first.details) == [
        "RD 0x8008f000; holds RTT 0x80090000", "RTT 0x80090000; holds RD 0x8008f000"], first.details
    assert report.ended == "aborted"
    replay = run(schedule_file.replay_config(schedule_file.to_json(report)))
    assert replay.findings_text() == report.findings_text()


def test_snapshots_name_held_locks_and_calls(machine: Machine) -> None:
    """snapshots() lists for each CPU the locks whose words name it, and "between calls" when
    its area publishes no call."""
    table = machine.granule_table(2)        # CPU 1's lock word
    table.lock(300)
    try:
        snaps = snapshots(machine)
    finally:
        table.unlock(300)
    assert snaps[1].held == (table.addr(300),) and snaps[0].held == ()
    assert snaps[1].describe().endswith(f"between calls; holds NS {table.addr(300):#x}")


def test_snapshots_tell_a_host_copy_from_a_lock_left_between_calls(machine: Machine) -> None:
    """A lock whose word names the host process bound to CPU 1 (what Machine.ns_read/ns_write
    take for the NS granules they copy) is listed for CPU 1 as the host's copy, not as a bare
    lock held "between calls"; a CPU's own lock word is not."""
    machine.cpu(1)                                          # this process is CPU 1's host
    host = machine.granule_table(host_owner(os.getpid()))
    own = machine.granule_table(3)                          # CPU 2's lock word
    host.lock(300)
    own.lock(301)
    try:
        snaps = snapshots(machine)
    finally:
        host.unlock(300)
        own.unlock(301)
    assert snaps[1].held == snaps[1].host_held == (host.addr(300),)
    assert snaps[1].describe().endswith(f"between calls, its host copying NS memory; holds NS {host.addr(300):#x} (host copy)")
    assert snaps[2].host_held == () and snaps[2].describe().endswith(f"between calls; holds NS {own.addr(301):#x}")


def _publish_wait(machine: Machine, cpu: int, idx: int, spins: int) -> None:
    """Write into ``cpu``'s area what stress.instrument's contended path publishes while it
    spins: the granule index it waits for and its spin count."""
    area = machine.cpu_area(cpu)
    try:
        area.view.store_u32(area.base + OFF_WAITING_FOR, idx + 1)
        area.view.store_u64(area.base + OFF_WAIT_SPINS, spins)
    finally:
        area.release()


def test_watchdog_does_not_take_a_slow_host_copy_for_a_leaked_lock(machine: Machine) -> None:
    """CPU 0 spins (its spin count rising) on a granule that CPU 1's host holds for an NS copy
    (a host-owner lock word, as Machine.ns_read/ns_write take) on two consecutive looks, CPU 1
    being between calls: a copy slowed by the host's scheduler, not a lock left behind (the copy
    releases it in a finally), so no finding. It used to be reported as "leaked-lock ... held by
    the host process of CPU 1, which is not in a call". The same wait on CPU 1's own lock word
    is still one."""
    machine.cpu(1)                                          # this process is CPU 1's host
    host = machine.granule_table(host_owner(os.getpid()))
    own = machine.granule_table(2)                          # CPU 1's own lock word
    dog = Watchdog(machine)
    host.lock(300)
    try:
        for spins in (64, 128, 192):
            _publish_wait(machine, 0, 300, spins)
            assert dog.tick() is None
    finally:
        host.unlock(300)
    own.lock(300)
    try:
        found = None
        for spins in (256, 320):
            _publish_wait(machine, 0, 300, spins)
            found = dog.tick()
    finally:
        own.unlock(300)
        _publish_wait(machine, 0, -1, 0)
    assert found is not None and found.rule == "leaked-lock", found
    assert "held by CPU 1, which is not in a call" in found.message


def _cpu_pid(seg: StressSegment, cpu: int) -> int:
    """The pid of the process bound to ``cpu`` of the stress run's machine."""
    with Machine.attach(seg.machine_name) as m:
        return bound_pid(m, cpu)


def test_a_cpu_process_that_dies_is_reported_and_the_run_ends() -> None:
    """CPU 1's process is killed (SIGKILL) in the middle of a free-running run: the report has a
    "cpu-died" finding for CPU 1 saying so, with the locks it still held and every CPU's call,
    and the run ends at once (aborted), long before its 60 seconds."""
    killed: list[int] = []

    def tick(elapsed: float, seg: StressSegment) -> None:
        if killed or seg.ops(1) < 20:
            return
        pid = _cpu_pid(seg, 1)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    report = run(StressConfig(workload="tables", seed=1, seconds=60), on_tick=tick)
    assert killed
    died = [f for f in report.findings if f.rule == "cpu-died"]
    assert died and died[0].cpu == 1 and "was killed by SIGKILL; locks it still held:" in died[0].message, \
        report.text()
    assert any(line.startswith("CPU 0 ") for line in died[0].details)
    assert report.ended == "aborted" and report.elapsed_s < 30


def test_a_stopped_cpu_is_killed_once_the_free_running_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-running run whose CPU 1 is stopped (SIGSTOP) while it runs: once the run's time is
    up the other CPU returns, CPU 1 is killed after the grace time and reported (cpu-died), and
    the run ends. It used to run on until run_cpus's own limit, START_ALLOWANCE_S (60 s) later.
    CPU 1 is let go (SIGCONT) after 30 s, so that such code fails the test rather than hangs it."""
    from rmm_mp.stress import runner
    monkeypatch.setattr(runner, "FREE_GRACE_S", 1.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)    # the same on a 1-core host
    stopped: list[int] = []
    done = threading.Event()

    def tick(elapsed: float, seg: StressSegment) -> None:
        if stopped or seg.ops(1) < 1:     # stopped once it works: a starved CPU may not do 20 in 1 s
            return
        pid = _cpu_pid(seg, 1)
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        threading.Thread(target=lambda: done.wait(30) or os.kill(pid, signal.SIGCONT), daemon=True).start()

    try:
        report = run(StressConfig(workload="tables", seed=1, seconds=1), on_tick=tick)
    finally:
        done.set()
    assert stopped
    died = [f for f in report.findings if f.rule == "cpu-died" and f.cpu == 1]
    assert died and "did not stop within 1 s of being asked and was terminated" in died[0].message, report.text()


class _Area:
    """A CPU's shared area as Watchdog.tick reads it: a spin count that rises at every look."""

    def __init__(self, spins: int) -> None:
        self.spins = spins

    def wait_spins(self) -> int:
        return self.spins

    def release(self) -> None:
        pass


@pytest.mark.parametrize("second_wait, reported", [((0x8010_0000, 1), True), ((0x8020_0000, 1), False),
                                                   ((0x8010_0000, 0x8000_1234), False)])
def test_a_leaked_lock_is_reported_only_when_both_looks_see_the_same_lock_and_holder(
        monkeypatch: pytest.MonkeyPatch, second_wait: tuple[int, int], reported: bool) -> None:
    """CPU 1 waits, on two looks in a row, for a lock whose holder (CPU 0's word 1) is between
    calls: a leaked lock only if both looks see the same lock held by the same word. Another
    lock, or the same lock now held by another owner (a host's NS copy), are two short holds,
    not one leak (the suspicion used to compare only the waiting CPU)."""
    from rmm_mp.stress import watchdog

    looks = [(0x8010_0000, 1), second_wait]
    look = [0]
    holders = {}

    def snaps(machine: object) -> list[watchdog.CpuSnapshot]:
        pa, word = looks[look[0]]
        holders[pa] = word
        return [watchdog.CpuSnapshot(0, "running", "", -1, (pa,)),
                watchdog.CpuSnapshot(1, "running", "RMI_GRANULE_DELEGATE(0x0)", pa, ())]

    def holder(machine: object, pa: int) -> tuple[int, int]:
        return holders[pa], 0       # word 1 is CPU 0; the host-owner word is CPU 0's process too
    monkeypatch.setattr(watchdog, "snapshots", snaps)
    monkeypatch.setattr(watchdog, "_holder", holder)
    monkeypatch.setattr(watchdog, "owner_text", lambda machine, word: f"word {word:#x}")

    class FakeMachine:
        cpus = 2

        def cpu_area(self, cpu: int) -> _Area:
            return _Area(10 + look[0])

    dog = watchdog.Watchdog(FakeMachine())  # type: ignore[arg-type]
    monkeypatch.setattr(dog, "_stuck_call", lambda snaps: None)
    assert dog.tick() is None
    look[0] = 1
    finding = dog.tick()
    assert (finding is not None) == reported, finding
    if finding is not None:
        assert (finding.rule, finding.cpu) == ("leaked-lock", 1)


def test_without_the_watchdog_a_free_running_wait_leaves_on_an_abort(machine: Machine) -> None:
    """Free-running with the watchdog off (`--checkers lockdep`): CPU 0 asks for a lock CPU 1
    holds (CPU 1's process died, say) after the run was aborted. It leaves its call at once
    with StressAbort naming the lock's PA, the holder's lock word and its call. Before, the
    plain contended path ignored the abort: the CPU spun until the grace time killed it (5 s,
    a `cpu-died` finding "did not stop ... and was terminated" of its own, its wait unnamed);
    here a thread releases the lock after 1 s, and the old path took it then and returned."""
    seg = StressSegment.create(machine.name, 2, MODE_FREE, 0, 0, 1)
    cpu = machine.cpu(0)
    probe = instrument.install(cpu, seg, watchdog=False)
    holder = machine.granule_table(2)       # CPU 1's lock word
    holder.lock(LEAKED)
    releaser = threading.Timer(1.0, holder.unlock, (LEAKED,))
    try:
        seg.set_end(END_ABORT)
        releaser.start()
        with pytest.raises(StressAbort) as left:
            cpu.granules.lock(LEAKED)
    finally:
        releaser.join()
        if cpu.granules.holder(LEAKED) == cpu.granules.owner:
            cpu.granules.unlock(LEAKED)
        instrument.uninstall(probe)
        seg.close()
    assert (left.value.waiting_for, left.value.holder) == (holder.addr(LEAKED), 2)


def test_a_recursive_lock_without_the_watchdog_is_still_the_rmm_crash(machine: Machine) -> None:
    """The same contended path, watchdog off, asked for a lock its CPU holds: the plain path's
    RmmInternalError (an RMM crash finding), not the watchdog's self-deadlock finding."""
    from rmm_mp.hw.faults import RmmInternalError
    seg = StressSegment.create(machine.name, 2, MODE_FREE, 0, 0, 1)
    cpu = machine.cpu(0)
    probe = instrument.install(cpu, seg, watchdog=False)
    cpu.granules.lock(LEAKED)
    try:
        with pytest.raises(RmmInternalError, match="recursive lock"):
            cpu.granules._lock_contended(LEAKED)
        assert not probe.findings.items
    finally:
        cpu.granules.unlock(LEAKED)
        instrument.uninstall(probe)
        seg.close()


def test_a_deterministic_cpu_blocked_when_the_run_is_aborted_says_on_what(machine: Machine) -> None:
    """Deterministic: CPU 0 blocks on a lock CPU 1 holds and hands CPU 1 the turn; the run is
    aborted meanwhile (CPU 1's process died). The StressAbort it leaves with names the lock's
    PA, the holder's lock word and the call, as the free-running wait does."""
    from rmm_mp.stress.sched import SchedPlan, Scheduler
    from rmm_mp.stress.shared import MODE_DETERMINISTIC, READY
    seg = StressSegment.create(machine.name, 2, MODE_DETERMINISTIC, 0, 100, 1)
    park_r, park_w = os.pipe()
    wake_r, wake_w = os.pipe()
    holder = machine.granule_table(2)
    holder.lock(LEAKED)
    try:
        seg.set_status(1, READY)
        probe = SimpleNamespace(current_call=lambda: "RMI_GRANULE_DELEGATE(0x1000)")
        sched = Scheduler(seg, 0, SchedPlan("random", 100), (park_w, wake_w), park_r,
                          lambda idx: holder.holder(idx), probe)  # type: ignore[arg-type]
        seg.set_end(END_ABORT)
        os.write(park_w, b"\0")     # the abort's wake-up
        with pytest.raises(StressAbort) as left:
            sched.block(LEAKED, holder.addr(LEAKED))
    finally:
        holder.unlock(LEAKED)
        for fd in (park_r, park_w, wake_r, wake_w):
            os.close(fd)
        seg.close()
    assert (left.value.waiting_for, left.value.holder, left.value.call) == (holder.addr(LEAKED), 2,
                                                                             "RMI_GRANULE_DELEGATE(0x1000)")


def test_a_cpu_died_finding_names_the_cpus_stuck_behind_it(machine: Machine) -> None:
    """CPU 1's process died holding a lock that CPU 0 was waiting for when the abort came (its
    CpuResult.waited). The cpu-died finding of CPU 1 says so: "CPU 0 was stuck behind it: it
    waited for PA, which CPU 1 held, in CALL, and left its call when the run was aborted".
    Before, CPU 0 showed only as "running" in its call, holding its own locks, as if at work."""
    from rmm_mp.cpu_outcome import CpuFailure
    from rmm_mp.stress import ending
    from rmm_mp.stress.worker import CpuResult
    pa = machine.granule_table(2).addr(LEAKED)
    results = {0: CpuResult(0, ended="aborted", waited=("RMI_GRANULE_DELEGATE(0x1000)", pa, 2))}
    failure = CpuFailure(1, "was killed by SIGKILL", "", (pa,))
    finding = ending._failure(failure, machine, {1}, ending._stuck_behind(1, machine, results))
    assert finding.details[0] == (f"CPU 0 was stuck behind it: it waited for {pa:#x}, which CPU 1 held, in "
                                  "RMI_GRANULE_DELEGATE(0x1000), and left its call when the run was aborted")
    assert ending._stuck_behind(0, machine, results) == ()


class _FindsOnce:
    """A stand-in for the free-running Watchdog: one leaked-lock finding at the first look after
    ``armed`` holds something (the test's tick arms it)."""

    armed: list[object] = []

    def __init__(self, machine: Machine, roles: object = None) -> None:
        self.fired = False

    def tick(self) -> Finding | None:
        if self.fired or not self.armed:
            return None
        self.fired = True
        return Finding("watchdog", "leaked-lock", "a lock left held (test)", 0, "", "", ())


def test_a_cpu_that_does_not_stop_after_a_watchdog_abort_is_killed_after_the_grace_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-running run of 60 s whose CPU 1 is stopped (SIGSTOP) once it works, and the
    watchdog then reports a finding, which aborts the run: CPU 1, which does not leave, is killed
    after the grace time (1 s here) and reported as one that did not stop, and the run ends
    within seconds. The abort set the stop flag behind run_cpus's back, so no grace time ran
    from it: CPU 1 was waited for until the run's 60 s were up (a CPU stuck in a call, the
    watchdog's stuck-call finding, likewise). CPU 1 is let go (SIGCONT) after 20 s, so that such
    code fails the test rather than holds it a minute."""
    from rmm_mp.stress import runner
    monkeypatch.setattr(runner, "FREE_GRACE_S", 1.0)
    monkeypatch.setattr(runner, "oversubscription", lambda cpus: 1.0)
    monkeypatch.setattr(runner, "Watchdog", _FindsOnce)
    monkeypatch.setattr(_FindsOnce, "armed", [])
    done = threading.Event()

    def tick(elapsed: float, seg: StressSegment) -> None:
        if _FindsOnce.armed or seg.ops(1) < 1:
            return
        pid = _cpu_pid(seg, 1)
        os.kill(pid, signal.SIGSTOP)
        _FindsOnce.armed.append(pid)
        threading.Thread(target=lambda: done.wait(20) or os.kill(pid, signal.SIGCONT), daemon=True).start()

    start = time.monotonic()
    try:
        report = run(StressConfig(workload="tables", seed=1, seconds=60), on_tick=tick)
    finally:
        done.set()
    assert _FindsOnce.armed
    assert time.monotonic() - start < 15, report.text()
    assert report.ended == "aborted", report.text()
    died = [f for f in report.findings if f.rule == "cpu-died" and f.cpu == 1]
    assert died and "did not stop within 1 s of being asked and was terminated" in died[0].message, report.text()


def test_a_waiter_terminated_behind_a_stopped_holder_is_stuck_behind_it(machine: Machine) -> None:
    """Free-running, CPU 0 stopped (SIGSTOP) holding a lock that CPU 1 spins on: neither stops
    when the run's time is up, and both are terminated at the grace time's end. CPU 1 is no CPU
    of its own that "did not stop": the cpu-died finding of CPU 0 names it as stuck behind it
    (with how it ended), as for a waiter behind a holder that died before the grace time ended.
    Before, CPU 1 was a second cpu-died finding. Neither returned a result, so the summary's
    operations are over the CPUs that returned one (none here), and says so, as the lock line
    does; before, "0 operations in ..." read as if the CPUs had done nothing. The operations
    they had completed (3 and 2 here) are read from their counters in the stress segment and
    said beside; before, they were lost with the processes."""
    from rmm_mp.cpu_outcome import CpuFailure, RunResult
    from rmm_mp.interrupts import Interrupts
    from rmm_mp.stress import ending
    how = "did not stop within 5 s of being asked and was terminated"
    holder = machine.granule_table(1)       # CPU 0's lock word
    holder.lock(LEAKED)
    _publish_wait(machine, 1, LEAKED, 1000)
    seg = StressSegment.create(machine.name, 2, MODE_FREE, 0, 0, 1)
    sup = SimpleNamespace(plan=None, timed_out=False, started=False, stopping=None, stopped_cpu=None, findings=[],
                          ready_at=0.0, first=-1, quiescent_checks=0, startup_s=0.6, roles={})
    result = RunResult({}, (CpuFailure(0, how, "", (holder.addr(LEAKED),), terminated=True),
                            CpuFailure(1, how, "", (), terminated=True)), False, 10.7, "time is up")
    config = StressConfig(workload="mixed", cpus=2, seconds=5, checkers=("watchdog",))
    try:
        seg.set_status(0, RUNNING)
        seg.set_status(1, RUNNING)
        for cpu in (0, 0, 0, 1, 1):
            seg.count(cpu, "tables")       # a worker counts its operation by kind, then count_op
            seg.count_op(cpu)
        seg.set_end(END_ABORT)
        report = ending.report(machine, seg, config, result, sup, 10.7, Interrupts(False), [])  # type: ignore[arg-type]
    finally:
        holder.unlock(LEAKED)
        _publish_wait(machine, 1, -1, 0)
        seg.close()
    assert [(f.rule, f.cpu) for f in report.findings] == [("cpu-died", 0)], report.text()
    stuck = f"CPU 1 was stuck behind it: it waited for {holder.addr(LEAKED):#x}, which CPU 0 held, and {how}"
    assert report.findings[0].details[0] == stuck, report.text()
    assert report.unreported == (0, 1), report.text()
    assert report.unreported_ops == {0: 3, 1: 2}, report.text()
    assert ("0 operations (over the CPUs that returned a result; 5 more counted in shared memory by CPUs 0 and 1, "
            "which returned none) in 10.7 s") in report.summary(), report.summary()
    assert report.to_json()["operations_unreported"] == {0: 3, 1: 2}


def test_a_chain_of_waiters_behind_a_stopped_holder_is_folded_whole(machine: Machine) -> None:
    """Free-running, CPU 0 stopped (SIGSTOP) holding a lock CPU 1 spins on, while CPU 1 holds
    one CPU 2 spins on: all three are terminated at the grace time's end. The cpu-died finding
    of CPU 0 names CPU 1 as stuck behind it and then CPU 2 as stuck behind CPU 1; neither is a
    finding of its own. Before, only CPU 1 was folded, and CPU 2 (its holder waiting itself)
    was a second cpu-died finding."""
    from rmm_mp.cpu_outcome import CpuFailure, RunResult
    from rmm_mp.interrupts import Interrupts
    from rmm_mp.stress import ending
    how = "did not stop within 5 s of being asked and was terminated"
    first, second = machine.granule_table(1), machine.granule_table(2)     # CPU 0's and CPU 1's lock words
    first.lock(LEAKED)
    second.lock(LEAKED + 1)
    _publish_wait(machine, 1, LEAKED, 1000)
    _publish_wait(machine, 2, LEAKED + 1, 1000)
    seg = StressSegment.create(machine.name, 3, MODE_FREE, 0, 0, 1)
    sup = SimpleNamespace(plan=None, timed_out=False, started=False, stopping=None, stopped_cpu=None, findings=[],
                          ready_at=0.0, first=-1, quiescent_checks=0, startup_s=0.6, roles={})
    result = RunResult({}, (CpuFailure(0, how, "", (first.addr(LEAKED),), terminated=True),
                            CpuFailure(1, how, "", (second.addr(LEAKED + 1),), terminated=True),
                            CpuFailure(2, how, "", (), terminated=True)), False, 10.7, "time is up")
    config = StressConfig(workload="mixed", cpus=3, seconds=5, checkers=("watchdog",))
    try:
        for cpu in range(3):
            seg.set_status(cpu, RUNNING)
        seg.set_end(END_ABORT)
        report = ending.report(machine, seg, config, result, sup, 10.7, Interrupts(False), [])  # type: ignore[arg-type]
    finally:
        first.unlock(LEAKED)
        second.unlock(LEAKED + 1)
        _publish_wait(machine, 1, -1, 0)
        _publish_wait(machine, 2, -1, 0)
        seg.close()
    assert [(f.rule, f.cpu) for f in report.findings] == [("cpu-died", 0)], report.text()
    assert report.findings[0].details[:2] == (
        f"CPU 1 was stuck behind it: it waited for {first.addr(LEAKED):#x}, which CPU 0 held, and {how}",
        f"CPU 2 was stuck behind CPU 1: it waited for {second.addr(LEAKED + 1):#x}, which CPU 1 held, and {how}",
    ), report.text()


def test_a_finding_line_with_a_control_character_is_printed_escaped() -> None:
    """A CPU failure's finding quotes its exception's message and the last lines of its
    traceback as the CPU process said them: an ESC there (a path, a guest's bytes) reached the
    terminal raw in the stress report. Such a line is shown as a TOML basic string; a line
    without one, and a tab, are as they were."""
    finding = Finding("watchdog", "cpu-died", "CPU 1 raised OSError: /tmp/\x1b[2J", 1, "RMI_DATA_CREATE", "",
                      ("CPU 0: idle", "OSError: /tmp/\x1b[2J/x", "\tat x"))
    lines = finding.text().splitlines()
    assert "\x1b" not in finding.text()
    assert lines[0] == '"[watchdog: cpu-died] CPU 1: CPU 1 raised OSError: /tmp/\\u001B[2J"', lines
    assert lines[1:] == ["    in RMI_DATA_CREATE", "    CPU 0: idle", '    "OSError: /tmp/\\u001B[2J/x"', "    \tat x"], lines
