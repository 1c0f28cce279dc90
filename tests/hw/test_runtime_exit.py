"""How a CPU process of run_cpus ends once its target has returned or raised: what the target
printed reaches the process's standard output (a pipe here, so block-buffered: only a flush
writes it), and its status is the one run_cpus reads (0 with a result, 1 with an error).

Each test runs run_cpus in a fresh Python process whose standard output is a pipe, as the
output of a command piped to another, or captured by a test or a CI job, is; the CPU processes
share that pipe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))

_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
from rmm_mp import Machine
from rmm_mp.runtime import run_cpus
import test_runtime_exit as targets
with Machine.create("host", cpus=2) as m:
    result = run_cpus(m, getattr(targets, sys.argv[2]), context=sys.argv[3], timeout_s=60)
print("results", sorted(result.results.items()))
print("failed", sorted((f.cpu, f.how) for f in result.failures))
print("exit codes", sorted(result.exit_codes.items()))
"""


def _run(target: str, context: str = "spawn") -> list[str]:
    """The lines a fresh process running run_cpus(target) on 2 CPUs (processes started from
    ``context``) wrote to its stdout pipe."""
    # Without PYTHONUNBUFFERED (set where these tests are often run), as a user's shell has it:
    # with it, every write went straight to the pipe and a missing flush would not show.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", _RUN, _HERE, target, context], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode().splitlines()


def _print_then_raise(cpu) -> None:  # type: ignore[no-untyped-def]
    """Print a line (no flush), then raise."""
    print(f"cpu {cpu.id} printed before raising")
    raise RuntimeError("on purpose")


@pytest.mark.multiprocess
def test_what_a_cpu_printed_before_it_raised_reaches_stdout() -> None:
    """Both CPUs print a line to a block-buffered stdout (a pipe) and raise. Each line reaches
    the pipe, and each CPU is a failure naming the error, exit status 1. Before, the error path
    ended the process with os._exit(1) without a flush: the lines were lost."""
    lines = _run("_print_then_raise")
    assert "cpu 0 printed before raising" in lines, lines
    assert "cpu 1 printed before raising" in lines, lines
    assert "results []" in lines, lines
    assert "failed [(0, 'raised RuntimeError: on purpose'), (1, 'raised RuntimeError: on purpose')]" in lines, lines
    assert "exit codes [(0, 1), (1, 1)]" in lines, lines


class _TornDown:
    """Writes a line when it is destroyed: kept only in sys.modules, that is when the
    interpreter's teardown empties sys.modules (os.write: sys.stdout may be gone by then)."""

    def __init__(self, cpu_id: int) -> None:
        self.cpu_id = cpu_id

    def __del__(self) -> None:
        os.write(1, f"cpu {self.cpu_id} torn down\n".encode())


def _print_and_return(cpu) -> int:  # type: ignore[no-untyped-def]
    """Print a line (no flush), register an atexit handler that prints, leave a non-daemon
    thread that prints after a moment and a _TornDown in sys.modules; return."""
    import atexit
    import threading
    import time
    print(f"cpu {cpu.id} printed before returning")
    atexit.register(print, f"cpu {cpu.id} atexit handler ran")

    def late() -> None:
        time.sleep(0.2)
        print(f"cpu {cpu.id} thread finished")
    threading.Thread(target=late, daemon=False).start()
    sys.modules[f"_cpu{cpu.id}_torn_down"] = _TornDown(cpu.id)  # type: ignore[assignment]
    return int(cpu.id) * 10


@pytest.mark.multiprocess
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_a_cpu_that_returned_ends_without_the_interpreters_teardown_and_loses_no_output(context: str) -> None:
    """Both CPUs print a line (stdout a pipe, block-buffered), register an atexit handler that
    prints, start a non-daemon thread that prints 0.2 s later, put an object whose __del__ writes a
    line in sys.modules, and return. Each result arrives, exit status 0; the
    printed line, the handler's and the thread's reach the pipe (what a normal exit does is
    still done); the __del__ never runs: the process ends with os._exit once that is done, not
    through the interpreter's teardown, whose module finalization took 0.06 to 0.09 s of CPU
    per process and, for 64 CPU processes on 2 cores, seconds of a command's end. The same
    from a forkserver, whose children skipped the teardown already but not the atexit handlers."""
    lines = _run("_print_and_return", context)
    for cpu in (0, 1):
        assert f"cpu {cpu} printed before returning" in lines, lines
        assert f"cpu {cpu} atexit handler ran" in lines, lines
        assert f"cpu {cpu} thread finished" in lines, lines
        assert f"cpu {cpu} torn down" not in lines, lines
    assert "results [(0, 0), (1, 10)]" in lines, lines
    assert "failed []" in lines, lines
    assert "exit codes [(0, 0), (1, 0)]" in lines, lines


def _leave_a_thread_pool(cpu) -> int:  # type: ignore[no-untyped-def]
    """Run a task on a thread pool and return without shutting the pool down (its idle worker,
    a non-daemon thread, ends only when threading's exit hooks tell it to)."""
    import concurrent.futures
    pool = concurrent.futures.ThreadPoolExecutor(1)
    pool.submit(int).result()
    sys.modules[f"_cpu{cpu.id}_pool"] = pool  # type: ignore[assignment]
    return int(cpu.id)


_RUN_SHORT = """
import sys
sys.path.insert(0, sys.argv[1])
from rmm_mp import Machine
from rmm_mp.runtime import run_cpus
import test_runtime_exit as targets
with Machine.create("host", cpus=2) as m:
    result = run_cpus(m, targets._leave_a_thread_pool, context=sys.argv[2], timeout_s=3, grace_s=1)
print("results", sorted(result.results.items()))
print("exit codes", sorted(result.exit_codes.items()))
"""


@pytest.mark.multiprocess
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_a_cpu_that_left_a_thread_pool_open_ends_by_itself(context: str) -> None:
    """Both CPUs leave a concurrent.futures pool open (its idle worker is a non-daemon thread)
    and return. Each process ends by itself, exit status 0, as a normal interpreter exit ends
    it (threading's exit hooks wake the worker before the threads are joined). Joining the
    threads before those hooks waited for the worker for ever: the processes were killed with
    SIGKILL once the 3 s limit and 1 s grace had passed (exit codes -9)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", _RUN_SHORT, _HERE, context], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = done.stdout.decode().splitlines()
    assert "results [(0, 0), (1, 1)]" in lines, lines
    assert "exit codes [(0, 0), (1, 0)]" in lines, lines
