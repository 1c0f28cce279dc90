"""Helpers for tests that drive a child Python process line by line (machine lifetime tests):
start it, read what it prints with a deadline, tell it what to do, reap it; and for tests that
find the CPU processes a run spawned (cpu_children, wait_for_cpus, bound_pid), or kill a creator's reaper
(kill_reaper) so that the creator killed next leaves an orphan; and a segment directory of a
test's own (private_shm_dir, entries_in)."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any, Iterator

import psutil

from rmm_mp.hw import reaper, segment

CHILD_TIMEOUT_S = 30.0


def entries_of(name: str) -> set[str]:
    """/dev/shm entries of machine ``name`` (its segments are ``<name>.<part>``)."""
    return {entry for entry in os.listdir(segment.SHM_DIR) if entry.startswith(name + ".")}


@contextlib.contextmanager
def private_shm_dir() -> Iterator[str]:
    """A segment directory no other process looks in (RMM_MP_SHM_DIR for the children), so
    that no other test's Machine.create sweeps this test's orphan away first."""
    path = os.path.join("/dev/shm", f"rmmmp-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def entries_in(directory: str, name: str) -> set[str]:
    """Entries of machine ``name`` in segment directory ``directory``."""
    return {entry for entry in os.listdir(directory) if entry.startswith(name + ".")}


def start_child(script: str, *args: str, shm_dir: str | None = None,
                new_session: bool = False) -> subprocess.Popen[bytes]:
    """``python -c script args...`` with pipes; with ``shm_dir``, RMM_MP_SHM_DIR set to it;
    with ``new_session``, in a session and process group of its own (for a test that signals
    the child's whole group, which is otherwise the test's)."""
    env = {**os.environ, "RMM_MP_SHM_DIR": shm_dir} if shm_dir else None
    return subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=new_session)


def read_line(proc: subprocess.Popen[bytes], timeout: float = CHILD_TIMEOUT_S) -> str:
    """One line of the child's stdout; fails (with its stderr) if it exits or stays silent."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"child {proc.pid} printed no line within {timeout:g} s (got {data!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            proc.wait(CHILD_TIMEOUT_S)
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"child {proc.pid} exited with {proc.returncode} before a line "
                                 f"(got {data!r}); stderr:\n{err}")
        data += chunk
    return data.decode().strip()


def tell(proc: subprocess.Popen[bytes], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child if it still runs and reap it (always called from a finally block)."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=CHILD_TIMEOUT_S)
    except (ValueError, OSError):
        proc.wait(CHILD_TIMEOUT_S)


def bound_pid(machine: Any, cpu: int) -> int:
    """The pid of the process bound to ``cpu`` of ``machine`` (its CPU area's binding word), or
    0 while none is."""
    area = machine.cpu_area(cpu)
    try:
        return int(area.binding() & 0xFFFF_FFFF)
    finally:
        area.release()


def cpu_children(pid: int | None = None) -> list[psutil.Process]:
    """The CPU processes process ``pid`` (default: this one) has spawned, "spawn_main" on their
    command line (not multiprocessing's resource tracker); one that ends while looked at is left
    out."""
    out = []
    for child in psutil.Process(pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


def wait_for_cpus(pid: int, count: int, timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds until process ``pid`` has ``count`` CPU processes; the
    ones it has then."""
    deadline = time.monotonic() + timeout
    while len(found := cpu_children(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def kill_reaper(pid: int) -> None:
    """SIGKILL the reaper (hw.reaper) of creator ``pid`` and wait until it has ended: the
    creator then killed with SIGKILL leaves an orphan, as when both die (what the orphan sweep
    of Machine.create and `rmm-mp clean` remain for). Fails if the creator has no reaper.

    Looked for until CHILD_TIMEOUT_S, not once: once, it failed 1 time in the 5,159 tests of a
    full run on a loaded host ("0 reapers"), and the cause (a reaper not yet found as such, or
    none started) is not known; a reaper that shows up late is found now, and none at all still
    fails."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        found = []
        for child in psutil.Process(pid).children():
            try:
                if child.cmdline()[1:] == ["-I", "-S", "-c", reaper.SCRIPT]:
                    found.append(child)
            except psutil.Error:
                continue
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    assert len(found) == 1, f"process {pid} has {len(found)} reapers"
    found[0].kill()
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while found[0].is_running() and found[0].status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"the reaper {found[0].pid} outlived SIGKILL"
        time.sleep(0.01)
