"""The process-wide clean-up of machines (docs/architecture.md, "Leaks"): the machines this
process has created or attached (``_live``) and those Machine.create is still making
(``_creating``), and what closes them all as the process ends: ``close_all``, run by the
at-exit hook and by the SIGTERM/SIGHUP handler (``_on_signal``) that ``install_handlers``
puts in place.

rmm_mp.machine adds and removes machines here (Machine.create, attach and close) and
re-exports ``install_handlers`` (and imports ``_live``, ``_creating``); ``close_all`` is
called from here. This module owns those
lists and hooks. It must not make, attach or map segments, nor touch a machine other than
through Machine.close; it is on no call path of a running machine (smc, ns_read, ns_write).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from rmm_mp import outpaths
from rmm_mp.hw import reaper, segment

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

_live: "set[Machine]" = set()
_creating: set[str] = set()
"""Prefixes of machines Machine.create is making in this process (not yet in _live)."""


def _forget_creating_after_fork() -> None:
    # A child forked while another thread of the parent is inside Machine.create would unlink
    # that half-made machine at its own exit (close_all unlinks every prefix in _creating):
    # the machine is the parent's, as every machine a forked child inherits is.
    _creating.clear()


os.register_at_fork(after_in_child=_forget_creating_after_fork)

_atexit_registered = False
_signals_installed = False
_previous_handlers: dict[int, Any] = {}


def _register(machine: Machine) -> None:
    _live.add(machine)
    install_handlers()


def close_all() -> None:
    """Close every machine this process created or attached (atexit and signal path), and
    unlink the segments of one it is creating. Each is tried: an unlink refused for one (the
    error Machine.close raises, having closed it all the same) is raised once every other has
    been closed; stopping at the first left the others open, their segments in place."""
    failed: Exception | None = None
    for prefix in list(_creating):
        try:
            segment.unlink_parts(prefix)
        except Exception as exc:    # the reaper, still told of the paths, tries them at the end
            failed = failed or exc
            continue
        reaper.forget(prefix)
    for machine in list(_live):
        try:
            machine.close()
        except Exception as exc:
            failed = failed or exc
    if failed is not None:
        raise failed


def _on_signal(signum: int, frame: FrameType | None) -> None:
    try:
        close_all()
    except Exception as exc:
        # An unlink refused (close_all closed every machine all the same): raised out of the
        # handler, the error went into the code the signal interrupted, which went on, its
        # report file not removed and the signal's default action never taken. Said, and the
        # reaper, still told of the paths, tries them as this process ends.
        try:
            os.write(2, f"rmm-mp: closing the machines on {signal.Signals(signum).name} failed ({exc}); "
                        "this process's reaper tries the files left as it ends\n".encode(errors="replace"))
        except OSError:
            pass
    outpaths.remove_unfinished()    # a report file half written: the process dies before its except clause
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_handlers() -> None:
    """Register close_all at exit once, and the signal handlers once from the main thread.

    Signal handlers can only be installed by the main thread; a machine first made in a worker
    thread leaves them for the next create or attach that runs on the main thread.

    Machine.create and attach call it. A command that takes SIGTERM itself around a run
    (rmm_mp.interrupts) calls it before its guard begins: installed by the first create inside
    the guard, the handler replaced the guard's and passed the signal on to it only after
    closing every machine, so the run went on with a closed machine (a traceback).
    """
    global _atexit_registered, _signals_installed
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(close_all)
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    _signals_installed = True
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous == signal.SIG_IGN:
            continue
        _previous_handlers[signum] = previous
        signal.signal(signum, _on_signal)
