"""A Ctrl-C during run_cpus' own clean-up (killing and reaping the CPU processes, joining the args
feeders, closing every pipe end and process) after the run ended: every step is still done, and
the interrupt is raised once they are. And one as the CPUs start: what it replaces, and the
clean-up's errors, are said. Each test checks that no CPU process, file descriptor nor
shared-memory segment is left."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Iterator

import pytest

from rmm_mp import Machine, runtime
from rmm_mp.cpu_supervisor import _Supervisor
from rmm_mp.hw import segment
from rmm_mp.runtime import run_cpus
from test_runtime_stop import _until_stopped


def _cpu_children() -> list[str]:
    return [p.name for p in multiprocessing.active_children() if p.name.startswith("rmm-mp-cpu")]


def _open_fds() -> list[str]:
    fds = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            fds.append(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:     # the listing's own descriptor, closed by now
            pass
    return fds


def _segments() -> list[str]:
    """This process's shared memory files: the directory also holds other xdist workers'
    machines, made and closed meanwhile, and orphans that a Machine.create reaps."""
    mine = f"{segment.NAME_PREFIX}{os.getpid()}-"
    names = os.listdir(segment.SHM_DIR) if os.path.isdir(segment.SHM_DIR) else []
    return sorted(name for name in names if name.startswith(mine))


def _raised(run: Callable[[], object]) -> BaseException | None:
    """What ``run`` raised (a KeyboardInterrupt too, kept from ending pytest's run), or None."""
    try:
        run()
    except BaseException as exc:     # noqa: BLE001
        return exc
    return None


def _line_of(func: Callable[..., Any], text: str) -> int:
    """The number of the line of ``func``'s source that starts with ``text`` (stripped)."""
    lines, first = inspect.getsourcelines(func)
    hits = [first + i for i, line in enumerate(lines) if line.strip().startswith(text)]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def _sigint_at(code: Any, line: int, sent: list[int]) -> Callable[..., Any]:
    """A trace function that sends this process SIGINT the first time ``code`` reaches ``line``:
    a Ctrl-C whose handler runs there, between two of the clean-up's steps, deterministically
    (signal.raise_signal runs the Python handler before it returns)."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == line and not sent:
            sent.append(line)
            signal.raise_signal(signal.SIGINT)
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    return tracer


# Where the Ctrl-C lands once every CPU is gone: as the supervisor ends, as run_cpus' clean-up
# begins, and between its steps (each step runs inside a try of its own: a Ctrl-C inside one was
# already caught, and raised once the rest was done).
_BETWEEN_STEPS = [(_Supervisor.wait, "for pipe in self.pipes.values():"),
                  (runtime.run_cpus, "exit_request = leaving if"),
                  (runtime._clean_up, "for feeder in feeders:"),
                  (runtime._clean_up, "for life_writer in lifelines:"),
                  (runtime._clean_up, "for reader in pipes.values():"),
                  (runtime._clean_up, "for proc in procs.values():     # each is reaped")]


def _in_clean_up() -> bool:
    """Whether run_cpus' clean-up is on the stack (the feeders are joined as the CPUs start too)."""
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code is runtime._clean_up.__code__:
            return True
        frame = frame.f_back
    return False


_warmed: list[bool] = []


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[multiprocessing.process.BaseProcess]]:
    """The CPU processes run_cpus starts, as they start, after a first run: the descriptors a
    process's first run opens for good (the resource tracker's pipe, and one more) are no leak."""
    if not _warmed:
        with Machine.create("host", cpus=1) as m:
            run_cpus(m, _until_stopped, timeout_s=0.1, tick_s=0.05)
        _warmed.append(True)
    procs: list[multiprocessing.process.BaseProcess] = []
    real_start = multiprocessing.process.BaseProcess.start

    def start(self: multiprocessing.process.BaseProcess) -> None:
        real_start(self)
        procs.append(self)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    yield procs


@pytest.mark.multiprocess
@pytest.mark.usefixtures("ctrl_c")
@pytest.mark.parametrize("func, where", _BETWEEN_STEPS, ids=[f"{f.__name__}: {w}" for f, w in _BETWEEN_STEPS])
def test_a_ctrl_c_between_the_clean_ups_steps_after_a_complete_run_skips_none_and_is_raised_after(
        started: list[multiprocessing.process.BaseProcess], func: Callable[..., Any], where: str) -> None:
    """Every CPU returned (time is up); a Ctrl-C then lands between two steps of run_cpus' clean-up
    (its handler run at ``where``, Python's own: a library caller with no guard), or as the
    supervisor ends or the clean-up begins. The steps after it are still done (every CPU process
    reaped and closed, every pipe end closed: no file descriptor left) and the KeyboardInterrupt leaves run_cpus once they are, the handler back.
    Before, the supervisor had put the handlers back at the run's end: the interrupt was raised
    out of the clean-up at once (as it began: none of its steps done), the lifelines' write ends
    and the processes' sentinels left open for as long as its traceback held run_cpus' frame (the
    processes were reaped already, and the machine's shared memory is its creator's: neither was
    left). One as the supervisor ended left run_cpus through its except clause, the clean-up done."""
    line = _line_of(func, where)
    sent: list[int] = []
    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        sys.settrace(_sigint_at(func.__code__, line, sent))
        try:
            raised = _raised(lambda: run_cpus(m, _until_stopped, timeout_s=0.3, tick_s=0.05))
        finally:
            sys.settrace(None)
    assert sent == [line], "the Ctrl-C was never sent"
    assert isinstance(raised, KeyboardInterrupt), repr(raised)
    assert len(started) == 2 and all(p._closed for p in started), started     # type: ignore[attr-defined]
    assert _cpu_children() == []
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _segments() == before_segments


@pytest.mark.multiprocess
@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_inside_a_clean_up_step_after_a_complete_run_skips_none_and_is_raised_after(
        started: list[multiprocessing.process.BaseProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    """As above, the Ctrl-C landing inside a step (joining the first args feeder): every step is
    still done and the KeyboardInterrupt leaves run_cpus after them (as it did before)."""
    real_join = threading.Thread.join
    sent: list[str] = []

    def join(self: threading.Thread, timeout: float | None = None) -> None:
        real_join(self, timeout)
        if self.name.startswith("rmm-mp-args") and not sent and _in_clean_up():
            sent.append(self.name)
            signal.raise_signal(signal.SIGINT)

    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        monkeypatch.setattr(threading.Thread, "join", join)
        raised = _raised(lambda: run_cpus(m, _until_stopped, timeout_s=0.3, tick_s=0.05))
        monkeypatch.setattr(threading.Thread, "join", real_join)
    assert sent, "the Ctrl-C was never sent"
    assert isinstance(raised, KeyboardInterrupt), repr(raised)
    assert len(started) == 2 and all(p._closed for p in started), started     # type: ignore[attr-defined]
    assert _cpu_children() == []
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _segments() == before_segments


def _ctrl_c_as_cpu_1_starts(monkeypatch: pytest.MonkeyPatch, armed: list[bool],
                            fails: BaseException | None = None) -> list[int]:
    """Send this process SIGINT as CPU 1's process is started (blocked there: the hold notes it
    once run_cpus lets it through), arming ``armed``, then start it or raise ``fails``."""
    real_start = multiprocessing.process.BaseProcess.start
    sent: list[int] = []

    def start(self: multiprocessing.process.BaseProcess) -> None:
        if self.name == "rmm-mp-cpu1":
            sent.append(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            armed[0] = True
            if fails is not None:
                raise fails
        real_start(self)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    return sent


@pytest.mark.multiprocess
@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_as_the_cpus_start_then_a_start_error_and_a_cleanup_error_are_all_said(
        started: list[multiprocessing.process.BaseProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C comes as CPU 1's process is started, whose start then fails (ENOMEM: a
    CpuStartError), and closing CPU 0's reaped process in run_cpus' clean-up fails too. The Ctrl-C
    leaves run_cpus (a command reports its CPUs as not started), with a note naming the
    CpuStartError it was raised in place of and one naming the clean-up's error, and nothing is
    left open. Before, the KeyboardInterrupt had no note: both were only in its context's
    (the CpuStartError's) notes, which a command that takes the interrupt never said."""
    from rmm_mp.cpu_outcome import CpuStartError
    from test_runtime_on_end import _fail_in_cleanup
    armed = [False]
    sent = _ctrl_c_as_cpu_1_starts(monkeypatch, armed, OSError(12, "Cannot allocate memory"))
    closed = _fail_in_cleanup(monkeypatch, "process close", armed)
    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        raised = _raised(lambda: run_cpus(m, _until_stopped, timeout_s=60.0))
        armed[0] = False
    assert sent == [signal.SIGINT]
    assert isinstance(raised, KeyboardInterrupt) and raised.args == ("Ctrl-C",), repr(raised)
    assert isinstance(raised.__context__, CpuStartError)
    assert getattr(raised, "__notes__", []) == [
        "run_cpus: dropped for this interrupt: CpuStartError: CPU 1's process could not be started: OSError: "
        "[Errno 12] Cannot allocate memory; the CPU process already started (CPU 0) killed", closed]
    assert len(started) == 1 and _cpu_children() == []
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _segments() == before_segments


@pytest.mark.multiprocess
@pytest.mark.usefixtures("ctrl_c")
def test_a_cleanup_error_after_a_ctrl_c_as_the_cpus_started_says_the_run_was_interrupted(
        started: list[multiprocessing.process.BaseProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C comes as CPU 1's process is started: both are killed as never started (the
    run's result: interrupted, not_started (0, 1)); closing each reaped process in run_cpus'
    clean-up then fails. The first close's error leaves run_cpus, the result lost to it, with a
    note saying that the run had been interrupted and which CPUs never started, then one naming
    the second close's error; nothing is left open. Before, the error said nothing of the
    interrupt: a command reported a plain error where the user had pressed Ctrl-C."""
    from test_runtime_on_end import _fail_in_cleanup
    armed = [False]
    sent = _ctrl_c_as_cpu_1_starts(monkeypatch, armed)
    closed = _fail_in_cleanup(monkeypatch, "process close", armed)
    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        raised = _raised(lambda: run_cpus(m, _until_stopped, timeout_s=60.0))
        armed[0] = False
    assert sent == [signal.SIGINT]
    assert isinstance(raised, ValueError) and str(raised) == "process close failed", repr(raised)
    assert getattr(raised, "__notes__", []) == [
        "run_cpus: the run had been interrupted (Ctrl-C); CPUs never started: 0, 1; its result is lost to this error",
        closed]
    assert len(started) == 2 and _cpu_children() == []
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _segments() == before_segments


@pytest.mark.multiprocess
@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_between_the_clean_ups_steps_names_the_clean_ups_errors(
        started: list[multiprocessing.process.BaseProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    """As above (the Ctrl-C landing as the lifelines are closed), and joining each args feeder
    failed before it: the KeyboardInterrupt leaves run_cpus once every step is done, with a note
    naming each join's error, in order (before, it skipped the rest and named none)."""
    from test_runtime_on_end import _fail_in_cleanup
    armed = [False]
    joined = _fail_in_cleanup(monkeypatch, "feeder join", armed)
    line = _line_of(runtime._clean_up, "for life_writer in lifelines:")
    sent: list[int] = []
    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        sys.settrace(_sigint_at(runtime._clean_up.__code__, line, sent))
        try:
            raised = _raised(lambda: run_cpus(m, _until_stopped, timeout_s=0.3, tick_s=0.05,
                                              on_end=lambda: armed.__setitem__(0, True)))
        finally:
            sys.settrace(None)
            armed[0] = False
    assert sent == [line]
    assert isinstance(raised, KeyboardInterrupt), repr(raised)
    assert getattr(raised, "__notes__", []) == [joined, joined]
    assert len(started) == 2 and all(p._closed for p in started), started     # type: ignore[attr-defined]
    assert _cpu_children() == []
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert _segments() == before_segments


@pytest.mark.multiprocess
@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_between_the_clean_ups_steps_under_a_commands_guard_is_noted_by_it(
        started: list[multiprocessing.process.BaseProcess]) -> None:
    """Under a command's guard (Interrupts, its run_over as on_end, as `rmm-mp run` has it), a
    Ctrl-C between two steps of the clean-up after a complete run meets the guard's handler,
    which notes it: run_cpus returns the run's result, every step done, and the guard names the
    Ctrl-C (the command reports the run as interrupted after it)."""
    from rmm_mp.interrupts import Interrupts, forget_signals
    line = _line_of(runtime._clean_up, "for reader in pipes.values():")
    sent: list[int] = []
    forget_signals()
    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        with Interrupts(sigterm=True) as stop:
            sys.settrace(_sigint_at(runtime._clean_up.__code__, line, sent))
            try:
                ran, result = stop.passthrough(lambda: run_cpus(m, _until_stopped, timeout_s=0.3, tick_s=0.05,
                                                                on_end=stop.run_over))
            finally:
                sys.settrace(None)
            by = stop.by
            guard = stop._handler
            handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert sent == [line]
    assert ran and by == "Ctrl-C", (ran, by, result, handlers, guard)
    assert sorted(result.results) == [0, 1] and not result.interrupted, result
    assert handlers == (guard, guard), handlers
    assert len(started) == 2 and all(p._closed for p in started), started     # type: ignore[attr-defined]
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert _segments() == before_segments


def _signals_at(code: Any, line: int, signums: list[int], sent: list[int]) -> Callable[..., Any]:
    """As _sigint_at, sending each of ``signums`` in turn (their handlers run before the next)."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == line and not sent:
            sent.append(line)
            for signum in signums:
                signal.raise_signal(signum)
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    return tracer


_SIGNALS_IN_CLEAN_UP = [((signal.SIGTERM,), "SIGTERM"), ((signal.SIGINT, signal.SIGINT), "Ctrl-C"),
                        ((signal.SIGTERM, signal.SIGINT), "SIGTERM")]


@pytest.mark.multiprocess
@pytest.mark.usefixtures("ctrl_c")
@pytest.mark.parametrize("signums, first", _SIGNALS_IN_CLEAN_UP,
                         ids=["+".join(signal.Signals(s).name for s in sigs) for sigs, _ in _SIGNALS_IN_CLEAN_UP])
def test_a_sigterm_or_a_second_signal_in_the_clean_up_with_sigterm_stops_is_one_interrupt_raised_after(
        started: list[multiprocessing.process.BaseProcess], signums: tuple[int, ...], first: str) -> None:
    """A library caller with ``sigterm_stops`` and no guard: SIGTERM's own handler is the
    machine's (it closes every machine and ends the process). A SIGTERM between two steps of the
    clean-up after a complete run is taken as a Ctrl-C is (the run's result lost to it), not
    handed to that handler: KeyboardInterrupt("SIGTERM") once every step is done, the machine's
    handler back. Two signals there are one interrupt, the first, not a second one raised out
    of the clean-up or out of the caller's handling of the first. Before the hold stood through
    the clean-up, the SIGTERM met the machine's handler there and ended the process (test-only:
    this pins the behaviour documented in run_cpus' Raises and docs/architecture.md)."""
    line = _line_of(runtime._clean_up, "for feeder in feeders:")
    sent: list[int] = []
    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        term_handler = signal.getsignal(signal.SIGTERM)
        assert callable(term_handler) and term_handler is not signal.default_int_handler
        sys.settrace(_signals_at(runtime._clean_up.__code__, line, list(signums), sent))
        try:
            raised = _raised(lambda: run_cpus(m, _until_stopped, timeout_s=0.3, tick_s=0.05, sigterm_stops=True))
        finally:
            sys.settrace(None)
        assert signal.getsignal(signal.SIGTERM) is term_handler
    assert sent == [line], "the signals were never sent"
    assert isinstance(raised, KeyboardInterrupt) and raised.args == (first,), repr(raised)
    assert len(started) == 2 and all(p._closed for p in started), started     # type: ignore[attr-defined]
    assert _cpu_children() == []
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _segments() == before_segments
