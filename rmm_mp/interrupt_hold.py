"""Ctrl-C and SIGTERM while run_cpus runs its CPUs (rmm_mp.runtime): held back while it starts
them and while its supervisor handles an interrupt (killing and reaping the CPU processes that
have not had their go, killing the started ones on a second interrupt, setting the stop flag; a
few ms, more with 16 CPUs on a loaded host) or gives a CPU its go, and raised as they come while
it waits.

Raised there, out of the supervisor's ``except KeyboardInterrupt`` clause, such a signal escaped
run_cpus and took every result with it. So from the start of the CPUs to the supervisor's end,
the Python-level handlers of SIGINT and SIGTERM are wrapped (``InterruptHold.begin``): the
wrapper runs the handler as it came, or the one the runtime gives in its place (SIGTERM taken
as Ctrl-C), so its own rules still apply (the copy rule of rmm_mp.interrupts' ``repeated_signal``,
ignoring a signal once a command has decided). Holding, it notes the KeyboardInterrupt that
handler raises instead of letting it out; not holding (the supervisor waits: ``release``), it
raises the first, holding from before the handler runs, so that a second one landing in the
first bytecodes of the supervisor's ``except`` clause is noted too (holding began only in that
clause, and the few bytecodes before it let such a one out). Python's own SIGINT handler knows
no copies; for it the wrapper applies the copy rule, as the supervisor does for one raised while
it waits. So each signal is judged as it arrives: a copy that `timeout -s INT` sends a moment
after the first is ignored then, and not taken as a second Ctrl-C once the handling is done,
however long that took; a real second one is noted, and the supervisor acts on it then
(``next``). ``end`` puts the handlers back as they were, every one of them even if a signal
lands meanwhile (``put_back``).

Not a signal mask: blocking holds a signal back for the calling thread only, and a process with
another thread (a pytest-xdist worker's execnet thread) gets a process-directed one there, whose
Python handler CPython then runs on the main thread all the same; and a signal held by a mask is
judged when it is let through, which turned the copy into a second Ctrl-C. Python handlers run
on the main thread only, whichever thread the kernel gave the signal to; with nothing blocked
there, the kernel gives a process-directed one to the main thread first, which cuts short a
wait it is in (reaping a CPU process), so the handler runs as the signal arrives. (run_cpus
still blocks both while it starts the CPUs, for the CPU processes and threads it starts to
inherit: one that reaches the main thread waits there, and meets the wrapper once the
supervisor lets it through; one given to another thread, such as pytest-xdist's, is noted as
it comes, where it was raised in the middle of the start.) Off the main thread (no handlers can
be set there) nothing is wrapped.

Not held either: a handler for SIGINT or SIGTERM installed while the hold stands (by an
on_tick or on_end of the caller's) takes a signal as it does, up to the next ``begin`` (the
supervisor's next handling of an interrupt, or of a CPU's go), which wraps it in turn; and
``end`` leaves it in place. Nothing in the simulator installs one there.

What no Python-level handler can hold: a second signal landing as the wrapper is entered for
the first, before its first line marks the hold (CPython checks for signals as a function
begins). The nested call of the wrapper takes that second one (raised, as the first would have
been) and the first is lost, as is any signal within a copy window of another.

A hold is owned by whoever began it (``begin`` says whether the call began it), and only its
owner ends it on an error: run_cpus begins one before it starts the CPUs and hands it to the
supervisor, which holds again with it and leaves it standing when it fails, for run_cpus to end
once it has reaped the CPU processes. At the run's end (every CPU gone), after run_cpus' on_end
(the caller's handlers hear that the run is over while it still holds; from just before it the
stand-in given ``begin`` gives way to a guard's handler that takes both signals:
``own_handlers``), the supervisor takes what was noted as interrupts after the run, none
raised, and ends a hold it began itself with ``finish``; one run_cpus began stands, holding,
through run_cpus' clean-up, whose ``end`` then raises one noted there.

This module owns that hold: which handlers are wrapped, what they noted, and putting them back.
It must not know what the supervisor does with an interrupt, nor when it holds them.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from rmm_mp.interrupts import repeated_signal

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def interrupt_of(exc: KeyboardInterrupt) -> str:
    """What interrupt ``exc`` is ("Ctrl-C", "SIGTERM"), or "" for a copy of the last one taken.
    Our handlers (Interrupts', cpu_supervisor's SIGTERM one) raise it with what it is and have applied
    the copy rule already; without an argument it is Python's own SIGINT handler's (a caller
    with no Interrupts guard), which knows no copies, so the rule is applied here."""
    if exc.args:
        return str(exc.args[0])
    return "" if repeated_signal(signal.SIGINT) else "Ctrl-C"


class InterruptHold:
    """The wrapped handlers of one supervisor, and the interrupts they noted meanwhile.

    Holding (from ``begin`` up to ``release``), the wrapper notes each interrupt. Not holding,
    it raises the first that comes, KeyboardInterrupt("Ctrl-C" or "SIGTERM"), holding again
    from before its handler runs: a second signal that lands while the supervisor begins to
    handle the first (its ``except`` clause, before any call of it could begin a hold) is
    noted like any other, where Python's own handler, still standing, raised it out of
    run_cpus."""

    def __init__(self) -> None:
        self.handlers: dict[int, Any] = {}
        """Signal -> its handler to put back, while this hold's wrapper stands in for it."""
        self.inner: dict[int, Any] = {}
        """Signal -> the handler the wrapper runs: its own, or the one given ``begin`` for it."""
        self.noted: list[str] = []
        """What each interrupt that came meanwhile was ("Ctrl-C", "SIGTERM"), oldest first."""
        self.holding = False
        """Interrupts are noted, not raised (``begin`` up to ``release``)."""
        self.standing = False
        """The hold stands: begun and not yet ended (``begin`` up to ``end``), whether holding or
        released meanwhile. Whoever began it owns it and alone ends it (``begin``'s value)."""

    def begin(self, instead: dict[int, Any] | None = None) -> bool:
        """Hold from now on: wrap the handlers of SIGINT and SIGTERM (those set from Python:
        one ignored, left to its default action, or set outside Python is left as it is), and
        note each interrupt that comes. ``instead``: a signal's handler to run in place of its
        own while wrapped (run_cpus' SIGTERM taken as Ctrl-C), for a signal not ignored (its
        own, or its default action, is put back at ``end``). Again while wrapped: the wrapped
        ones stay as they are.

        Whether this call began the hold (it was not standing): its caller then owns it and is
        the one to ``end`` it. A caller handed a hold that stands (the supervisor, by run_cpus)
        holds again with ``begin`` but leaves the ending to its owner: ended by the inner one on
        its way out of an error, the hold was gone while the owner still killed and reaped the
        CPU processes, and a Ctrl-C there replaced the error. begin may raise once the hold
        stands (a signal that meets a handler not yet wrapped: signal.signal runs it first), so
        an owner that must end the hold all the same reads ``standing`` before the call."""
        began = not self.standing
        self.standing = True
        self.holding = True
        if threading.current_thread() is not threading.main_thread():
            return began
        for signum in _STOP_SIGNALS:
            handler = signal.getsignal(signum)
            if handler == self._wrapper:
                continue
            if instead and signum in instead and handler != signal.SIG_IGN:
                inner = instead[signum]
            elif callable(handler):
                inner = handler
            else:
                continue
            # Noted before it is set: signal.signal runs the handler of one already come
            # first (the old one), and ``end`` must find what to put back all the same.
            self.handlers[signum] = signal.SIG_DFL if handler is None else handler
            self.inner[signum] = inner
            signal.signal(signum, self._wrapper)
        return began

    def own_handlers(self) -> None:
        """From now on a wrapped signal whose own handler is SIGINT's too (a command's guard
        that takes both: Interrupts with SIGTERM) meets it inside the wrapper, not the one given
        ``begin`` in its place. For the run's end, as the caller's handlers hear that the CPUs'
        run is over (run_cpus' on_end): a SIGTERM then goes where a Ctrl-C goes, and the guard
        names the first of them. Left to the stand-in, the SIGTERM was taken by the supervisor
        as the run's interrupt and a Ctrl-C before it by the guard: the report named the later
        one. Any other keeps its stand-in up to the hold's end: SIGTERM's own handler is then
        the machine's (rmm_mp.machine_exit), which closes every machine and ends the process,
        and handed it, a SIGTERM in a library caller's on_end killed the process that had
        asked for SIGTERM to be taken as Ctrl-C (sigterm_stops), its results lost."""
        ctrl_c = self.handlers.get(signal.SIGINT)
        for signum in self.inner:
            own = self.handlers.get(signum)
            if callable(own) and own == ctrl_c:
                self.inner[signum] = own

    def _what(self, signum: int, frame: Any) -> str:
        """Run the handler the wrapper stands for: what interrupt it raised, "" for none (a
        copy, ignored by the copy rule, or a handler that only noted it)."""
        try:
            self.inner[signum](signum, frame)
        except KeyboardInterrupt as exc:
            return interrupt_of(exc)
        return ""

    def _wrapper(self, signum: int, frame: Any) -> None:
        if self.holding:
            what = self._what(signum, frame)
            if what:
                self.noted.append(what)
            return
        # Held before the handler runs: one more signal from here on is noted.
        self.holding = True
        what = self._what(signum, frame) or self.next()
        if not what:
            self.holding = False
            return
        raise KeyboardInterrupt(what)

    def release(self) -> None:
        """The supervisor takes an interrupt as it comes again: the oldest noted and not yet
        taken is raised (KeyboardInterrupt, still holding), or else the hold ends until the
        next interrupt, which the wrapper raises. Handlers stay wrapped."""
        what = self.next()
        if what:
            raise KeyboardInterrupt(what)
        self.holding = False

    def next(self) -> str:
        """The oldest interrupt noted and not yet taken ("Ctrl-C", "SIGTERM"), or "" if none."""
        return self.noted.pop(0) if self.noted else ""

    def end(self, take: bool = True) -> None:
        """Put every wrapped handler back as it was (unless it was changed since: that stays).
        With ``take``, the oldest interrupt noted and not yet taken (one that came as the
        handling ended, or while a CPU was given its go) is then raised, KeyboardInterrupt("Ctrl-C"
        or "SIGTERM"), for the caller to take as it takes any, and any later one stays noted for
        ``next`` (the supervisor takes each: dropped, a real second Ctrl-C was lost); without,
        all are dropped. A signal that comes once a handler is back meets that handler, which
        may raise here too: every handler is put back first (put_back), and that interrupt is
        then noted after the others (``take``) or raised (without)."""
        self.holding = True     # up to the handlers' return: a signal meanwhile is noted
        self._put_back(keep=take)
        if not take:
            self.noted = []
        elif self.noted:
            raise KeyboardInterrupt(self.noted.pop(0))


    def finish(self) -> list[str]:
        """End the hold at the run's end (or with a KeyboardInterrupt already on its way out of
        run_cpus, which must not be replaced): put every wrapped handler back as ``end`` does, and
        return every interrupt noted and not yet taken, oldest first (one that meets a handler
        already put back and raises is noted after them), raising none. Raised as ``end`` raises
        it, the first left a window, from that raise to the caller's next hold, in which a
        second signal met the handler put back and was raised out of the caller's handling of
        the first."""
        self.holding = True     # up to the handlers' return: a signal meanwhile is noted
        self._put_back(keep=True)
        noted, self.noted = self.noted, []
        return noted

    def _put_back(self, keep: bool) -> None:
        """end's and finish's last step, called with ``holding`` already set (so that a signal
        as this call begins is noted, not raised): every wrapped handler put back, and the
        hold over. An interrupt raised meanwhile by a handler already back is noted after the
        others (``keep``) or, all noted ones dropped, raised."""
        try:
            put_back(self.handlers, self._wrapper)
        except KeyboardInterrupt as exc:
            if not keep:
                self.noted = []
                raise
            what = interrupt_of(exc)
            if what:
                self.noted.append(what)
        finally:
            self.holding = False
            self.standing = False


def put_back(handlers: dict[int, Any], replaced: Any = None) -> None:
    """Set each signal's handler in ``handlers`` again (where ``replaced`` is given, only if that
    is still the signal's handler: one changed since stays), emptying ``handlers``. A
    KeyboardInterrupt raised meanwhile (a signal that meets a handler already put back:
    signal.signal runs the handlers of the signals already come before it changes anything) is
    raised once every handler is back, not at once: raised at once, it left the rest in place,
    SIGTERM wrapped by a supervisor whose run was over. Only the first is raised."""
    interrupted: KeyboardInterrupt | None = None
    while handlers:
        try:
            while handlers:
                signum, handler = next(iter(handlers.items()))
                if replaced is None or signal.getsignal(signum) == replaced:
                    # A signal already come meets the handler being replaced first.
                    signal.signal(signum, handler)
                del handlers[signum]
        except KeyboardInterrupt as exc:
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
