"""A Ctrl-C during run_cpus' own clean-up (killing and reaping the CPU processes, joining the args
feeders, closing every pipe end and process) after the run ended: every step is still done, and
the interrupt is raised once they are. Each test checks that no CPU process, file descriptor nor
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
    return sorted(os.listdir(segment.SHM_DIR)) if os.path.isdir(segment.SHM_DIR) else []


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
    supervisor ends or the clean-up begins. The steps after it are still done (every CPU process reaped and closed, every pipe end closed: no file
    descriptor left) and the KeyboardInterrupt leaves run_cpus once they are, the handler back.
    Before, the supervisor had put the handlers back at the run's end: the interrupt was raised
    out of the clean-up at once (as it began: none of its steps done), the lifelines' write ends
    and the processes' sentinels left open for as long as its traceback held run_cpus' frame (the
    processes were reaped already, and the machine's shared memory is its creator's: neither was
    left). One as the supervisor ended left run_cpus through its except clause, the clean-up done."""
    line = _line_of(func, where)
    sent: list[int] = []
    before_fds, before_segments = _open_fds(), _segments()
    with Machine.create("host", cpus=2) as m:
        raised: BaseException | None = None
        sys.settrace(_sigint_at(func.__code__, line, sent))
        try:
            run_cpus(m, _until_stopped, timeout_s=0.3, tick_s=0.05)
        except BaseException as exc:     # noqa: BLE001 - a KeyboardInterrupt too, not ending pytest's run
            raised = exc
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
        raised: BaseException | None = None
        try:
            run_cpus(m, _until_stopped, timeout_s=0.3, tick_s=0.05)
        except BaseException as exc:     # noqa: BLE001
            raised = exc
        monkeypatch.setattr(threading.Thread, "join", real_join)
    assert sent, "the Ctrl-C was never sent"
    assert isinstance(raised, KeyboardInterrupt), repr(raised)
    assert len(started) == 2 and all(p._closed for p in started), started     # type: ignore[attr-defined]
    assert _cpu_children() == []
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _segments() == before_segments


@pytest.mark.multiprocess
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
    assert ran and by == "Ctrl-C", (ran, by)
    assert sorted(result.results) == [0, 1] and not result.interrupted, result
    assert handlers == (guard, guard), handlers
    assert len(started) == 2 and all(p._closed for p in started), started     # type: ignore[attr-defined]
    assert _open_fds() == before_fds, "a pipe end or a process sentinel was left open"
    assert _segments() == before_segments
