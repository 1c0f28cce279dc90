"""Ctrl-C, and SIGTERM where a command asks for it, outside the CPUs' run: while a command builds
what the CPUs will use and after they have stopped (reading figures, checks, teardown).

A command keeps its report when interrupted there: ``Interrupts.step`` ends the step under way
(a hung teardown can always be stopped) and the steps after it are skipped, and the command
says what was not done. `rmm-mp run` (workload.run) and `rmm-mp stress` (stress.runner,
stress.shrink, and stress.cli from the report to the files) use it; while the CPUs run,
rmm_mp.runtime handles the signals itself. Once a command has given all its output
(``Interrupts.decided``; in the rmm-mp program, for any command, once click is done with it:
``command_over``), a signal no longer changes its exit status; its last line can be written
with the signals held back up to that point (``Interrupts.held``), so that one sent as that line
appears is already too late. GNU timeout sends its
signal twice, to the command and to its process group: the copy is no second request
(repeated_signal, here and in rmm_mp.runtime), while a person's second Ctrl-C still is.

This module owns that signal handling. It must not know what the steps are.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable, NoReturn

REPEAT_S = 1.0
"""A SIGTERM this soon after the last one taken is that same request, not a second one: GNU
timeout sends its signal twice, to the command and then to its process group (which holds the
command), and the copy can land after the first was handled, while the CPUs stop (a second
signal kills them) or after they have stopped (a signal then skips the invariant check and the
teardown). Ctrl-C has a window of its own, far shorter (COPY_S)."""

COPY_S = 0.05
"""A SIGINT this soon after the last one taken is that same request: `timeout -s INT` sends
its copy as it does SIGTERM's, microseconds after the first, and the copy reaches the handler
a scheduling delay later (a few milliseconds on a loaded host). A second Ctrl-C must still be
one, for a person who wants the stopping CPUs killed or a hung teardown ended: one SIGINT per
keypress, and pressing C twice takes a person well over 100 ms (roughly 150 ms at the fastest
tapping rate of one finger; a keyboard's auto-repeat starts after 250 ms or more), so 50 ms
is far below the fastest deliberate double Ctrl-C and still well above the copy's delay."""

_HELD = (signal.SIGINT, signal.SIGTERM)
"""What ``Interrupts.held`` holds back: Ctrl-C and SIGTERM, whichever of them the guard takes."""

_last_taken: dict[int, float] = {}
"""Signal -> when the last one that was not a copy was taken (time.monotonic)."""

_guards: list["Interrupts"] = []
"""The Interrupts entered on the main thread and not yet left, innermost last."""

_process_ends_with_command = False
"""Set by the rmm-mp program's entry point (ends_with_command): this process ends when the
command does, so a command that has ``decided`` may leave Ctrl-C and SIGTERM ignored."""


def forget_signals() -> None:
    """A new run begins: no SIGINT or SIGTERM taken so far is repeated by the next one."""
    _last_taken.clear()


def ends_with_command() -> None:
    """The rmm-mp program (console script, python -m rmm_mp) runs one command and ends: after
    a command's ``Interrupts.decided`` nothing is left to give or to stop, so a Ctrl-C or SIGTERM
    is ignored up to the process's end. A caller whose process goes on (click's CliRunner in a
    test, a script calling rmm_mp.cli.main) does not call this and gets its handlers back."""
    global _process_ends_with_command
    _process_ends_with_command = True


def command_over() -> None:
    """The command has given all its output. In the rmm-mp program (ends_with_command) Ctrl-C
    and SIGTERM are ignored from here to the process's end: one then made it die with 130 or
    143, or printed a traceback, after the verdict was given. A process that goes on keeps its
    handlers. The rmm-mp program calls it as click's handling of any command ends (cli.entry),
    so that a listing, --help or a usage error has its status kept as a verdict has."""
    if _process_ends_with_command and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def decided(status: int) -> NoReturn:
    """A command that holds no guard has given all its output: end it with exit status
    ``status`` (SystemExit), signals ignored from here on as command_over says."""
    command_over()
    raise SystemExit(status)


def repeated_signal(signum: int) -> bool:
    """Whether signal ``signum`` (SIGINT or SIGTERM) is a copy of the one taken less than its
    window ago (COPY_S, REPEAT_S); the handler then ignores it. One that is not notes its
    time; a copy does not, so a stream of copies cannot stretch the window."""
    if signum == signal.SIGINT:
        window = COPY_S
    elif signum == signal.SIGTERM:
        window = REPEAT_S
    else:
        return False
    now = time.monotonic()
    if now - _last_taken.get(signum, float("-inf")) < window:
        return True
    _last_taken[signum] = now
    return False


class Interrupts:
    """Ctrl-C (and SIGTERM with ``sigterm``) outside the CPUs' run: while the parent builds what
    they will use (realms, a stress population) and after they have stopped (figures, trace,
    outcomes, invariants, teardown).

    Such a signal ends the step under way at once (KeyboardInterrupt inside ``step``: a hung
    teardown can always be stopped) and every later step that ``step`` guards is skipped, but
    for quick reads of what the run left (``read=True``: figures, realm outcomes), so the report
    is still made, marked interrupted, with what was left undone. Between two steps a signal is
    only noted (the next step is then skipped), so none escapes as a bare KeyboardInterrupt.
    While ``passthrough`` runs the CPUs, a signal raises KeyboardInterrupt as usual: run_cpus
    handles Ctrl-C and SIGTERM itself. A signal ignored when the run began stays ignored; off
    the main thread (no signal handlers there) nothing is changed.

    A signal within its copy window of the last one taken (COPY_S, REPEAT_S) is that one's copy
    and ignored. A new run forgets the signals taken so far; ``continues`` is for the work that
    follows a run in the same command (the command-line tools' report and files): a copy of a
    signal the run took is still ignored there, not taken as a second request that cuts the
    report short."""

    def __init__(self, sigterm: bool, continues: bool = False) -> None:
        self.by = ""
        """What interrupted a step ("Ctrl-C", "SIGTERM"); "" if none did."""
        self.notes: tuple[str, ...] = ()
        """The notes of the KeyboardInterrupt that escaped ``passthrough``'s fn (run_cpus names
        there an error the interrupt replaced and its clean-up's errors), for the report."""
        self.final = False
        """The command has given all its output and its exit status (``decided``)."""
        self.armed = False
        self.passing = False
        self.holding = False
        """Ctrl-C and SIGTERM are held back since ``held`` (up to ``take``)."""
        self.held_back: list[int] = []
        """Signals that reached a handler while held back, to be taken at ``take``."""
        self.borrowed: dict[int, Any] = {}
        """Held signals this guard does not take (explore's SIGTERM) -> their own handler,
        replaced by this guard's (``_holding``) while held back."""
        self.displaced: dict[int, Any] = {}
        """Signals this guard takes whose handler was another's when ``held`` began (explore's
        SIGINT handler inside its guard) -> that handler, replaced by ``_holding`` meanwhile."""
        self.signals = [signal.SIGINT] + ([signal.SIGTERM] if sigterm else [])
        self.previous: dict[int, Any] = {}
        self.continues = continues

    def __enter__(self) -> "Interrupts":
        if not self.continues:
            forget_signals()
        if threading.current_thread() is threading.main_thread():
            # Inside another guard (a command's, held from before its run to the end of its
            # report, so that no signal falls between two guards): one it noted before this
            # one began is this one's too, so the run's first step is skipped.
            if _guards:
                self.by = _guards[-1].by
            _guards.append(self)
            for signum in self.signals:
                current = signal.getsignal(signum)
                if current != signal.SIG_IGN:
                    self.previous[signum] = signal.SIG_DFL if current is None else current
                    signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            # May raise: a held-back signal this guard does not take goes to its own handler.
            self.take()
        finally:
            # Even then: raised at once, the guard's handler stayed SIGINT's, taking every later
            # Ctrl-C for a guard long gone. After ``decided``, in a process that ends with the
            # command: a signal from here to the process's end has nothing left to stop, and the
            # handlers put back turned it into click's "Aborted!" and exit status 1, a
            # KeyboardInterrupt traceback from an atexit function, or death by the signal (130,
            # 143), instead of the status decided.
            late = self.final and _process_ends_with_command
            for signum, previous in self.previous.items():
                signal.signal(signum, signal.SIG_IGN if late else previous)
            if _guards and _guards[-1] is self:
                _guards.pop()

    def _holding(self, signum: int, frame: object) -> None:
        """This guard's handler standing in for another's while held back (``held``): a distinct
        function, so that ``take`` gives back only what is still replaced (a nested handler's
        own clean-up may have put this guard's back since)."""
        self._handler(signum, frame)

    def _handler(self, signum: int, frame: object) -> None:
        if self.holding and signum in self.borrowed:
            # Its own handler judges it, at ``take``.
            if signum not in self.held_back:
                self.held_back.append(signum)
            return
        if self.final or repeated_signal(signum):
            return
        if self.holding:
            # Judged as it arrives (the copy rule, above), taken at ``take``: judged only then,
            # a copy that arrived within its window was taken as a second request when the
            # held piece took longer than the window to write.
            if signum not in self.held_back:
                self.held_back.append(signum)
            return
        self._take(signum)

    def _take(self, signum: int) -> None:
        """This guard's signal ``signum``, judged no copy, taken: raised, or noted."""
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.passing:
            raise KeyboardInterrupt(what)
        self.by = self.by or what
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt(what)

    def step(self, fn: Callable[[], Any], read: bool = False) -> tuple[bool, Any]:
        """(True, fn()) or, when interrupted during it (or before it, unless ``read``), (False, None).
        A signal held back and not taken by this guard, whose own handler raises as ``take``
        gives it to it, skips the step as one during it would (it escaped as it was)."""
        try:
            self.take()
            self.armed = True
            if self.by and not read:
                raise KeyboardInterrupt(self.by)
            value = fn()
            self.armed = False
            return True, value
        except KeyboardInterrupt as exc:
            self.armed = False
            self.by = self.by or (exc.args[0] if exc.args else "Ctrl-C")
            return False, None

    def decided(self, status: int) -> NoReturn:
        """The command has given all its output: it ends with exit status ``status``
        (SystemExit). A signal from now on is ignored: it came too late to stop anything, and
        must not change the status (up to the process's end with ends_with_command)."""
        self.final = True
        try:
            decided(status)
        finally:        # a signal held back since the last output is ignored now (final)
            self.take()

    def held(self, fn: Callable[[], Any]) -> Any:
        """fn() (a piece of the command's last output: the report's last line, a note after
        it) with Ctrl-C and SIGTERM held back (by their handlers) from its start: one that
        comes meanwhile or after it waits for the next step, which takes it as between two steps,
        or, if ``decided`` comes first, is ignored. So a signal sent the moment the last line
        appears (a script that reacts to it) no longer lands while the write of that line is
        still returning, as one that cut the printing short and gave exit status 1 after every
        line was out. What it cannot hold: a handler for SIGINT or SIGTERM that fn itself
        installs (Machine.create's SIGTERM one, the first time a process makes a machine) takes
        a signal from then on as that handler does, not held back (nothing short of wrapping
        signal.signal would see it), and stays once fn is over: fn must install none (the
        pieces given here write output only). The piece is not cut short by a signal: keep it
        small (a line or two), as a write that blocks (a full pipe) delays the signal too. SIGTERM is held back too
        when this guard leaves it to its handler (``sigterm`` False: `rmm-mp explore`, whose
        SIGTERM ends it by the default action): one sent as the last line appears then waits
        for ``decided``, which ignores it, or for the next step, where it ends the command as
        it would have while the command worked. Off the main thread (no signal handlers there)
        fn() simply runs.

        The handlers hold them back (``held_back``): this guard's own, which judges each as it
        arrives (the copy rule: a copy of the signal the run took is ignored however long the
        piece takes), and for a held signal it does not take, or one another handler has taken
        inside this guard (explore's SIGINT one), this guard's in place of that handler (or
        default action) up to ``take``. Not a signal mask: blocking covers this thread only
        (with another thread alive the kernel gives a process-directed signal to that one, and
        CPython runs the handler on this thread anyway), and a signal blocked is judged only
        when let through, which took a copy that came at once for a second request when the
        piece took longer than the copy window."""
        if not self.holding and threading.current_thread() is threading.main_thread():
            self.holding = True
            for signum in _HELD:
                current = signal.getsignal(signum)
                if current in (signal.SIG_IGN, None) or current == self._handler:
                    continue
                if signum in self.signals:
                    # Another handler inside this guard (explore's SIGINT one): held back here
                    # all the same, as this guard's, where it raised in the middle of the line.
                    self.displaced[signum] = current
                else:
                    self.borrowed[signum] = current
                signal.signal(signum, self._holding)
        return fn()

    def give(self, text: str, write: Callable[[str], Any]) -> bool:
        """Give a command's report ``text`` with ``write`` (outpaths.echo, False when the reader
        has gone): every line but the last as a step that a signal cuts short, the last line
        ``held``. Whether all of it reached the reader."""
        head, _, last = text.rpartition("\n")
        given, whole = self.step(lambda: write(head), read=True) if head else (True, True)
        if given:
            whole = self.held(lambda: write(last)) and whole
        return given and bool(whole)

    def take(self) -> None:
        """Ctrl-C and SIGTERM held back by ``held`` come in again: one that waited is taken
        now (noted, or ignored once ``decided``; one this guard does not take goes to its own
        handler, unless ``decided``), before anything else runs. Both held back: each is taken,
        in the order they came, and the first is what interrupted (``by``, or what its own
        handler raised: raised here once both are taken, and the guard's handlers are put back
        all the same when this runs as the guard is left)."""
        if not self.holding:
            return
        borrowed, self.borrowed = self.borrowed, {}
        replaced = {**borrowed, **self.displaced}
        self.displaced = {}
        for signum, handler in replaced.items():
            # Unless changed since (decided set it ignored: command_over; a nested handler's
            # clean-up put this guard's back): that stays.
            if signal.getsignal(signum) == self._holding:
                signal.signal(signum, handler)
        self.holding = False
        held_back, self.held_back = self.held_back, []
        # Each in the order they came, every one of them even when a handler raises: the first
        # exception (the first signal that came and raised) is raised once all are taken, any
        # later one dropped, so a Ctrl-C held back behind a SIGTERM whose own handler raises is
        # still noted (``by``). Raised at once, it lost the rest, and left __exit__ before the
        # handlers were put back.
        raised: BaseException | None = None
        for signum in held_back:
            if self.final:
                continue
            try:
                if signum in borrowed:
                    signal.raise_signal(signum)
                else:
                    self._take(signum)
            except BaseException as exc:    # the handler's, as it would have been raised
                raised = raised or exc
        if raised is not None:
            raise raised

    def run_over(self) -> None:
        """The CPUs' run inside ``passthrough`` is over (run_cpus's on_end): from now on a signal
        is noted, as between steps, and no longer raised into ``fn``."""
        self.passing = False

    def passthrough(self, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, fn()), a signal raising KeyboardInterrupt meanwhile for fn to handle (``fn``
        sets ``passing`` False as soon as it can); (False, None) when one escapes fn, or when
        one was noted before (between steps, such as after the build the CPUs were to run on):
        fn is then not called, as a step is skipped, where it started the CPUs and ran them to
        their end (a timed run's full length) as if no signal had come. The escaping interrupt's
        notes are kept in ``notes``, which each call clears first: a later call's report must
        not list an earlier interrupt's."""
        self.notes = ()
        try:
            self.take()         # one held back whose own handler raises skips fn, as in ``step``
            self.passing = True
            if self.by:
                raise KeyboardInterrupt(self.by)
            return True, fn()
        except KeyboardInterrupt as exc:
            self.by = self.by or (exc.args[0] if exc.args else "Ctrl-C")
            self.notes = tuple(getattr(exc, "__notes__", ()))
            return False, None
        finally:        # whatever fn raised: the steps after it take signals as steps again
            self.passing = False
