"""How a CPU process ends once its target has returned or raised: its result or error sent to
the parent (``send``), its machine handle closed (``close_machine``), and the process ended
without the interpreter's teardown (``end_process``).

rmm_mp.cpu_main's CPU process entry calls these in that order. This module owns that end. It
must not start, watch or signal processes (rmm_mp.runtime and rmm_mp.cpu_supervisor do).
"""

from __future__ import annotations

import atexit
import multiprocessing.connection
import os
import sys
import threading
import traceback
from typing import Any

from rmm_mp.machine import Machine


def send(conn: multiprocessing.connection.Connection, message: tuple[Any, ...]) -> None:
    """Send ``message`` to the parent if it still listens (a parent gone is the lifeline's
    business)."""
    try:
        conn.send(message)
    except (OSError, ValueError):
        pass


def close_machine(machine: Machine, cpu_id: int, conn: multiprocessing.connection.Connection, code: int) -> None:
    """Close this CPU process's machine handle once its result or error is sent.

    A failure here is reported, but it does not change the CPU's outcome, which already
    reached the parent: a CPU that returned stays one that returned (status 0, its result
    kept), the failure sent as a warning (RunResult.warnings) and written to this process's
    standard error. Closing only releases what this process holds of the machine: its CPU
    binding (one a dead process holds is taken back by the next claim, cpu_handle.claim), its
    statistics (flushed before the result was sent) and its mappings (gone with the process).
    It touches no granule, lock or table, so a close cut short leaves the machine as sound as
    the CPU left it; the parent still looks for granule locks a failed CPU held, and the
    caller's invariant check sees any damage the target did. Before, the exception escaped
    into multiprocessing's bootstrap: the process exited 1 and the parent reported the CPU as
    failed although its result had arrived."""
    try:
        machine.close()
    except Exception as exc:    # children ignore SIGINT and SIGTERM: nothing else to let through
        what = f"closing its machine handle failed after its {'result' if code == 0 else 'error'} was sent: " \
               f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc()
        print(f"rmm-mp: warning: CPU {cpu_id} {what}\n{tb}", end="", file=sys.stderr)
        if code == 0:
            send(conn, ("warning", what, tb))


def end_process(code: int) -> None:
    """End a CPU process whose result or error is sent and whose machine is closed, with
    status ``code``, without the interpreter's teardown.

    Returning instead (multiprocessing's bootstrap, then sys.exit) tears down the 380 or so
    modules a CPU process has imported and frees its objects: 0.06 to 0.09 s of CPU each,
    which 32 or 64 CPU processes on 2 cores spent after their results had arrived, so that a
    run or stress command waited 1 to 4 s longer for them (docs/performance.md). What that
    exit did that matters is done here: threading's shutdown (its atexit hooks, such as the one
    ending an idle thread pool, then the non-daemon threads the target left are waited for),
    the atexit handlers run (multiprocessing's finalizers, logging's flush, Machine's
    close_all, the target's own), and the standard streams are flushed (os._exit does not,
    and standard output is block-buffered when it is a pipe or a file). What is skipped is
    the modules' teardown and the last garbage collection: __del__ methods of objects still
    alive; rmm_mp has none, and everything a CPU process writes to a file it closes itself.
    A forkserver child ended with os._exit after the bootstrap already (multiprocessing's
    forkserver does), skipping the atexit handlers; they run here for both contexts."""
    try:
        # threading's own shutdown, as the interpreter's exit calls it: the hooks registered
        # with threading._register_atexit first (concurrent.futures wakes its idle pool workers
        # there so that they end; joined before it, a pool the target left open never ended and
        # the process hung until the parent killed it), then every non-daemon thread is joined,
        # one a joined thread started included.
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        else:
            current = threading.current_thread()
            for thread in threading.enumerate():
                if thread is not current and not thread.daemon:
                    thread.join()
        # CPython's own call for the atexit handlers (typeshed has it; there is no public one):
        # a handler that raises is reported on stderr and the others still run, as at exit.
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):  # a reader gone (EPIPE), a stream the target closed
                pass
        os._exit(code)
