"""The supervisor's hold on Ctrl-C and SIGTERM (rmm_mp.interrupt_hold, as rmm_mp.runtime uses it):
what an interrupt that lands inside the supervisor's own handling, or beside an error, does.
No CPU processes: the supervisor's pieces are driven directly, and each signal is raised at the
exact point (signal.raise_signal, a patched function), not timed."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from typing import Any

import pytest

from rmm_mp import Machine, cpu_start
from rmm_mp.interrupts import forget_signals
from rmm_mp.cpu_supervisor import _Supervisor


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
    joined raises). The error leaves wait() as it was raised, no interrupt is taken, and the
    handlers are back. It used to be replaced by the KeyboardInterrupt that ended the hold
    around the go, which the supervisor then took as a plain Ctrl-C: the error was lost and
    the run ended as if only interrupted."""
    from types import SimpleNamespace
    taken: list[str] = []

    def up(self: Any, cpu: int) -> None:
        signal.raise_signal(signal.SIGINT)
        raise RuntimeError("the go could not be given")

    def step(self: Any, live: Any, start: float) -> None:
        self._read(0, _UpPipe())

    def interrupt(self: Any, live: Any, what: str) -> None:
        taken.append(what)
        live.clear()        # its CPU gone: the run ends

    monkeypatch.setattr(cpu_start.StartGate, "up", up)
    monkeypatch.setattr(_Supervisor, "_step", step)
    monkeypatch.setattr(_Supervisor, "_interrupt", interrupt)
    forget_signals()
    supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=0)}, {}, None, 0.01, None, 1.0)
    raised = _raised_by(supervisor.wait)
    assert isinstance(raised, RuntimeError), repr(raised)
    assert taken == [], taken
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
    wait(). It used to stay wrapped by the hold's wrapper around cpu_supervisor's SIGTERM-as-Ctrl-C
    handler, so a later SIGTERM (a test's, a script's) was taken by a run long over."""
    real_signal = signal.signal
    landed: list[int] = []

    def set_handler(signum: int, handler: Any) -> Any:
        if signum == signal.SIGTERM and not landed:     # putting SIGTERM's handler back
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


@pytest.mark.usefixtures("ctrl_c")
def test_a_second_ctrl_c_as_the_supervisor_begins_to_handle_the_first_is_taken_not_raised(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C reaches the supervisor while it waits for its CPU (raised in _step), and a
    second one (COPY_S made 0: no copy) lands in the first bytecodes of the supervisor's
    ``except KeyboardInterrupt`` clause, before its hold can have begun there (simulated by
    raising SIGINT at the entry of InterruptHold.begin called while the first is handled).
    Both are taken, in order, and wait() returns its result. The second used to escape wait()
    and run_cpus as a KeyboardInterrupt, every result with it: the hold began only in that
    clause, so Python's own handler still stood for the few bytecodes before."""
    import sys
    from rmm_mp import interrupts
    from rmm_mp.interrupt_hold import InterruptHold
    from types import SimpleNamespace
    monkeypatch.setattr(interrupts, "COPY_S", 0.0)
    taken: list[str] = []
    sent: list[int] = []
    begin = InterruptHold.begin

    def begin_late(self: InterruptHold, *args: Any) -> None:
        if sys.exc_info()[0] is KeyboardInterrupt and not sent:
            sent.append(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        begin(self, *args)

    def step(self: Any, live: Any, start: float) -> None:
        signal.raise_signal(signal.SIGINT)

    def interrupt(self: Any, live: Any, what: str) -> None:
        taken.append(what)
        live.clear()        # its CPU gone: the run ends once both are taken

    monkeypatch.setattr(InterruptHold, "begin", begin_late)
    monkeypatch.setattr(_Supervisor, "_step", step)
    monkeypatch.setattr(_Supervisor, "_interrupt", interrupt)
    forget_signals()
    supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=0)}, {}, None, 0.01, None, 1.0)
    outcome: list[Any] = []
    raised = _raised_by(lambda: outcome.append(supervisor.wait()))
    assert sent, "the second Ctrl-C was never sent"
    assert raised is None and outcome, f"escaped wait(): {raised!r}"
    assert taken == ["Ctrl-C", "Ctrl-C"], taken
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("ctrl_c")
def test_a_supervisor_leaving_with_an_error_leaves_a_hold_it_did_not_begin_standing(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hold begun by the caller (as run_cpus begins it before the CPUs start) is handed to the
    supervisor, which fails while it waits (here _step raises a RuntimeError). The hold still
    stands, holding, once wait() has raised: a Ctrl-C then is noted, not raised, and dropped
    when the caller ends the hold (the error wins), which puts SIGINT's handler back. The
    supervisor used to end the caller's hold on its way out, and run_cpus begin it again a few
    bytecodes later: a Ctrl-C between the two was raised and replaced the error, out of the
    middle of the killing and reaping of the CPU processes."""
    from rmm_mp.interrupt_hold import InterruptHold
    from types import SimpleNamespace

    def step(self: Any, live: Any, start: float) -> None:
        raise RuntimeError("the CPUs could not be waited for")

    monkeypatch.setattr(_Supervisor, "_step", step)
    forget_signals()
    hold = InterruptHold()
    assert hold.begin() is True
    supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=None)}, {}, None, 0.01, None, 1.0, hold=hold)
    try:
        raised = _raised_by(supervisor.wait)
        standing = hold.standing
        sent = _raised_by(lambda: signal.raise_signal(signal.SIGINT))
    finally:
        ended = _raised_by(lambda: hold.end(take=False))
    assert isinstance(raised, RuntimeError), repr(raised)
    assert standing, "the supervisor ended a hold it did not begin"
    assert sent is None, f"a Ctrl-C after the supervisor's error was raised: {sent!r}"
    assert ended is None, repr(ended)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not hold.handlers and hold.next() == ""


@pytest.mark.usefixtures("ctrl_c")
def test_a_supervisor_ends_the_hold_it_began_when_it_leaves_with_an_error(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A supervisor given no hold begins its own, and fails while it waits (a RuntimeError out
    of _step): the error leaves wait(), the hold has ended and SIGINT's handler is back (the
    owner of a hold ends it; only a hold begun by another is left standing)."""
    from types import SimpleNamespace

    def step(self: Any, live: Any, start: float) -> None:
        raise RuntimeError("the CPUs could not be waited for")

    monkeypatch.setattr(_Supervisor, "_step", step)
    forget_signals()
    supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=None)}, {}, None, 0.01, None, 1.0)
    raised = _raised_by(supervisor.wait)
    assert isinstance(raised, RuntimeError), repr(raised)
    assert not supervisor.hold.standing and not supervisor.hold.handlers
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _two_signals_at_call(k: int, sent: list[int]) -> Any:
    """A profile function that, at the k-th function call it sees (Python or C), makes SIGINT and
    SIGTERM arrive together (both sent while blocked, then let through: CPython runs SIGINT's
    handler first, SIGTERM's at its next check), and then profiles no more."""
    import sys
    seen = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event not in ("call", "c_call"):
            return
        seen[0] += 1
        if seen[0] < k:
            return
        sys.setprofile(None)
        sent.append(k)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])
    return profile


@pytest.mark.usefixtures("ctrl_c")
def test_two_signals_together_at_any_point_of_the_runs_end_are_both_taken_none_raised(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPUs' run ends (the last CPU gone) under a command's guard (Interrupts with SIGTERM,
    passthrough around the wait, on_end its run_over, SIGTERM taken as Ctrl-C), and a Ctrl-C and
    a SIGTERM arrive together at one point of the supervisor's end: swept over every function
    call from the last step to wait()'s return. At every point wait() returns its result (no
    KeyboardInterrupt escapes), and neither signal is lost: each is taken by the supervisor (an
    interrupt after the run) or noted by the guard (the hold's end puts SIGINT's handler back
    first, so the guard may note the Ctrl-C and the supervisor take the SIGTERM), and the
    supervisor takes two in the order they came (the Ctrl-C's handler runs first). Before, the
    hold's end raised the first one noted and the supervisor took the other from its list
    afterwards, or met it in its except clause before it held again: at some points it took
    the SIGTERM before the Ctrl-C, at others the SIGTERM was lost."""
    import sys
    from types import SimpleNamespace
    from rmm_mp.interrupts import Interrupts

    def step(self: Any, live: Any, start: float) -> None:
        live.clear()            # the last CPU has ended
        sys.setprofile(self.profile)

    taken: list[str] = []

    def interrupt(self: Any, live: Any, what: str) -> None:
        taken.append(what)

    monkeypatch.setattr(_Supervisor, "_step", step)
    monkeypatch.setattr(_Supervisor, "_interrupt", interrupt)
    k = 1
    while True:
        taken.clear()
        sent: list[int] = []
        forget_signals()
        with Interrupts(sigterm=True) as stop:
            supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=0)}, {}, None, 0.01, None, 1.0,
                                     sigterm_stops=True, on_end=stop.run_over)
            supervisor.profile = _two_signals_at_call(k, sent)  # type: ignore[attr-defined]
            outcome: list[Any] = []
            try:
                done, _ = stop.passthrough(lambda: outcome.append(supervisor.wait()))
            finally:
                sys.setprofile(None)
            by = stop.by
        if not sent:
            break               # past wait()'s end: every point was tried
        assert done and outcome, f"call {k}: a signal escaped wait() ({taken}, guard noted {by!r})"
        # The guard keeps only the first it noted (``by``): a SIGTERM behind its Ctrl-C is in it.
        assert "Ctrl-C" in taken or by == "Ctrl-C", f"call {k}: Ctrl-C lost ({taken}, guard noted {by!r})"
        assert "SIGTERM" in taken or by, f"call {k}: SIGTERM lost ({taken}, guard noted {by!r})"
        assert taken != ["SIGTERM", "Ctrl-C"], f"call {k}: taken out of order"
        assert not supervisor.hold.standing and not supervisor.hold.handlers
        k += 1
    assert k > 5, k


@pytest.mark.parametrize("owner", ["caller", "supervisor"])
@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_as_the_supervisor_begins_its_clean_up_after_an_error_does_not_replace_it(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, owner: str) -> None:
    """The supervisor fails while it waits, released (a RuntimeError out of _step), and a Ctrl-C
    lands as its clean-up makes its first call (simulated by raising SIGINT at the entry of
    InterruptHold.begin or end called while the error is handled: CPython checks for signals as
    a function begins). The hold is the caller's (as run_cpus hands it over: the clean-up holds
    again with begin) or the supervisor's own (it ends it with end). The RuntimeError leaves
    wait(), the Ctrl-C is noted (dropped: the error wins), and SIGINT has its handler back once
    the hold has ended. Before, the hold was released up to that first call: the Ctrl-C met the
    wrapper still raising, and its KeyboardInterrupt replaced the error."""
    import sys
    from types import SimpleNamespace
    from rmm_mp.interrupt_hold import InterruptHold
    sent: list[int] = []
    begin, end = InterruptHold.begin, InterruptHold.end

    def landing() -> None:
        if sys.exc_info()[0] is RuntimeError and not sent:
            sent.append(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    def begin_late(self: InterruptHold, *args: Any) -> bool:
        landing()
        return begin(self, *args)

    def end_late(self: InterruptHold, take: bool = True) -> None:
        landing()
        end(self, take)

    def step(self: Any, live: Any, start: float) -> None:
        raise RuntimeError("the CPUs could not be waited for")

    monkeypatch.setattr(InterruptHold, "begin", begin_late)
    monkeypatch.setattr(InterruptHold, "end", end_late)
    monkeypatch.setattr(_Supervisor, "_step", step)
    forget_signals()
    hold = InterruptHold() if owner == "caller" else None
    if hold is not None:
        hold.begin()
    supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=None)}, {}, None, 0.01, None, 1.0, hold=hold)
    try:
        raised = _raised_by(supervisor.wait)
    finally:
        ended = _raised_by(lambda: end(supervisor.hold, take=False))
    assert sent, "the Ctrl-C was never sent"
    assert isinstance(raised, RuntimeError), repr(raised)
    assert ended is None, repr(ended)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not supervisor.hold.standing and not supervisor.hold.handlers


@pytest.mark.usefixtures("ctrl_c")
def test_a_supervisor_whose_own_hold_is_cut_short_as_it_begins_still_ends_it(
        machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A supervisor given no hold begins its own, and a Ctrl-C that has just come meets SIGINT's
    own handler (Python's, which raises) as begin wraps it (signal.signal runs the handler of a
    signal already come before it changes anything: simulated by raising SIGINT there). The
    KeyboardInterrupt leaves wait(), the hold the supervisor began has ended, and SIGINT has
    its own handler. Before, begin had not returned, so the supervisor did not know it owned
    the hold: it left it standing and its clean-up wrapped SIGINT again, for good."""
    from types import SimpleNamespace
    real_signal = signal.signal
    landed: list[int] = []

    def set_handler(signum: int, handler: Any) -> Any:
        if signum == signal.SIGINT and not landed:
            landed.append(signum)
            signal.raise_signal(signal.SIGINT)  # meets Python's handler, still SIGINT's
        return real_signal(signum, handler)

    monkeypatch.setattr(signal, "signal", set_handler)
    forget_signals()
    supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=None)}, {}, None, 0.01, None, 1.0)
    try:
        raised = _raised_by(supervisor.wait)
    finally:
        monkeypatch.setattr(signal, "signal", real_signal)
        left = signal.getsignal(signal.SIGINT)
        real_signal(signal.SIGINT, signal.default_int_handler)
    assert landed, "the Ctrl-C was never sent"
    assert isinstance(raised, KeyboardInterrupt), repr(raised)
    assert left is signal.default_int_handler, f"SIGINT left with {left!r}"
    assert not supervisor.hold.standing and not supervisor.hold.handlers


@pytest.mark.parametrize("first, second", [(signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)],
                         ids=["ctrl-c-then-sigterm", "sigterm-then-ctrl-c"])
@pytest.mark.usefixtures("ctrl_c")
def test_two_signals_after_the_callers_on_end_name_the_first(machine: Machine, monkeypatch: pytest.MonkeyPatch,
                                                             first: int, second: int) -> None:
    """Under a command's guard (Interrupts with SIGTERM, on_end its run_over, SIGTERM taken as
    Ctrl-C while the CPUs run), the last CPU ends and two signals land once the guard has heard
    that the run is over, before the hold's end: both meet the guard, which names the first
    (what the report calls the interrupt after the run), and the supervisor takes neither. Before,
    the Ctrl-C met the guard's handler and the SIGTERM the runtime's, which the supervisor took
    as the run's interrupt: the report's header named the SIGTERM, sent second, and its 'not
    done' the Ctrl-C (or the other way round)."""
    from types import SimpleNamespace
    from rmm_mp.interrupts import Interrupts

    def step(self: Any, live: Any, start: float) -> None:
        live.clear()            # the last CPU has ended

    monkeypatch.setattr(_Supervisor, "_step", step)
    forget_signals()
    name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
    with Interrupts(sigterm=True) as stop:
        def on_end() -> None:
            stop.run_over()
            signal.raise_signal(first)
            signal.raise_signal(second)

        supervisor = _Supervisor(machine, {0: SimpleNamespace(exitcode=0)}, {}, None, 0.01, None, 1.0,
                                 sigterm_stops=True, on_end=on_end)
        done, result = stop.passthrough(supervisor.wait)
        by = stop.by
    machine.control.clear_stop()
    assert done, "a signal escaped wait()"
    assert by == name[first], by
    assert not result.interrupted_by, result.stopped_by


_LIBRARY_CALLER = """
import signal
from types import SimpleNamespace
from rmm_mp import Machine
from rmm_mp.cpu_supervisor import _Supervisor

def step(self, live, start):
    live.clear()            # the last CPU has ended

_Supervisor._step = step
with Machine.create("host", cpus=1) as m:
    own = signal.getsignal(signal.SIGTERM)
    sup = _Supervisor(m, {0: SimpleNamespace(exitcode=0)}, {}, None, 0.01, None, 1.0, sigterm_stops=True,
                      on_end=lambda: signal.raise_signal(signal.SIGTERM))
    result = sup.wait()
    m.control.clear_stop()
    print(result.interrupted, result.stopped_by, signal.getsignal(signal.SIGTERM) is own, sep="|")
"""


def test_a_sigterm_in_a_library_callers_on_end_is_still_taken_as_ctrl_c() -> None:
    """A library caller with no guard of its own (SIGTERM's handler the machine's, which closes
    every machine and ends the process) asks for SIGTERM to be taken as Ctrl-C (sigterm_stops)
    and gives an on_end; a SIGTERM lands in it. It is taken as a Ctrl-C there would be: an
    interrupt after the run, the result returned, the machine's handler back afterwards. Since
    SIGTERM met its own handler from on_end on (InterruptHold.own_handlers, meant for a guard
    that takes both signals), the machine's handler killed the process (status -15), the run's
    result lost. A subprocess: that handler would end pytest's."""
    proc = subprocess.run([sys.executable, "-c", _LIBRARY_CALLER], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "True|interrupted after the run (SIGTERM)|True", proc.stdout + proc.stderr
