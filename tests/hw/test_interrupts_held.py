"""A command's guard (rmm_mp.interrupts.Interrupts) taking the signals it held back during a
held piece (``held``) once the piece is over (``take``): more than one, and one whose own
handler raises. Signals are raised at the exact point (signal.raise_signal), not timed; no CPU
processes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from rmm_mp import interrupts
from rmm_mp.interrupts import Interrupts


def _raising_sigterm_handler(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("own SIGTERM")


@pytest.fixture
def sigterm_raises(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """SIGTERM's handler raises KeyboardInterrupt("own SIGTERM") for the test; no copy windows
    (each signal sent is a request of its own); SIGTERM's handler put back afterwards."""
    monkeypatch.setattr(interrupts, "_process_ends_with_command", False)
    monkeypatch.setattr(interrupts, "REPEAT_S", 0.0)
    monkeypatch.setattr(interrupts, "COPY_S", 0.0)
    before = signal.signal(signal.SIGTERM, _raising_sigterm_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def _both(first: int, second: int) -> None:
    """The held piece: ``first`` and then ``second`` arrive while it runs."""
    signal.raise_signal(first)
    signal.raise_signal(second)


@pytest.mark.usefixtures("ctrl_c", "sigterm_raises")
def test_a_guard_left_as_a_held_back_signal_raises_still_puts_its_handlers_back() -> None:
    """A guard that leaves SIGTERM to its own handler (`rmm-mp explore`'s) holds back a SIGTERM
    and then a Ctrl-C during its last line; the guard is left (``with``'s end) and takes them:
    SIGTERM goes to its own handler, which raises. That first one leaves the ``with``, the
    Ctrl-C behind it is still taken (noted: ``by``), SIGINT has its handler back and the guard
    is no longer the innermost. Before, the raise left take() and __exit__ at once: the Ctrl-C
    was lost and the guard's handler stayed SIGINT's, taking every later Ctrl-C for a guard
    long gone."""
    with pytest.raises(KeyboardInterrupt) as raised:
        with Interrupts(sigterm=False) as stop:
            stop.held(lambda: _both(signal.SIGTERM, signal.SIGINT))
    assert raised.value.args == ("own SIGTERM",)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is _raising_sigterm_handler
    assert stop.by == "Ctrl-C"
    assert interrupts._guards == []


@pytest.mark.usefixtures("ctrl_c", "sigterm_raises")
def test_a_held_back_signal_whose_handler_raises_skips_the_next_step_and_escapes_none() -> None:
    """A Ctrl-C and then a SIGTERM (left to its own handler, which raises) are held back during
    a held piece; the next step takes them: the Ctrl-C, the first, is what interrupted (``by``),
    the SIGTERM's own handler runs too, and the step is skipped, (False, None), as for a signal
    between two steps. Before, the raise of SIGTERM's handler left step() before its try, a
    bare KeyboardInterrupt out of the command's guard."""
    ran: list[int] = []
    outcome: Any = None
    with Interrupts(sigterm=False) as stop:
        stop.held(lambda: _both(signal.SIGINT, signal.SIGTERM))
        try:
            outcome = stop.step(lambda: ran.append(1))
        except KeyboardInterrupt as exc:    # caught here rather than ending pytest's run
            outcome = exc
    assert outcome == (False, None) and ran == [], repr(outcome)
    assert stop.by == "Ctrl-C"


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_and_a_sigterm_held_back_together_the_first_is_what_interrupted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard that takes both (`rmm-mp run`'s, `rmm-mp stress`'s) holds back a SIGTERM and then
    a Ctrl-C during a held piece: the next step is skipped and the SIGTERM, the first, is what
    interrupted; the other way round, the Ctrl-C. (Each is taken; the first that came is the
    one the command names.)"""
    monkeypatch.setattr(interrupts, "REPEAT_S", 0.0)
    monkeypatch.setattr(interrupts, "COPY_S", 0.0)
    for first, second, name in ((signal.SIGTERM, signal.SIGINT, "SIGTERM"), (signal.SIGINT, signal.SIGTERM, "Ctrl-C")):
        before = signal.getsignal(signal.SIGTERM)
        with Interrupts(sigterm=True) as stop:
            stop.held(lambda: _both(first, second))
            assert stop.step(lambda: None) == (False, None)
        assert stop.by == name, (name, stop.by)
        assert signal.getsignal(signal.SIGTERM) == before
