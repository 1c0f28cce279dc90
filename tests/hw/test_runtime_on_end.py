"""run_cpus' on_end on the paths where the run ends by an error: called once, with every CPU
process gone, and never letting what it raises replace the error that ended the run. And an
error of run_cpus' own clean-up: it skips neither on_end nor a step of the clean-up, and does
not replace what else leaves run_cpus."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable

import pytest

from rmm_mp import Machine
from rmm_mp.runtime import run_cpus
from test_runtime_stop import _all_bound, _until_stopped


def _cpu_children() -> list[str]:
    return [p.name for p in multiprocessing.active_children() if p.name.startswith("rmm-mp-cpu")]


@pytest.mark.multiprocess
@pytest.mark.parametrize("raised", [None, ValueError("on_end's bug"), KeyboardInterrupt("Ctrl-C")],
                         ids=["returns", "error", "keyboard-interrupt"])
def test_an_error_of_the_parents_tells_on_end_once_and_wins_over_what_it_raises(machine: Machine,
                                                                               raised: BaseException | None) -> None:
    """The parent's tick raises once both CPUs have had their go. on_end is called once, after
    every CPU process is gone, and the tick's error leaves run_cpus whatever on_end does: an
    exception or a KeyboardInterrupt of its own is dropped and named in a note of the error's.
    Before, a KeyboardInterrupt of on_end's left run_cpus in place of the error (a caller took
    CPUs that had run for CPUs never started, as a Ctrl-C there did), and an exception of its
    own was dropped without a word."""
    calls: list[list[str]] = []

    def on_tick(elapsed: float) -> str | None:
        if _all_bound(machine, [0, 1]):
            raise RuntimeError("the parent's tick failed")
        if elapsed > 120:
            return "the CPUs never bound"
        return None

    def on_end() -> None:
        calls.append(_cpu_children())
        if raised is not None:
            raise raised

    with pytest.raises(RuntimeError, match="the parent's tick failed") as err:
        try:
            run_cpus(machine, _until_stopped, [0, 1], on_tick=on_tick, tick_s=0.05, on_end=on_end)
        except KeyboardInterrupt as exc:    # not let through: it would end the whole session
            pytest.fail(f"KeyboardInterrupt({exc}) left run_cpus in place of the error")
    assert calls == [[]], calls
    notes = getattr(err.value, "__notes__", [])
    if raised is None:
        assert notes == []
    else:
        assert notes == [f"run_cpus: on_end raised too, dropped: {type(raised).__name__}: {raised}"], notes


@pytest.mark.multiprocess
def test_an_error_of_on_ends_own_at_the_runs_end_leaves_once(machine: Machine) -> None:
    """on_end raises at the run's end (every CPU returned): its error leaves run_cpus, unnoted,
    and on_end is not called a second time by run_cpus' clean-up after that error."""
    calls: list[int] = []

    def on_end() -> None:
        calls.append(1)
        raise ValueError("on_end's bug")

    with pytest.raises(ValueError, match="on_end's bug") as err:
        run_cpus(machine, _until_stopped, [0, 1], timeout_s=0.5, tick_s=0.05, on_end=on_end)
    assert calls == [1] and not getattr(err.value, "__notes__", [])


@pytest.mark.multiprocess
def test_a_cpu_process_that_cannot_be_started_tells_on_end_nothing(machine: Machine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Process.start fails for the 2nd CPU: no run began (no CPU had its go), so on_end is not
    called; CpuStartError leaves run_cpus."""
    import multiprocessing.context
    from rmm_mp.cpu_outcome import CpuStartError

    real_start = multiprocessing.context.SpawnProcess.start
    started: list[Any] = []

    def start(self: Any) -> None:
        if started:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        real_start(self)
        started.append(self)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start)
    calls: list[int] = []
    with pytest.raises(CpuStartError):
        run_cpus(machine, _until_stopped, [0, 1], on_end=lambda: calls.append(1))
    assert calls == []


def _tick_fails_once_bound(machine: Machine, armed: list[bool]) -> Callable[[float], str | None]:
    """An on_tick that, once CPUs 0 and 1 are bound, arms the clean-up's failure (``armed``) and
    fails as the supervisor's error; a run whose CPUs never bind is stopped after 120 s."""
    def on_tick(elapsed: float) -> str | None:
        if _all_bound(machine, [0, 1]):
            armed[0] = True
            raise RuntimeError("the parent's tick failed")
        if elapsed > 120:
            return "the CPUs never bound"
        return None
    return on_tick


def _fail_in_cleanup(monkeypatch: pytest.MonkeyPatch, where: str, armed: list[bool]) -> str:
    """Once ``armed[0]``, make run_cpus' clean-up fail at ``where`` ("feeder join": joining an
    args feeder thread; "process close": closing a reaped CPU process), after the real call has
    done its work: once per feeder or process, so a run of two CPUs fails there twice. Returns
    the note run_cpus is to write of each failure."""
    import threading
    import multiprocessing.process

    if where == "feeder join":
        real_join = threading.Thread.join

        def join(self: threading.Thread, timeout: float | None = None) -> None:
            real_join(self, timeout)
            if armed[0] and self.name.startswith("rmm-mp-args"):
                raise OSError(5, "feeder join failed")

        monkeypatch.setattr(threading.Thread, "join", join)
        return "run_cpus: its clean-up raised too, dropped: OSError: [Errno 5] feeder join failed"
    real_close = multiprocessing.process.BaseProcess.close

    def close(self: multiprocessing.process.BaseProcess) -> None:
        real_close(self)
        if armed[0]:
            raise ValueError("process close failed")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "close", close)
    return "run_cpus: its clean-up raised too, dropped: ValueError: process close failed"


@pytest.mark.multiprocess
@pytest.mark.parametrize("where", ["feeder join", "process close"])
def test_a_cleanup_error_after_the_parents_error_still_tells_on_end_and_the_error_wins(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The parent's tick raises once both CPUs have had their go, and run_cpus' own clean-up
    then fails too (``where``). on_end is still called once, with every CPU process gone, and
    the tick's error leaves run_cpus with a note naming the clean-up's. Before, the clean-up's
    error left run_cpus in place of the tick's and on_end was never called (a caller whose
    Ctrl-C handler raised until on_end kept it raising after the run). Each CPU's feeder or
    process fails there: both failures are named, in order (before, only the first was)."""
    armed = [False]
    note = _fail_in_cleanup(monkeypatch, where, armed)
    calls: list[list[str]] = []

    on_tick = _tick_fails_once_bound(machine, armed)

    with pytest.raises(RuntimeError, match="the parent's tick failed") as err:
        run_cpus(machine, _until_stopped, [0, 1], on_tick=on_tick, tick_s=0.05,
                 on_end=lambda: calls.append(_cpu_children()))
    armed[0] = False
    assert calls == [[]], calls
    assert getattr(err.value, "__notes__", []) == [note, note]
    assert _cpu_children() == []


def _open_fds() -> int:
    import os
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.multiprocess
@pytest.mark.parametrize("where", ["feeder join", "process close"])
def test_a_cleanup_error_after_a_complete_run_is_raised_once_everything_is_closed(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Every CPU returned (time is up), then run_cpus' own clean-up fails (``where``), once per
    CPU: the first error leaves run_cpus, the second named in a note of it (before, it was lost
    without a word), once on_end was called (once) and every CPU process is reaped and
    every pipe end and process closed: no file descriptor is left open. Before, the steps after
    the failing one were left undone: the lifelines' and result pipes' ends and the processes'
    sentinels stayed open for as long as the error's traceback held run_cpus' frame."""
    import multiprocessing.resource_tracker
    multiprocessing.resource_tracker.ensure_running()   # its pipe, once per process, is no leak
    armed = [False]
    note = _fail_in_cleanup(monkeypatch, where, armed)
    calls: list[list[str]] = []

    def on_end() -> None:
        calls.append(_cpu_children())
        armed[0] = True     # the clean-up comes after it

    before = _open_fds()
    with pytest.raises((OSError, ValueError), match="failed") as err:
        run_cpus(machine, _until_stopped, [0, 1], timeout_s=0.3, tick_s=0.05, on_end=on_end)
    armed[0] = False
    assert calls == [[]] and _cpu_children() == []
    assert getattr(err.value, "__notes__", []) == [note]
    assert _open_fds() == before, "a pipe end or a process sentinel was left open"


@pytest.mark.multiprocess
@pytest.mark.parametrize("raised", [OSError(12, "Cannot allocate memory"), KeyboardInterrupt("Ctrl-C")],
                         ids=["cpu-start-error", "keyboard-interrupt"])
def test_a_cleanup_error_after_a_failed_start_leaves_what_the_start_raised(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, raised: BaseException) -> None:
    """Process.start raises for the 2nd CPU (an OSError: CpuStartError; a KeyboardInterrupt, as a
    Ctrl-C there is), and closing the 1st CPU's reaped process then fails: what the start raised
    leaves run_cpus, with a note naming the clean-up's error, and nothing is left open.
    Before, the clean-up's ValueError left run_cpus in its place (a command's Ctrl-C or its
    'cannot start CPU' error became a traceback)."""
    import multiprocessing.context
    import multiprocessing.resource_tracker
    from rmm_mp.cpu_outcome import CpuStartError

    multiprocessing.resource_tracker.ensure_running()
    real_start = multiprocessing.context.SpawnProcess.start
    started: list[Any] = []
    armed = [False]

    def start(self: Any) -> None:
        if started:
            armed[0] = True
            raise raised
        real_start(self)
        started.append(self)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start)
    note = _fail_in_cleanup(monkeypatch, "process close", armed)
    before = _open_fds()
    with pytest.raises(CpuStartError if isinstance(raised, OSError) else KeyboardInterrupt) as err:
        run_cpus(machine, _until_stopped, [0, 1])
    armed[0] = False
    assert getattr(err.value, "__notes__", []) == [note]
    assert _cpu_children() == [] and _open_fds() == before


@pytest.mark.multiprocess
def test_a_failure_just_after_a_cpu_process_started_leaves_it_killed_reaped_and_closed(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the parent's copy of the child's pipe end fails just after CPU 0's process has
    started (an OSError, after the real close). That error leaves run_cpus as it is, and the
    started process is killed, reaped and closed, its pipe ends too: no file descriptor is left
    open. Before, the process was registered only after those closes: run_cpus never killed,
    reaped nor closed it, and its result pipe, its lifeline's read end and its sentinel stayed
    open for as long as the error's traceback held run_cpus' frame."""
    import multiprocessing.connection
    import multiprocessing.context
    import multiprocessing.resource_tracker

    multiprocessing.resource_tracker.ensure_running()
    real_start = multiprocessing.context.SpawnProcess.start
    real_close = multiprocessing.connection.Connection.close
    started: list[Any] = []
    armed = [False]

    def start(self: Any) -> None:
        real_start(self)
        started.append(self)
        armed[0] = True

    def close(self: multiprocessing.connection.Connection) -> None:
        real_close(self)
        if armed[0]:
            armed[0] = False
            raise OSError(5, "close failed")

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start)
    monkeypatch.setattr(multiprocessing.connection.Connection, "close", close)
    before = _open_fds()
    with pytest.raises(OSError, match="close failed"):
        run_cpus(machine, _until_stopped, [0, 1])
    assert len(started) == 1
    with pytest.raises(ValueError, match="closed"):
        started[0].exitcode     # closed by run_cpus, so reaped first
    assert _open_fds() == before, "a pipe end or a process sentinel was left open"
    assert _cpu_children() == []


@pytest.mark.multiprocess
def test_a_kill_that_raises_in_the_clean_up_still_has_the_process_reaped_and_closed(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's tick raises once both CPUs have had their go, and killing them in run_cpus'
    clean-up raises (EPERM; the SIGKILL lands 0.2 s later, as one that raised after all).
    The tick's error leaves run_cpus with a note naming each CPU's kill's error (before, only the
    first CPU's was named, the second's lost without a word), and each CPU process is
    still reaped and closed by run_cpus. Before, a process whose kill raised was not waited for:
    closing it then failed ("still running", a second error dropped without a word) and it
    was left unreaped and open."""
    import multiprocessing.process
    import os
    import signal
    import threading

    armed = [False]
    timers: list[threading.Timer] = []

    def kill(self: multiprocessing.process.BaseProcess) -> None:
        if not armed[0]:
            raise AssertionError("killed before the tick's error")
        pid = self.pid
        assert pid is not None
        timers.append(threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)))
        timers[-1].start()
        raise OSError(1, "kill failed")

    on_tick = _tick_fails_once_bound(machine, armed)

    started: list[multiprocessing.process.BaseProcess] = []
    real_start = multiprocessing.process.BaseProcess.start

    def start(self: multiprocessing.process.BaseProcess) -> None:
        real_start(self)
        started.append(self)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "kill", kill)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    with pytest.raises(RuntimeError, match="the parent's tick failed") as err:
        run_cpus(machine, _until_stopped, [0, 1], on_tick=on_tick, tick_s=0.05)
    for timer in timers:    # each SIGKILL sent while its process is ours (unreaped), not later
        timer.join()
    assert getattr(err.value, "__notes__", []) == [
        "run_cpus: its clean-up raised too, dropped: PermissionError: [Errno 1] kill failed"] * 2
    assert len(started) == 2
    for proc in started:
        with pytest.raises(ValueError, match="closed"):
            proc.exitcode   # closed by run_cpus, so reaped first
    assert _cpu_children() == []


@pytest.mark.multiprocess
def test_a_request_to_exit_during_the_clean_up_after_an_error_leaves_run_cpus(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's tick raises once both CPUs have had their go, and a SystemExit is raised
    during run_cpus' clean-up (as a library caller's SIGTERM handler that calls sys.exit does,
    reached through the machine's handler, which has closed every machine by then): the
    SystemExit leaves run_cpus, once on_end was called and every CPU process is gone. Before,
    the clean-up caught it as an error of its own and the tick's error left run_cpus with a
    note naming it: the process went on, its machines closed, though asked to exit."""
    import threading

    real_join = threading.Thread.join
    armed = [False]

    def join(self: threading.Thread, timeout: float | None = None) -> None:
        real_join(self, timeout)
        if armed[0] and self.name.startswith("rmm-mp-args"):
            armed[0] = False
            raise SystemExit(143)

    on_tick = _tick_fails_once_bound(machine, armed)

    monkeypatch.setattr(threading.Thread, "join", join)
    calls: list[list[str]] = []
    with pytest.raises(SystemExit) as err:
        run_cpus(machine, _until_stopped, [0, 1], on_tick=on_tick, tick_s=0.05,
                 on_end=lambda: calls.append(_cpu_children()))
    assert err.value.code == 143
    assert isinstance(err.value.__context__, RuntimeError)
    assert calls == [[]] and _cpu_children() == []


@pytest.mark.multiprocess
def test_a_request_to_exit_leaving_run_cpus_wins_over_a_cleanup_error(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's tick raises SystemExit once both CPUs have had their go (a SIGTERM handler's
    sys.exit as it ran), and run_cpus' clean-up then fails (an args feeder's join): the
    SystemExit leaves run_cpus, the clean-up's errors (one per CPU) named in notes of it, and every CPU
    process is gone. Before, only an error or a Ctrl-C counted as leaving: the clean-up's
    error was raised in place of the SystemExit."""
    armed = [False]
    note = _fail_in_cleanup(monkeypatch, "feeder join", armed)

    def on_tick(elapsed: float) -> str | None:
        if _all_bound(machine, [0, 1]):
            armed[0] = True
            raise SystemExit(143)
        if elapsed > 120:
            return "the CPUs never bound"
        return None

    with pytest.raises(SystemExit) as err:
        run_cpus(machine, _until_stopped, [0, 1], on_tick=on_tick, tick_s=0.05)
    armed[0] = False
    assert err.value.code == 143 and getattr(err.value, "__notes__", []) == [note, note]
    assert _cpu_children() == []


@pytest.mark.multiprocess
def test_every_failing_step_of_the_clean_up_is_named_in_the_order_it_came(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's tick raises once both CPUs have had their go, and two different steps of
    run_cpus' clean-up then fail: joining the args feeders, and later closing the reaped CPU
    processes. The tick's error leaves run_cpus with a note for each failure, in the clean-up's
    order (feeders before processes). Before, only the first failure was named; the later
    ones, the process closes among them, were lost without a word."""
    armed = [False]
    joined = _fail_in_cleanup(monkeypatch, "feeder join", armed)
    closed = _fail_in_cleanup(monkeypatch, "process close", armed)
    with pytest.raises(RuntimeError, match="the parent's tick failed") as err:
        run_cpus(machine, _until_stopped, [0, 1], on_tick=_tick_fails_once_bound(machine, armed), tick_s=0.05)
    armed[0] = False
    assert getattr(err.value, "__notes__", []) == [joined, joined, closed, closed]
    assert _cpu_children() == []
