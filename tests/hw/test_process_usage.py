"""What run_cpus reports a CPU process cost (cpu_outcome.ProcessUsage): its own figures, not its parent's."""

from __future__ import annotations

import resource
import subprocess
import sys

from rmm_mp import Machine
from rmm_mp.runtime import run_cpus

BALLAST = 256 << 20
"""More than a CPU process that makes no call touches (an interpreter and the machine's control pages)."""


def _idle(cpu) -> int:  # type: ignore[no-untyped-def]
    return 0


def test_peak_rss_is_the_cpu_process_own() -> None:
    """A spawned process starts through fork (vfork) and exec, and Linux's getrusage ru_maxrss
    carries the parent's peak over the exec: every CPU process then reported at least the
    parent's peak RSS as its own (the identical "peak RSS" of every CPU in the report)."""
    ballast = bytearray(BALLAST)
    for offset in range(0, BALLAST, 4096):     # touch every page: the parent's peak grows by BALLAST
        ballast[offset] = 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 > BALLAST
    with Machine.create("host", cpus=1) as m:
        result = run_cpus(m, _idle)
    del ballast
    assert result.ok, [f.describe() for f in result.failures]
    usage = result.usage[0]
    assert usage.private_bytes < usage.peak_rss_bytes < BALLAST


def test_peak_rss_is_read_whatever_the_process_name() -> None:
    """/proc/self/status starts with the process name, which is bytes the kernel does not
    encode: read as ASCII, a non-ASCII name (an interpreter renamed, a name set with prctl)
    raised UnicodeDecodeError in the CPU process after its work was done, so a CPU that ran
    cleanly was reported as failed."""
    probe = ("import ctypes\n"
             "ctypes.CDLL(None).prctl(15, b'r\\xc3\\xa9mm-cpu', 0, 0, 0)\n"     # PR_SET_NAME
             "assert open('/proc/self/status', 'rb').readline() == b'Name:\\tr\\xc3\\xa9mm-cpu\\n'\n"
             "from rmm_mp import cpu_outcome\n"
             "print(cpu_outcome.peak_rss_bytes())\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0


def _kernel_name(cpu) -> str:  # type: ignore[no-untyped-def]
    with open("/proc/self/comm", "rb") as comm:
        return comm.read().decode().strip()


def test_a_cpu_process_goes_by_its_name_outside_python() -> None:
    """ps, top, pgrep and perf name a process by the kernel's name (/proc/PID/comm), not by
    multiprocessing's Process.name: every CPU process showed the interpreter's name, the same
    as its parent's, so none could be told apart or found as rmm-mp-cpuN from outside."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, _kernel_name)
    assert result.ok, [f.describe() for f in result.failures]
    assert result.results == {0: "rmm-mp-cpu0", 1: "rmm-mp-cpu1"}
