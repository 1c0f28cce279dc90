"""CPU processes end with their creator, in both start contexts; signal handlers survive a
first machine made in a worker thread. (Regressions of bugs found while writing the lifetime
tests.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
import psutil
import pytest

from rmm_mp.hw.segment import SHM_DIR

CPU_TARGETS = r"""
import os, time
def loop_until_stopped(cpu, pid_dir):
    path = os.path.join(pid_dir, f"cpu{cpu.id}.pid")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    while not cpu.machine.control.stop_requested:
        cpu.smc(0xC4000150, 0x10000)
        time.sleep(0.002)
    return 0
"""

CREATOR = r"""
import signal, sys
signal.signal(signal.SIGTERM, signal.SIG_DFL)
sys.path.insert(0, sys.argv[1])
from rmm_mp import Machine
from rmm_mp.runtime import run_cpus
from bug_targets import loop_until_stopped
m = Machine.create("host", cpus=2)
print(m.name, flush=True)
run_cpus(m, loop_until_stopped, args=(sys.argv[1],), context=sys.argv[2])
"""


@pytest.mark.parametrize("context", ["spawn", "forkserver"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_cpu_processes_die_with_their_creator(tmp_path: Path, context: str, signum: int) -> None:
    """A creator running 2 CPU processes (run_cpus) is killed; its CPU processes must end too
    (runtime.py: the lifeline pipe ends them whatever the start context)."""
    (tmp_path / "bug_targets.py").write_text(CPU_TARGETS)
    proc = subprocess.Popen([sys.executable, "-c", CREATOR, str(tmp_path), context],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = []
    try:
        name = proc.stdout.readline().decode().strip()
        files = [tmp_path / f"cpu{i}.pid" for i in range(2)]
        deadline = time.monotonic() + 30
        while not all(f.exists() for f in files):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pids = [int(f.read_text()) for f in files]
        cpus = [psutil.Process(p) for p in pids]
        os.kill(proc.pid, signum)
        proc.wait(30)
        _, alive = psutil.wait_procs(cpus, timeout=10)
        assert not alive, f"CPU processes {[p.pid for p in alive]} outlived their creator ({context})"
    finally:
        proc.kill()
        proc.wait()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for e in os.listdir(SHM_DIR):
            if name and e.startswith(name + "."):
                os.unlink(os.path.join(SHM_DIR, e))


HANDLERS_AFTER_THREAD = r"""
import signal, sys, threading, time
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from rmm_mp import Machine
t = threading.Thread(target=lambda: Machine.create("host", cpus=1).close())
t.start()
t.join()
m = Machine.create("host", cpus=1)     # created by the main thread
print(m.name, flush=True)
time.sleep(60)
"""


def test_sigterm_unlinks_even_if_an_earlier_machine_was_made_in_a_thread() -> None:
    """A process first creates (and closes) a machine in a worker thread, then creates one in
    its main thread and gets SIGTERM: the main-thread machine must be unlinked."""
    proc = subprocess.Popen([sys.executable, "-c", HANDLERS_AFTER_THREAD], stdout=subprocess.PIPE)
    name = ""
    try:
        name = proc.stdout.readline().decode().strip()
        assert any(e.startswith(name + ".") for e in os.listdir(SHM_DIR))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
        left = [e for e in os.listdir(SHM_DIR) if e.startswith(name + ".")]
        assert not left, f"SIGTERM left {left}"
    finally:
        proc.kill()
        proc.wait()
        for e in os.listdir(SHM_DIR):
            if name and e.startswith(name + "."):
                os.unlink(os.path.join(SHM_DIR, e))
