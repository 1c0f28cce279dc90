"""The supervisor's hold on Ctrl-C and SIGTERM (rmm_mp.interrupt_hold, as rmm_mp.runtime uses it):
what an interrupt that lands inside the supervisor's own handling, or beside an error, does.
No CPU processes: the supervisor's pieces are driven directly, and each signal is raised at the
exact point (signal.raise_signal, a patched function), not timed."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from rmm_mp import Machine, cpu_start
from rmm_mp.interrupts import forget_signals
from rmm_mp.runtime import _Supervisor


class _UpPipe:
    """A CPU's result pipe that holds its start-up's UP."""

    def recv_bytes(self) -> bytes:
        return cpu_start.UP


def _raised_by(fn: Any) -> BaseException | None:
    """What fn() raised (a KeyboardInterrupt too, caught here rather than ending pytest's run)."""
    try:
        fn()
    except BaseException as exc:     # noqa: BLE001 - the test looks at what it was
        return exc
    return None


@pytest.mark.usefixtures("ctrl_c")
def test_an_error_while_a_cpu_is_given_its_go_wins_over_a_ctrl_c_that_came_meanwhile(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C comes while the supervisor gives a CPU its go (held: noted), and giving it fails
    with an error that is no interrupt (here a RuntimeError, as a feeder thread that cannot be
    joined raises). The error leaves _read as it was raised, and the handlers are back; the
    Ctrl-C noted is dropped with it. It used to be replaced by the KeyboardInterrupt raised by
    the hold's closing ``end``, which the supervisor then took as a plain Ctrl-C: the error was
    lost and the run went on as if only interrupted."""
    def up(self: Any, cpu: int) -> None:
        signal.raise_signal(signal.SIGINT)
        raise RuntimeError("the go could not be given")

    monkeypatch.setattr(cpu_start.StartGate, "up", up)
    forget_signals()
    supervisor = _Supervisor(machine, {}, {}, None, 0.01, None, 1.0)
    raised = _raised_by(lambda: supervisor._read(0, _UpPipe()))
    assert isinstance(raised, RuntimeError), repr(raised)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert supervisor.hold.next() == "" and not supervisor.hold.handlers


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_as_the_handlers_are_put_back_after_an_error_leaves_none_of_them_wrapped(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM taken as Ctrl-C (sigterm_stops); the supervisor takes a Ctrl-C (its handlers
    wrapped by the hold) and fails while it does (here _interrupt raises a RuntimeError). As it
    puts the handlers back on the way out, a second Ctrl-C lands once SIGINT's own handler is
    back and before SIGTERM's is (signal.signal runs the handler of a signal already come
    before it changes anything: simulated by raising SIGINT just there). The KeyboardInterrupt
    leaves wait(), the RuntimeError its context, and SIGTERM has the handler it had before
    wait(). It used to stay wrapped by the hold's wrapper around runtime's SIGTERM-as-Ctrl-C
    handler, so a later SIGTERM (a test's, a script's) was taken by a run long over."""
    from rmm_mp.runtime import _sigterm_as_interrupt
    real_signal = signal.signal
    landed: list[int] = []

    def set_handler(signum: int, handler: Any) -> Any:
        if signum == signal.SIGTERM and handler is _sigterm_as_interrupt and not landed:
            landed.append(signum)
            signal.raise_signal(signal.SIGINT)  # meets SIGINT's handler, back already
        return real_signal(signum, handler)

    def step(self: Any, live: Any, start: float) -> None:
        raise KeyboardInterrupt("Ctrl-C")

    def interrupt(self: Any, live: Any, what: str) -> None:
        monkeypatch.setattr(signal, "signal", set_handler)
        raise RuntimeError("the CPUs could not be stopped")

    monkeypatch.setattr(_Supervisor, "_step", step)
    monkeypatch.setattr(_Supervisor, "_interrupt", interrupt)
    before = signal.getsignal(signal.SIGTERM)
    forget_signals()
    supervisor = _Supervisor(machine, {0: object()}, {}, None, 0.01, None, 1.0, sigterm_stops=True)
    try:
        raised = _raised_by(supervisor.wait)
    finally:
        monkeypatch.setattr(signal, "signal", real_signal)
        term = signal.getsignal(signal.SIGTERM)
        real_signal(signal.SIGTERM, before)
    assert landed, "the second Ctrl-C was never sent"
    assert isinstance(raised, KeyboardInterrupt), repr(raised)
    assert isinstance(raised.__context__, RuntimeError), repr(raised.__context__)
    assert term == before, f"SIGTERM left with {term!r}"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not supervisor.hold.handlers
