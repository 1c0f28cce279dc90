"""The CPU process's side of run_cpus: what one child does from its start to its exit.

``cpu_main`` is the target run_cpus starts in each CPU process. It takes its args and then its
go down the lifeline (rmm_mp.cpu_args, rmm_mp.cpu_start), starts the watcher that ends the
process when the parent is gone (LIFELINE_EXIT), attaches the machine, binds its CPU, runs the
target and sends back the result or the error, then closes its handle and exits
(rmm_mp.cpu_exit). CPU processes ignore Ctrl-C and SIGTERM (STOP_SIGNALS): the parent handles
them and stops the run through the control block.

This module owns the child's life. It must not supervise (cpu_supervisor.py's _Supervisor) nor touch
another CPU's process.
"""

from __future__ import annotations

import ctypes
import multiprocessing.connection
import os
import signal
import threading
import traceback
from typing import Any, Callable

import psutil

from rmm_mp import cpu_args, cpu_exit, cpu_start
from rmm_mp.cpu_outcome import own_usage
from rmm_mp.hw.faults import MachineError
from rmm_mp.machine import Machine

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _pin(cpu_id: int, cores: list[int]) -> int | None:
    """Pin this process to one host core (CPU i -> the i-th allowed core, wrapping); None if we cannot."""
    if not cores:
        return None
    core = cores[cpu_id % len(cores)]
    try:
        psutil.Process().cpu_affinity([core])
    except (AttributeError, psutil.Error, OSError):
        return None
    return core


def _set_process_attributes(cpu_id: int) -> None:
    """Die with the parent, and go by the CPU's name (``rmm-mp-cpuN``, run_cpus' Process.name)
    outside Python too: ps, top, pgrep and perf show the kernel's name of the process, which
    was the interpreter's, the same for the parent and every CPU."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # At most 15 bytes: "rmm-mp-cpu" and up to 5 digits.
        libc.prctl(_PR_SET_NAME, f"rmm-mp-cpu{cpu_id}".encode(), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the stop flag still ends the run
        pass


STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
"""What a terminal (Ctrl-C) and `timeout` send to the whole process group: the parent handles
them, CPU processes ignore them."""

LIFELINE_EXIT = 70
"""Exit status of a CPU process whose parent died under it."""


def _watch_lifeline(lifeline: multiprocessing.connection.Connection) -> None:
    try:
        lifeline.recv()
    except (EOFError, OSError):
        pass
    os._exit(LIFELINE_EXIT)


def _parent_gone(lifeline: multiprocessing.connection.Connection) -> bool:
    """Whether the lifeline is at end-of-file (its only writer, the parent, is gone)."""
    try:
        return lifeline.poll()
    except (EOFError, OSError):
        return True


def cpu_main(name: str, cpu_id: int, target: Callable[..., Any],
             by_spawn: tuple[Any, ...], conn: multiprocessing.connection.Connection,
             lifeline: multiprocessing.connection.Connection, pin_cores: list[int] | None, tracing: bool) -> None:
    _set_process_attributes(cpu_id)
    # The args come down the lifeline (cpu_args.feed), then the go (cpu_start), before the watcher
    # takes any message on it as the parent's end. End-of-file instead of them: the parent died
    # while this process started.
    try:
        pickled, own = cpu_args.receive(lifeline)
    except (EOFError, OSError):
        os._exit(LIFELINE_EXIT)
    # Ignored before Machine.attach, whose SIGTERM handler would otherwise end the process at
    # once (it leaves an ignored signal alone). The parent started this process with both
    # blocked, so one sent while it was starting up is pending: ignoring discards it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    pinned = _pin(cpu_id, pin_cores) if pin_cores is not None else None
    # Up, and nothing of the machine touched yet: the parent's go comes down the lifeline
    # (cpu_start). Withheld after a Ctrl-C or SIGTERM, which kills this process instead.
    if not cpu_start.await_go(conn, lifeline):
        os._exit(LIFELINE_EXIT)
    threading.Thread(target=_watch_lifeline, args=(lifeline,), name="lifeline", daemon=True).start()
    try:
        machine = Machine.attach(name)
    except MachineError:
        # A parent that died while this process started up (SIGHUP, or SIGTERM outside
        # sigterm_stops) unlinked the machine first: not this CPU's failure to report with a
        # traceback. The watcher ends such a process too, but this thread may get here first.
        if _parent_gone(lifeline):
            os._exit(LIFELINE_EXIT)
        raise
    code = 0
    try:
        try:
            cpu = machine.cpu(cpu_id)
            if tracing:
                cpu.set_tracing(True)
            # Here, so that a failure is reported as the target's.
            args = cpu_args.unpickle_args(pickled, by_spawn) + tuple(cpu_args.unpickle_own(*one) for one in own)
            del pickled, own    # the pickled shared args: not held for the whole run
            result = target(cpu, *args)
            cpu.flush_statistics()
            conn.send(("ok", result, own_usage(pinned)))
        except BaseException as exc:  # report everything, RmmInternalError included, then exit
            code = 1
            cpu_exit.send(conn, ("error", f"raised {type(exc).__name__}: {exc}", traceback.format_exc()))
        cpu_exit.close_machine(machine, cpu_id, conn, code)
    finally:
        conn.close()
    cpu_exit.end_process(code)
