"""Shared-memory lifetime across processes (DESIGN.md section 3, Lifetime): nothing is left in
/dev/shm however the creator ends, an attacher never unlinks, a dead CPU process does not tear
the machine down, and orphans of a SIGKILLed creator (whose reaper, hw.reaper, was killed too)
are removed by the next Machine.create or by `rmm-mp clean`.

Every scenario runs its creator as a subprocess ([sys.executable, "-c", script]) that prints
its machine name and waits; the test then only looks at that machine's entries
(``<name>.<part>`` in /dev/shm), because other xdist workers create machines of their own at
the same time. Those workers also remove orphans whenever they create a machine, so the tests
that need an orphan to survive until a given moment retry when someone else removed it first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from children import (CHILD_TIMEOUT_S, entries_in, entries_of, finish, kill_reaper, private_shm_dir, read_line,
                      start_child, tell)
from rmm_mp import Machine
from rmm_mp.hw import segment
from rmm_mp.hw.faults import MachineError



# -- helpers ----------------------------------------------------------------------------------

def read_name(proc: subprocess.Popen[bytes], shm_dir: str = segment.SHM_DIR) -> str:
    """The machine name the child prints first; checks that its segments exist now."""
    name = read_line(proc)
    assert re.fullmatch(rf"rmm-mp-{proc.pid}-[0-9a-f]{{8}}", name), name
    assert entries_in(shm_dir, name), f"the child's machine {name} has no segment in {shm_dir}"
    return name


def wait_exit(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Wait for the child to end on its own; (return code, stderr)."""
    _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    return proc.returncode, err.decode(errors="replace")


def remove_leftovers(name: str) -> None:
    """Last resort after a failed test: unlink what is left of machine ``name``."""
    for entry in entries_of(name):
        try:
            os.unlink(os.path.join(segment.SHM_DIR, entry))
        except FileNotFoundError:
            pass


# Children start with the default dispositions of the signals under test: a pytest worker may
# have inherited SIG_IGN for some of them, which its children would inherit in turn.
PREAMBLE = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from rmm_mp import Machine
"""

# Creates a machine without `with` and without close(), prints its name, then waits for a line
# on stdin ("check": use the machine and say "ok"; anything else: fall off the end of the script).
CREATOR_WAITS = PREAMBLE + r"""
m = Machine.create("host", cpus=2)
print(m.name, flush=True)
for line in sys.stdin:
    if line.strip() != "check":
        break
    cpu = m.cpu(0)
    m.ns_write(m.dram_base + 64, b"still here")
    assert m.ns_read(m.dram_base + 64, 10) == b"still here"
    assert cpu.smc(0xC4000150, 0x10000)[0] == 0
    print("ok", flush=True)
"""

CREATOR_CLOSES = PREAMBLE + r"""
m = Machine.create("host", cpus=2)
print(m.name, flush=True)
sys.stdin.readline()
m.close()
"""

CREATOR_RAISES = PREAMBLE + r"""
with Machine.create("host", cpus=2) as m:
    print(m.name, flush=True)
    m.cpu(0).smc(0xC4000150, 0x10000)
    sys.stdin.readline()
    raise RuntimeError("escaping the with block")
"""

CREATOR_SLEEPS = PREAMBLE + r"""
from rmm_mp.stress.shared import StressSegment
m = Machine.create("host", cpus=2)
m.cpu(1)
StressSegment.create(m.name, 2, 0, 0, 0, 0)   # a segment a tool made under the machine's name
print(m.name, flush=True)
time.sleep(60)
print("the signal did not end the sleep", flush=True)
"""


# -- the creator ends ---------------------------------------------------------------------------

@pytest.mark.parametrize("script", [CREATOR_WAITS, CREATOR_CLOSES], ids=["interpreter-exit", "close"])
def test_normal_exit_leaves_nothing(script: str) -> None:
    """A creator script ends normally - by closing the machine, or by simply reaching its end
    without close() (the interpreter-exit hook closes it): exit status 0, nothing of its
    machine is left in /dev/shm."""
    proc = start_child(script)
    name = ""
    try:
        name = read_name(proc)
        tell(proc, "")
        code, err = wait_exit(proc)
        assert code == 0, err
        assert not entries_of(name)
    finally:
        finish(proc)
        if name:
            remove_leftovers(name)


def test_exception_out_of_with_block_and_script_leaves_nothing() -> None:
    """An exception propagates out of `with Machine.create()` and out of the script: the
    script fails with that exception and nothing of its machine is left in /dev/shm."""
    proc = start_child(CREATOR_RAISES)
    name = ""
    try:
        name = read_name(proc)
        tell(proc, "")
        code, err = wait_exit(proc)
        assert code == 1
        assert "RuntimeError: escaping the with block" in err
        assert not entries_of(name)
    finally:
        finish(proc)
        if name:
            remove_leftovers(name)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_to_the_creator_leaves_nothing(signum: signal.Signals) -> None:
    """A creator that made a machine without `with` (and bound a CPU, and made a stress
    segment under the machine's name as `rmm-mp stress` does) sleeps and receives Ctrl-C
    (SIGINT), SIGTERM or SIGHUP: it ends (for SIGTERM/SIGHUP by that signal, as its default
    action would, and not by finishing the sleep) and nothing of its machine is left in
    /dev/shm, the stress segment included."""
    proc = start_child(CREATOR_SLEEPS)
    name = ""
    try:
        name = read_name(proc)
        proc.send_signal(signum)
        code, err = wait_exit(proc)
        if signum == signal.SIGINT:
            assert code != 0 and "KeyboardInterrupt" in err, (code, err)
        else:
            assert code == -signum, (code, err)
        assert not entries_of(name)
    finally:
        finish(proc)
        if name:
            remove_leftovers(name)


# Signals itself right after Machine.create made its second segment, before Segment.create
# has returned it (as a signal arriving there would): the half-made machine must vanish.
CREATOR_SIGNALLED_WHILE_CREATING = PREAMBLE + r"""
from rmm_mp.hw import segment
real = segment.Segment.create.__func__
made = []

def create(cls, prefix, part, size):
    seg = real(cls, prefix, part, size)
    made.append(part)
    if len(made) == 2:
        print(prefix, flush=True)
        os.kill(os.getpid(), int(sys.argv[1]))
        time.sleep(5)   # SIGTERM and SIGHUP end the process here; SIGINT has raised already
    return seg

segment.Segment.create = classmethod(create)
Machine.create("host", cpus=2)
print("created", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_while_the_machine_is_being_created_leaves_nothing(signum: signal.Signals) -> None:
    """Ctrl-C, SIGTERM or SIGHUP while Machine.create is making the segments (after the second
    exists, before it is handed back): the process ends by that signal (SIGINT: by the
    KeyboardInterrupt) and none of the segments made so far is left behind."""
    with private_shm_dir() as shm:
        proc = start_child(CREATOR_SIGNALLED_WHILE_CREATING, str(int(signum)), shm_dir=shm)
        try:
            name = read_line(proc)
            assert re.fullmatch(rf"rmm-mp-{proc.pid}-[0-9a-f]{{8}}", name), name
            code, err = wait_exit(proc)
            if signum == signal.SIGINT:
                assert code == -signal.SIGINT and "KeyboardInterrupt" in err, (code, err)
            else:
                assert code == -signum, (code, err)
            assert not os.listdir(shm), f"left behind: {os.listdir(shm)}"
        finally:
            finish(proc)


# -- a CPU process dies ---------------------------------------------------------------------------

# Spawned CPU processes import their target by module name: it is written next to the test's
# temporary files and put on sys.path, which spawn hands to its children.
CPU_TARGETS = r"""
import os, time

def loop_until_stopped(cpu, pid_dir):
    path = os.path.join(pid_dir, f"cpu{cpu.id}.pid")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    calls = 0
    while not cpu.machine.control.stop_requested:
        cpu.smc(0xC4000150, 0x10000)
        calls += 1
        time.sleep(0.002)
    return calls
"""

CREATOR_RUNS_CPUS = PREAMBLE + r"""
import json
sys.path.insert(0, sys.argv[1])
from rmm_mp.runtime import run_cpus
from shm_lifetime_targets import loop_until_stopped
m = Machine.create("host", cpus=3)
print(m.name, flush=True)
result = run_cpus(m, loop_until_stopped, args=(sys.argv[1],), context="spawn", grace_s=10.0)
print(json.dumps({
    "failures": [[f.cpu, f.how] for f in result.failures],
    "results": {str(cpu): value for cpu, value in result.results.items()},
    "exit_codes": {str(cpu): code for cpu, code in result.exit_codes.items()},
    "stopped_by": result.stopped_by,
    "ok": result.ok,
}), flush=True)
sys.stdin.readline()
cpu = m.cpu(1)
assert cpu.smc(0xC4000150, 0x10000)[0] == 0
m.close()
print("closed", flush=True)
"""


def test_sigkilled_cpu_process_is_reported_and_the_machine_survives(tmp_path: Path) -> None:
    """A creator runs 3 CPU processes (run_cpus, spawn) that loop until the stop flag; CPU 1's
    process, a child of the creator, is killed with SIGKILL. The run reports CPU 1 as failed
    ("was killed by SIGKILL"), CPUs 0 and 2 stop when asked and return, the machine's segments
    are still there and usable (CPU 1 binds again in the creator), and after the creator
    closes nothing of the machine is left in /dev/shm."""
    (tmp_path / "shm_lifetime_targets.py").write_text(CPU_TARGETS)
    proc = start_child(CREATOR_RUNS_CPUS, str(tmp_path))
    name = ""
    try:
        name = read_name(proc)
        segments = entries_of(name)
        pid_files = [tmp_path / f"cpu{cpu}.pid" for cpu in range(3)]
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not all(path.exists() for path in pid_files):
            assert proc.poll() is None, f"the creator ended early: {proc.returncode}"
            assert time.monotonic() < deadline, "the CPU processes never started their loops"
            time.sleep(0.02)
        cpu_pids = [int(path.read_text()) for path in pid_files]
        children = {p.pid for p in psutil.Process(proc.pid).children()}
        assert set(cpu_pids) <= children, (cpu_pids, children)
        os.kill(cpu_pids[1], signal.SIGKILL)

        report = json.loads(read_line(proc))
        assert report["failures"] == [[1, "was killed by SIGKILL"]], report
        assert report["ok"] is False
        assert sorted(report["results"]) == ["0", "2"], report
        assert all(isinstance(calls, int) and calls > 0 for calls in report["results"].values()), report
        assert report["exit_codes"] == {"0": 0, "1": -signal.SIGKILL, "2": 0}, report
        assert "CPU 1" in report["stopped_by"], report

        assert entries_of(name) == segments, "a dead CPU process tore the machine down"
        tell(proc, "")
        assert read_line(proc) == "closed"
        code, err = wait_exit(proc)
        assert code == 0, err
        assert not entries_of(name)
    finally:
        finish(proc)
        if name:
            remove_leftovers(name)


CREATOR_RUNS_UNTIL_KILLED = PREAMBLE + r"""
sys.path.insert(0, sys.argv[1])
from rmm_mp.runtime import run_cpus
from shm_lifetime_targets import loop_until_stopped
m = Machine.create("host", cpus=2)
print(m.name, flush=True)
run_cpus(m, loop_until_stopped, args=(sys.argv[1],), context="spawn")
print("the run ended on its own", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_cpu_processes_end_with_a_killed_creator(tmp_path: Path, signum: signal.Signals) -> None:
    """A creator runs 2 CPU processes (run_cpus, spawn) and is killed with SIGTERM or SIGKILL
    while they loop: the CPU processes end too instead of spinning on; after SIGTERM nothing
    of the machine is left in /dev/shm (after SIGKILL its reaper unlinks it, as tests/hw/
    test_reaper.py checks; whatever is left is removed here)."""
    (tmp_path / "shm_lifetime_targets.py").write_text(CPU_TARGETS)
    proc = start_child(CREATOR_RUNS_UNTIL_KILLED, str(tmp_path))
    name = ""
    cpus: list[psutil.Process] = []
    try:
        name = read_name(proc)
        pid_files = [tmp_path / f"cpu{cpu}.pid" for cpu in range(2)]
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not all(path.exists() for path in pid_files):
            assert proc.poll() is None, f"the creator ended early: {proc.returncode}"
            assert time.monotonic() < deadline, "the CPU processes never started their loops"
            time.sleep(0.02)
        cpus = [psutil.Process(int(path.read_text())) for path in pid_files]
        assert {p.pid for p in cpus} <= {p.pid for p in psutil.Process(proc.pid).children()}
        proc.send_signal(signum)
        code, err = wait_exit(proc)
        assert code == -signum, err
        _, alive = psutil.wait_procs(cpus, timeout=CHILD_TIMEOUT_S)
        assert not alive, f"CPU processes {[p.pid for p in alive]} outlived their creator"
        if signum == signal.SIGTERM:
            assert not entries_of(name)
    finally:
        finish(proc)
        for cpu in cpus:  # psutil.Process.kill checks the pid still names that process
            try:
                cpu.kill()
            except psutil.NoSuchProcess:
                pass
        if name:
            remove_leftovers(name)


# -- an unrelated process attaches --------------------------------------------------------------

# Attaches machine argv[1], uses CPU 1 and NS memory, prints its descendants (a resource
# tracker, had it started one), then ends as argv[2] says.
ATTACHER = r"""
import os, signal, sys
import psutil
from rmm_mp import Machine
m = Machine.attach(sys.argv[1])
assert m.cpu(1).smc(0xC4000150, 0x10000)[0] == 0
m.ns_write(m.dram_base + 4096, b"attacher was here")
print(" ".join(str(p.pid) for p in psutil.Process().children(recursive=True)) or "-", flush=True)
if sys.argv[2] == "close":
    m.close()
elif sys.argv[2] == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["close", "exit", "sigkill"])
def test_attacher_exit_does_not_unlink(how: str) -> None:
    """While the creator lives, an unrelated process attaches the machine, uses it, and ends
    (after close(), by just exiting, or killed by SIGKILL). Once it and anything it started
    (such as a multiprocessing resource tracker) are gone, every segment still exists - the
    Python 3.11/3.12 resource-tracker bug would unlink them - and the creator still uses the
    machine; when the creator closes, nothing is left."""
    creator = start_child(CREATOR_WAITS)
    name = ""
    try:
        name = read_name(creator)
        segments = entries_of(name)
        attacher = start_child(ATTACHER, name, how)
        try:
            helpers = read_line(attacher)
            code, err = wait_exit(attacher)
            assert code == (-signal.SIGKILL if how == "sigkill" else 0), err
        finally:
            finish(attacher)
        if helpers != "-":
            procs = []
            for pid in helpers.split():
                try:
                    procs.append(psutil.Process(int(pid)))
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=CHILD_TIMEOUT_S)
            assert not alive, f"the attacher's helpers {alive} did not end"
        assert entries_of(name) == segments, "an attacher's exit unlinked shared memory"
        tell(creator, "check")
        assert read_line(creator) == "ok"
        tell(creator, "")
        code, err = wait_exit(creator)
        assert code == 0, err
        assert not entries_of(name)
    finally:
        finish(creator)
        if name:
            remove_leftovers(name)


# -- the creator is killed with SIGKILL ----------------------------------------------------------

def make_orphan(shm_dir: str) -> tuple[str, int, set[str]]:
    """Start a creator in ``shm_dir``, SIGKILL its reaper (hw.reaper, which would unlink the
    segments at once) and then it, and reap it; (machine name, creator pid, segments still
    there)."""
    proc = start_child(CREATOR_WAITS, shm_dir=shm_dir)
    try:
        name = read_name(proc, shm_dir)
        kill_reaper(proc.pid)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(CHILD_TIMEOUT_S) == -signal.SIGKILL
        return name, proc.pid, entries_in(shm_dir, name)
    finally:
        finish(proc)


# Started (and importing) before the orphan exists; for the machine name it is then given it
# counts that machine's segments, calls Machine.create (which must remove orphans), counts again
# and prints both counts and its own machine's name.
NEXT_CREATOR = PREAMBLE + r"""
prefix = sys.stdin.readline().strip() + "."
def count():
    return sum(1 for entry in os.listdir(os.environ.get("RMM_MP_SHM_DIR", "/dev/shm")) if entry.startswith(prefix))
before = count()
with Machine.create("host", cpus=1) as m:
    print(before, count(), m.name, flush=True)
"""


def test_sigkilled_creator_leaves_orphan_that_next_create_removes() -> None:
    """A creator killed with SIGKILL, its reaper killed first, cannot unlink: its segments
    remain. The next
    Machine.create, in another process, removes them (and creates its own machine, which it
    then closes). The machines live in a private segment directory (RMM_MP_SHM_DIR), so no
    other test's create can sweep the orphan first."""
    with private_shm_dir() as shm_dir:
        nxt = start_child(NEXT_CREATOR, shm_dir=shm_dir)
        try:
            name, _, left = make_orphan(shm_dir)
            assert left, "the SIGKILLed creator's segments should still be there"
            tell(nxt, name)
            before, after, new_name = read_line(nxt).split()
            code, err = wait_exit(nxt)
            assert code == 0, err
            assert int(before) == len(left)
            assert int(after) == 0, f"Machine.create left the orphan {name}: {entries_in(shm_dir, name)}"
            assert not entries_in(shm_dir, name) and not entries_in(shm_dir, new_name)
        finally:
            finish(nxt)


def test_rmm_mp_clean_removes_orphan_and_says_so() -> None:
    """A creator killed with SIGKILL after its reaper leaves its segments; `rmm-mp clean` (python -m rmm_mp
    clean) removes all of them and prints the machine's name, its creator's pid and the
    number of segments it removed (in a private segment directory, as above)."""
    with private_shm_dir() as shm_dir:
        name, pid, left = make_orphan(shm_dir)
        assert left
        done = subprocess.run([sys.executable, "-m", "rmm_mp", "clean"], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, env={**os.environ, "RMM_MP_SHM_DIR": shm_dir})
        assert done.returncode == 0, done.stderr
        assert not entries_in(shm_dir, name), f"rmm-mp clean left {entries_in(shm_dir, name)}"
        line = next(line for line in done.stdout.splitlines() if name in line)
        assert line.startswith("removed ")
        assert f"creator pid {pid}" in line
        assert f"{len(left)} segments" in line


# -- not enough room in /dev/shm -----------------------------------------------------------------

def test_create_fails_clearly_when_dev_shm_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """With /dev/shm reporting 3 MiB free, Machine.create("host") fails with an error naming
    /dev/shm, the MiB the machine needs (at least its 64 MiB of DRAM) and the 3 MiB free, and
    creates nothing."""
    mine = f"{segment.NAME_PREFIX}{os.getpid()}-"

    def my_entries() -> set[str]:
        return {e for e in os.listdir(segment.SHM_DIR) if e.startswith(mine)}

    before = my_entries()
    monkeypatch.setattr(segment, "free_bytes", lambda: 3 << 20)
    try:
        m = Machine.create("host", cpus=4)
    except MachineError as exc:
        text = str(exc)
    else:
        m.close()
        pytest.fail(f"Machine.create made {m.name} although /dev/shm reported 3 MiB free")
    assert "/dev/shm" in text
    needed = re.search(r"(\d+) MiB", text)
    assert needed and int(needed.group(1)) >= 64, text
    assert re.search(r"\b3 MiB", text), text
    assert my_entries() == before


def test_the_space_error_has_thousands_separators(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 4 GiB `large` platform with 1,500 MiB free: the error gives both sizes with thousands
    separators, as every other size of the tool ("needs 4,1.. MiB", "has 1,500 MiB free"); they
    read "4113 MiB" and "1500 MiB"."""
    monkeypatch.setattr(segment, "free_bytes", lambda: 1500 << 20)
    with pytest.raises(MachineError) as info:
        Machine.create("large", cpus=1)
    assert re.search(r"needs 4,\d{3} MiB of shared memory", str(info.value)), str(info.value)
    assert "has 1,500 MiB free" in str(info.value), str(info.value)
