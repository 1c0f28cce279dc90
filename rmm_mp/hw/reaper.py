"""The per-creator reaper: a tiny process that unlinks a SIGKILLed creator's segments.

A creator unlinks its machines' segments on close, at exit and on SIGTERM/SIGHUP
(rmm_mp.machine), but SIGKILL (the OOM killer, ``timeout -s KILL``, ``kill -9``) runs no code
of it. So the first Machine.create of a process starts a reaper: ``python -I -S -c SCRIPT``
whose stdin is a pipe only the creator can write to. The creator sends ``+PATH`` for every
segment path a machine may have (every part of hw.segment.PARTS) before making the first one,
and ``-PATH`` once it has unlinked them. The reaper never looks at the directory; it waits
for end of file on its stdin, which comes when every write end is closed, that is when the
creator has ended, however it ended, and then unlinks each path it still remembers.

The reaper runs in a session of its own (start_new_session): Ctrl-C at the terminal, `timeout`
and a killpg of the creator's process group do not reach it, and it ignores SIGINT, SIGTERM
and SIGHUP besides. Its stdout and stderr are /dev/null and it keeps no other descriptor of
the creator's, so a parent reading the creator's output to its end does not wait for it.

Limits (then `rmm-mp clean` and the orphan sweep of every Machine.create remain the
fallback): a reaper itself killed (a write to it then fails, with EPIPE only: SIGPIPE is
blocked around it, and the next create starts another, which is told every path still
registered); a segment path containing a newline
(RMM_MP_SHM_DIR with one), which one line cannot carry, is not registered; a line that does
not fit in the pipe because the reaper is stopped (SIGSTOP) is dropped, never waited for.

A forked child does not keep the pipe open (os.register_at_fork closes its copy): the reaper
acts when the creator dies, even while a forked child of it (os.fork or multiprocessing's fork
context; run_cpus's CPU processes, spawn or forkserver, never inherit the pipe) still runs, exactly
as the orphan sweep judges by the creator alone. A forked child
that creates a machine starts a reaper of its own. Attachers (CPU processes) never start one.

This module owns the reaper process and the lines sent to it. It must not know what the
segments contain; rmm_mp.machine decides what to register and when.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import threading

SCRIPT = r"""# rmm-mp reaper
import os, signal
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, signal.SIG_IGN)
paths = set()
pending = b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    for line in lines:
        if line[:1] == b"+":
            paths.add(line[1:])
        elif line[:1] == b"-":
            paths.discard(line[1:])
# Control blocks first, as a close unlinks them: an attacher racing this finds no machine.
for path in sorted(paths, key=lambda path: not path.endswith(b".ctl")):
    try:
        os.unlink(path)
    except OSError:
        pass
"""
"""What the reaper runs (imports only os and signal, so that it starts fast under -I -S). Its
first line names it, for tools that pick processes by their arguments (valgrind's
--trace-children-skip-by-arg in tools/bench_recording_ir.py)."""


class _Reaper(subprocess.Popen[bytes]):
    """The reaper's Popen. It outlives its creator by design: Popen's finaliser, which warns
    that the process is still running and queues it for reaping, is not wanted at exit."""

    def __del__(self) -> None:
        pass


_lock = threading.Lock()
"""Serialises starting a reaper (Machine.create may run in several threads); the signal path
never takes it."""
_proc: _Reaper | None = None
"""The last reaper started, alive or not (its zombie is waited for when the next starts)."""
_fd = -1
"""The pipe's write end (the creator's only copy), -1 before the first reaper. Once made, the
number is never closed in this process (but in a forked child): a replacement reaper's pipe is
put under the same number (dup2). Closed on EPIPE, the number could be reused by the
replacement's pipe while another thread, whose write to the old one had just failed, closed
it too: the new reaper then saw end of file with the creator alive, and unlinked every live
machine's segments."""
_alive = False
"""Whether _proc is taken to be reading: False before the first, and once a write found its
pipe broken (EPIPE)."""
_generation = 0
"""Counts the pipes put under _fd: a write that failed on an earlier pipe than the current one
(another thread replaced it meanwhile) does not mark the current reaper gone."""
_registered: dict[str, tuple[bytes, ...]] = {}
"""Per machine prefix, the lines' paths sent with ``+``: what the reaper will unlink if this
process dies now, and what a replacement reaper is told."""


def _after_fork_in_child() -> None:
    # The child must not hold the write end: the reaper would wait for it, not for the creator.
    # Its machines' segments are the parent's to unlink; the child forgets them all.
    global _proc, _fd, _alive, _lock
    if _fd >= 0:
        try:
            os.close(_fd)
        except OSError:
            pass
    _proc, _fd, _alive = None, -1, False
    _registered.clear()
    _lock = threading.Lock()        # another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


def pid() -> int | None:
    """The pid of this process's reaper, None when it has none (no machine created yet, or
    its reaper was found dead)."""
    return _proc.pid if _proc is not None and _alive else None


def registered() -> dict[str, tuple[bytes, ...]]:
    """A copy of what the reaper was told to unlink, per machine prefix (for tests)."""
    return dict(_registered)


def _start() -> None:
    """Start a reaper (called with _lock held) and tell it every path still registered."""
    global _proc, _fd, _alive, _generation
    if _proc is not None:
        try:
            _proc.wait(timeout=0.5)     # its pipe broke: it has ended or is about to
        except subprocess.TimeoutExpired:
            # Still reading: the mark was another thread's stale one (its write went to the
            # pipe this one replaced). Replacing it would close its pipe, and it would unlink
            # every registered path, live machines' too. Told everything again instead.
            _alive = True
            _tell_all()
            return
        _proc = None
    try:
        proc = _Reaper([sys.executable, "-I", "-S", "-c", SCRIPT], stdin=subprocess.PIPE,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True, cwd="/",
                       start_new_session=True)
    except (OSError, subprocess.SubprocessError):
        return                      # no reaper: the orphan sweep and `rmm-mp clean` remain
    assert proc.stdin is not None
    # Non-inheritable, like every descriptor Python makes; dup2 onto the old number closes the
    # dead reaper's pipe and puts the new one in its place in one step (see _fd). Never 0, 1
    # or 2: in a creator started with one of them closed, the lowest free number was that
    # one, and a later tidy-up of the standard streams (dup2 of /dev/null onto it) closed the
    # reaper's pipe, which then unlinked the live machines' segments.
    if _fd < 0:
        _fd = fcntl.fcntl(proc.stdin.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
    else:
        os.dup2(proc.stdin.fileno(), _fd, inheritable=False)
    proc.stdin.close()
    proc.stdin = None
    # A reaper that is stopped must never block a create or a signal handler: a line that does
    # not fit is dropped (PIPE_BUF-sized lines are written whole or not at all).
    os.set_blocking(_fd, False)
    _proc, _alive = proc, True
    _generation += 1
    _tell_all()


def _tell_all() -> None:
    """Tell the reaper every path still registered (a new one, or one found alive again)."""
    for paths in list(_registered.values()):
        if not _send(b"+", paths):
            return


def _send(sign: bytes, paths: tuple[bytes, ...]) -> bool:
    """Write one line per path, ``sign`` first; False when there is no reaper or it has gone
    (then it is marked gone). Plain os.write calls of at most PIPE_BUF bytes, each of whole
    lines, so that a signal handler may call it and the reaper never reads half a line."""
    global _alive
    fd, generation = _fd, _generation
    if fd < 0:
        return False
    chunks: list[bytes] = []
    for path in paths:
        line = sign + path + b"\n"
        if chunks and len(chunks[-1]) + len(line) <= select.PIPE_BUF:
            chunks[-1] += line
        else:
            chunks.append(line)
    # SIGPIPE blocked meanwhile: a write to a killed reaper's pipe raises it at this thread, and
    # a creator whose SIGPIPE does its default action (a CLI's `signal(SIGPIPE, SIG_DFL)`) died
    # of it, silently. Blocked, it stays pending and the write fails with EPIPE; it is then
    # taken off (sigtimedwait), so that it is not delivered when the mask is restored.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGPIPE,))
    try:
        for chunk in chunks:
            os.write(fd, chunk)
        return True
    except BlockingIOError:
        return False                # the pipe is full (the reaper is stopped): dropped
    except OSError:
        if signal.SIGPIPE not in mask:
            signal.sigtimedwait((signal.SIGPIPE,), 0)
        # EPIPE: the reaper was killed. The descriptor stays open (see _fd): the next create
        # waits for the dead reaper and puts a new one's pipe under the same number.
        if generation == _generation:
            _alive = False
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _encode(path: str) -> bytes | None:
    data = os.fsencode(os.path.abspath(path))     # the reaper's cwd is /
    # A newline would split the line; a line longer than PIPE_BUF could be written in part,
    # and the reaper read half a path (a write from a signal handler may not loop).
    if b"\n" in data or len(data) + 2 > select.PIPE_BUF:
        return None                 # not registered (module docstring)
    return data


def register(prefix: str, paths: list[str]) -> None:
    """Tell this process's reaper (started now if there is none) to unlink ``paths`` if this
    process dies before forget(prefix). Never raises for a reaper that cannot be started or
    written to: the machine is then left to the orphan sweep, as before."""
    encoded = tuple(data for data in (_encode(path) for path in paths) if data is not None)
    if not encoded:
        return
    with _lock:
        _registered[prefix] = encoded
        if not _alive:
            _start()                # tells it every registered path, these included
            return
        if not _send(b"+", encoded) and not _alive:
            # It was found dead: a new one, told everything still registered.
            _start()


def forget(prefix: str) -> None:
    """Tell the reaper that the segments of ``prefix`` are unlinked (or were never made): it
    must not unlink those paths, which a later file may have. Safe in a signal handler."""
    encoded = _registered.pop(prefix, ())
    if encoded:
        _send(b"-", encoded)
