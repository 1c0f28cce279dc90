"""hw.reaper: the process the first Machine.create of a creator starts, which unlinks the
creator's segments when the creator dies without doing so itself (SIGKILL).

Every creator here is a child Python process with a segment directory of its own
(RMM_MP_SHM_DIR): Machine.create in another test running alongside sweeps orphans away, and
would remove a SIGKILLed creator's segments for the reaper."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable, Iterator

import psutil
import pytest

from children import CHILD_TIMEOUT_S, entries_in, finish, private_shm_dir, read_line, start_child, tell
from rmm_mp import Machine
from rmm_mp.hw import reaper

REAPED_WITHIN_S = 10.0


@pytest.fixture
def shm_dir() -> Iterator[str]:
    """A segment directory no other process looks in."""
    with private_shm_dir() as path:
        yield path


def poll(condition: Callable[[], bool], timeout: float = REAPED_WITHIN_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie nobody has reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(CHILD_TIMEOUT_S) == -signal.SIGKILL


# Creates a machine (not closed), prints its name and its reaper's pid, then waits for stdin.
CREATOR = r"""
import sys
from rmm_mp import Machine
from rmm_mp.hw import reaper
m = Machine.create("host", cpus=1)
print(m.name, reaper.pid(), flush=True)
sys.stdin.readline()
"""


def test_a_sigkilled_creators_segments_are_unlinked_by_its_reaper(shm_dir: str) -> None:
    """A creator is killed with SIGKILL (as the OOM killer does) holding a machine, a `.stress`
    segment made under its name after create (as the stress tool does) and a report file
    `<name>.json` beside them: within a few seconds every segment is gone, with no other
    Machine.create or `rmm-mp clean` run, and the reaper has ended; the report, no segment, is
    left. Before, all of them stayed until the next create or clean."""
    proc = start_child(CREATOR, shm_dir=shm_dir)
    try:
        name, pid = read_line(proc).split()
        made = entries_in(shm_dir, name)
        assert {f"{name}.ctl", f"{name}.dram"} <= made
        with open(os.path.join(shm_dir, f"{name}.stress"), "wb") as f:
            f.write(b"stress segment")
        with open(os.path.join(shm_dir, f"{name}.json"), "wb") as f:
            f.write(b"{}")
        assert ended(int(pid)) is False
        sigkill(proc)
        assert poll(lambda: entries_in(shm_dir, name) == {f"{name}.json"}), \
            f"the SIGKILLed creator's segments are still there: {entries_in(shm_dir, name)}"
        assert poll(lambda: ended(int(pid))), f"the reaper {pid} outlived its work"
    finally:
        finish(proc)


# Creates and closes a machine (its reaper goes on running), prints its name and the number of
# machine prefixes still registered with the reaper, then waits.
CREATOR_CLOSES = r"""
import sys
from rmm_mp import Machine
from rmm_mp.hw import reaper
for _ in range(20):
    with Machine.create("host", cpus=1) as m:
        pass
print(m.name, reaper.pid(), len(reaper.registered()), flush=True)
sys.stdin.readline()
"""


def test_a_closed_machine_is_forgotten_by_the_reaper(shm_dir: str) -> None:
    """A creator makes and closes 20 machines, then a file with the last one's control-block
    name is made by someone else, and the creator is killed: the reaper, which was told the
    closed machine's paths are gone, leaves the file; the creator's list of registered
    machines is empty (it does not grow with every machine a long process makes). A reaper
    that remembered every path it was ever given unlinked the file."""
    proc = start_child(CREATOR_CLOSES, shm_dir=shm_dir)
    try:
        name, pid, left = read_line(proc).split()
        assert left == "0"
        assert not entries_in(shm_dir, name)
        later = os.path.join(shm_dir, f"{name}.ctl")
        with open(later, "wb") as f:
            f.write(b"a later file of that name")
        sigkill(proc)
        assert poll(lambda: ended(int(pid))), f"the reaper {pid} did not end with its creator"
        assert os.path.exists(later), "the reaper unlinked a path it had been told was gone"
    finally:
        finish(proc)


# Creates a machine, forks a child that sleeps (the fork context's CPU processes are such
# children) and prints the machine's name, the parent's reaper pid and the child's pid; the
# child, told to, creates a machine of its own and prints its reaper's pid.
CREATOR_FORKS = r"""
import os, sys, time
from rmm_mp import Machine
from rmm_mp.hw import reaper
m = Machine.create("host", cpus=1)
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.close(w)
    os.read(r, 1)
    with Machine.create("host", cpus=1) as mine:
        own = reaper.pid()
    print(mine.name, own, flush=True)     # once closed: the test then finds nothing of it
    time.sleep(60)
    os._exit(0)
os.close(r)
print(m.name, reaper.pid(), child, flush=True)
sys.stdin.readline()
os.write(w, b"x")
sys.stdin.readline()
"""


def test_a_forked_child_does_not_keep_the_reaper_waiting(shm_dir: str) -> None:
    """A creator forks a child that goes on running, and is then killed with SIGKILL: its
    segments are unlinked even though the child lives (the child closed its copy of the
    pipe's write end at the fork; holding it, the reaper waited for the child too). Before
    that, the child makes a machine itself and gets a reaper of its own, not its parent's."""
    proc = start_child(CREATOR_FORKS, shm_dir=shm_dir)
    child = 0
    try:
        name, pid, child_pid = read_line(proc).split()
        child = int(child_pid)
        tell(proc, "create")
        child_name, child_reaper = read_line(proc).split()
        assert child_reaper not in (pid, "None") and not entries_in(shm_dir, child_name)
        sigkill(proc)
        assert not ended(child)
        assert poll(lambda: not entries_in(shm_dir, name)), \
            f"the segments of a SIGKILLed creator whose forked child lives are still there: {entries_in(shm_dir, name)}"
    finally:
        if child:       # first: it holds the creator's stdout open, which finish reads to its end
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        finish(proc)


# Ignores the signals a terminal or `timeout` sends its whole process group, then as CREATOR.
CREATOR_IGNORES = r"""
import signal, sys
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, signal.SIG_IGN)
""" + CREATOR


def test_signals_to_the_creators_process_group_do_not_reach_the_reaper(shm_dir: str) -> None:
    """Ctrl-C at a terminal (SIGINT), a hangup, and `timeout` (SIGTERM, then with -s KILL a
    SIGKILL) signal the creator's whole process group: the first three leave the reaper
    running (the creator here ignores them, to keep living), and a SIGKILL of the group, which
    ends the creator, leaves the reaper to unlink the segments. A reaper in the creator's
    group was killed with it and the segments stayed."""
    proc = start_child(CREATOR_IGNORES, shm_dir=shm_dir, new_session=True)
    try:
        name, pid = read_line(proc).split()
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            os.killpg(proc.pid, signum)
        time.sleep(0.2)
        assert proc.poll() is None
        assert not ended(int(pid)), "a signal to the creator's process group ended its reaper"
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(CHILD_TIMEOUT_S) == -signal.SIGKILL
        assert poll(lambda: not entries_in(shm_dir, name)), \
            f"the segments of a creator whose group was SIGKILLed are still there: {entries_in(shm_dir, name)}"
    finally:
        finish(proc)


# Creates a machine, kills its reaper (and waits until it is dead), creates another machine
# (which finds the reaper gone and starts a new one), prints both names, both reaper pids and
# whether the first reaper is still a process (a zombie not waited for).
CREATOR_LOSES_ITS_REAPER = r"""
import os, signal, sys, time
import psutil
from rmm_mp import Machine
from rmm_mp.hw import reaper
first = Machine.create("host", cpus=1)
old = reaper.pid()
os.kill(old, signal.SIGKILL)
while psutil.Process(old).status() != psutil.STATUS_ZOMBIE:
    time.sleep(0.01)
second = Machine.create("host", cpus=1)
print(first.name, second.name, old, reaper.pid(), psutil.pid_exists(old), flush=True)
sys.stdin.readline()
"""


def test_a_killed_reaper_is_replaced_and_waited_for(shm_dir: str) -> None:
    """The reaper itself is killed while a machine lives: the next create notices (its write
    fails), waits for the dead one (no zombie left) and starts another, which is told about
    the earlier machine too; the creator then killed with SIGKILL leaves nothing of either."""
    proc = start_child(CREATOR_LOSES_ITS_REAPER, shm_dir=shm_dir)
    try:
        first, second, old, new, old_exists = read_line(proc).split()
        assert new not in (old, "None")
        assert old_exists == "False", f"the killed reaper {old} was not waited for"
        sigkill(proc)
        assert poll(lambda: not entries_in(shm_dir, first) and not entries_in(shm_dir, second)), \
            f"left: {entries_in(shm_dir, first) | entries_in(shm_dir, second)}"
    finally:
        finish(proc)


# Restores SIGPIPE's default action (as a command-line tool does so that `| head` ends it
# quietly), creates a machine, kills its reaper, then closes that machine and creates and closes
# another: each step prints a line, the last the pid of the reaper the second machine got.
CREATOR_WITH_DEFAULT_SIGPIPE = r"""
import os, signal, time
import psutil
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
from rmm_mp import Machine
from rmm_mp.hw import reaper
m = Machine.create("host", cpus=1)
old = reaper.pid()
os.kill(old, signal.SIGKILL)
while psutil.Process(old).status() != psutil.STATUS_ZOMBIE:
    time.sleep(0.01)
m.close()
print("closed", m.name, flush=True)
with Machine.create("host", cpus=1) as second:
    print("created", second.name, old, reaper.pid(), flush=True)
"""


def test_a_killed_reaper_does_not_kill_a_creator_with_default_sigpipe(shm_dir: str) -> None:
    """A creator whose SIGPIPE does its default action (a CLI's `signal(SIGPIPE, SIG_DFL)`)
    loses its reaper, then closes its machine and creates another: the writes that find the
    reaper gone fail quietly and the creator lives on (both lines printed, exit 0) with a new
    reaper, and nothing of either machine is left. Before, the first such write (closing
    the machine) killed the creator with SIGPIPE (exit -13), silently."""
    proc = start_child(CREATOR_WITH_DEFAULT_SIGPIPE, shm_dir=shm_dir)
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        lines = out.decode().splitlines()
        assert proc.returncode == 0, f"the creator ended with {proc.returncode}: {lines} {err.decode()[-2000:]}"
        assert [line.split()[0] for line in lines] == ["closed", "created"], lines
        _, name, old, new = lines[1].split()
        assert new not in (old, "None")
        assert not entries_in(shm_dir, lines[0].split()[1]) and not entries_in(shm_dir, name)
    finally:
        finish(proc)


# Two threads of a creator whose reaper was killed, interleaved as a thread switch can (here
# by nesting the calls in hooks, to be deterministic): thread B closes m1 and has read the
# pipe's descriptor when thread A closes m2, finding the reaper gone; B's write then fails too,
# and before B has finished handling that, A creates m3, which starts a replacement reaper.
# Prints the replacement's pid, whether it still runs, and which of m3's segments exist.
CREATOR_THREADS_INTERLEAVE = r"""
import os, signal, time, types
import psutil
from rmm_mp import Machine
from rmm_mp.hw import reaper, segment

m1 = Machine.create("host", cpus=1)
m2 = Machine.create("host", cpus=1)
old = reaper.pid()
os.kill(old, signal.SIGKILL)
while psutil.Process(old).status() != psutil.STATUS_ZOMBIE:
    time.sleep(0.01)
state = {"writes": 0}
real_write = os.write


def write(fd, data):
    state["writes"] += 1
    if state["writes"] == 1:
        m2.close()                              # thread A, while B is about to write
    return real_write(fd, data)                 # fails for A, then for B: the reaper is gone


def sigtimedwait(signals, timeout):
    # B's handling of its failed write (A's, nested in B's blocking of SIGPIPE, calls none):
    # A creates m3 in the middle of it.
    if "m3" not in state:
        state["m3"] = None
        state["m3"] = Machine.create("host", cpus=1)
    return signal.sigtimedwait(signals, timeout)


reaper.os = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
reaper.os.write = write
reaper.signal = types.SimpleNamespace(**{k: getattr(signal, k) for k in dir(signal) if not k.startswith("__")})
reaper.signal.sigtimedwait = sigtimedwait
m1.close()                                      # thread B
reaper.os, reaper.signal = os, signal
m3 = state["m3"]
time.sleep(0.3)
running = [p.pid for p in psutil.Process().children()
           if p.status() != psutil.STATUS_ZOMBIE and p.cmdline()[1:] == ["-I", "-S", "-c", reaper.SCRIPT]]
print(old, reaper.pid(), running, " ".join(sorted(e for e in os.listdir(segment.SHM_DIR) if e.startswith(m3.name))), flush=True)
m3.close()
"""


def test_threads_racing_a_dead_reaper_never_close_its_replacements_pipe(shm_dir: str) -> None:
    """A creator's reaper is killed; thread B closing m1 reads the pipe's descriptor, thread A
    closes m2 (its write finds the reaper gone), B's write fails too, and A creates m3 (a
    replacement reaper) before B has finished with its failure: the replacement runs on and
    every segment of the live m3 is still there. Before, the failing writes each closed the
    descriptor's number, and B's close hit the replacement's pipe, which the new reaper
    took for its creator's end: it unlinked the live machine's segments at once. Nothing is
    left once the creator closes m3."""
    proc = start_child(CREATOR_THREADS_INTERLEAVE, shm_dir=shm_dir)
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        assert proc.returncode == 0, err.decode()[-3000:]
        old, new, running, *segments = out.decode().split()
        assert running == f"[{new}]" and new != old, \
            f"the replacement reaper {new} ended with its creator alive, or is not this process's reaper: {running}"
        assert {"ctl", "dram", "gpt"} <= {entry.rsplit(".", 1)[1] for entry in segments}, \
            f"the live machine's segments were unlinked: {segments}"
        assert not os.listdir(shm_dir)
    finally:
        finish(proc)


# Starts with its standard input closed (`<&-`, or a supervisor that closes it), creates a
# machine, then points descriptor 0 at /dev/null, as a program tidying its standard streams
# (a daemon's set-up) does; prints the machine's name and its reaper's pid, then sleeps.
CREATOR_TIDIES_STDIN = r"""
import os, time
os.close(0)
from rmm_mp import Machine
from rmm_mp.hw import reaper
m = Machine.create("host", cpus=1)
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
print(m.name, reaper.pid(), flush=True)
time.sleep(60)                          # its stdin is /dev/null now: killed by the test
"""


def test_a_creator_started_without_stdin_keeps_its_machine(shm_dir: str) -> None:
    """A creator started with descriptor 0 closed makes a machine, then points descriptor 0
    at /dev/null: the reaper keeps running and the live machine's segments stay; killed with
    SIGKILL, the creator leaves nothing. Before, the pipe's write end got the lowest free
    number, 0, and the dup2 closed it: the reaper saw end of file with its creator alive
    and unlinked the live machine's segments."""
    proc = start_child(CREATOR_TIDIES_STDIN, shm_dir=shm_dir)
    try:
        name, pid = read_line(proc).split()
        time.sleep(0.3)
        assert not ended(int(pid)), "the reaper ended with its creator alive"
        assert {f"{name}.ctl", f"{name}.dram"} <= entries_in(shm_dir, name), \
            f"the live machine's segments were unlinked: {entries_in(shm_dir, name)}"
        sigkill(proc)
        assert poll(lambda: not entries_in(shm_dir, name)), f"left: {entries_in(shm_dir, name)}"
    finally:
        finish(proc)


@pytest.mark.parametrize("odd", [b"\xff\xfe-not-utf8", b"new\nline"])
def test_a_segment_directory_with_an_odd_name(shm_dir: str, odd: bytes) -> None:
    """RMM_MP_SHM_DIR names a directory whose name is not UTF-8: the reaper gets its bytes and
    unlinks the SIGKILLed creator's segments. One whose name contains a newline cannot be told
    to it on one line: such a machine is not registered and stays, as documented, for the
    orphan sweep or `rmm-mp clean`."""
    directory = os.path.join(os.fsencode(shm_dir), odd)
    os.mkdir(directory)
    proc = start_child(CREATOR, shm_dir=os.fsdecode(directory))
    try:
        name, _ = read_line(proc).split()
        assert entries_in(os.fsdecode(directory), name)
        sigkill(proc)
        if b"\n" in odd:
            time.sleep(0.5)
            assert entries_in(os.fsdecode(directory), name), "a path with a newline was registered after all"
        else:
            assert poll(lambda: not entries_in(os.fsdecode(directory), name)), \
                f"left: {entries_in(os.fsdecode(directory), name)}"
    finally:
        finish(proc)


def test_forget_and_register_never_raise_without_a_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reaper that cannot be started (no such interpreter) leaves Machine.create working as
    before: the machine is made and closed, nothing raises, and the machine is forgotten."""
    monkeypatch.setattr(reaper, "_fd", -1)
    monkeypatch.setattr(reaper, "_proc", None)
    monkeypatch.setattr(reaper, "_alive", False)
    monkeypatch.setattr(reaper.sys, "executable", "/nonexistent/python")
    with Machine.create("host", cpus=1) as m:
        assert reaper.pid() is None
        assert m.name in reaper.registered()
    assert m.name not in reaper.registered()
