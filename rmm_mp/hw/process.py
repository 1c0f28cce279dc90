"""Process identity for shared-memory bookkeeping: a pid plus its start time.

A pid alone can be reused after its process dies; (pid, start time in ms) names one process.
Zombies count as dead: they hold nothing any more.

The start time is the kernel's own record, milliseconds from boot to the process's start
(/proc/<pid>/stat, field 22), not a time of day: a wall-clock start (psutil's create_time) is
that record plus the boot time, which the kernel derives from the clock, so every step of the
clock (settimeofday, an NTP or chrony step, a VM resumed or migrated) moved the start of every
running process, and a live process then failed the comparison with the start it had
recorded: its machine taken for an orphan and unlinked, its CPU binding reclaimed, a wait for
it given up.

This module owns liveness decisions. It must not touch shared memory.
"""

from __future__ import annotations

import os
from typing import Callable


_own_start: int | None = None
_own_pid = 0
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# pid_t is a signed 32-bit int on Linux: no process has a larger pid.
_PID_MAX = 2**31 - 1


def _stat(pid: int) -> tuple[bytes, int]:
    """(state letter, start in ms since boot) of process pid. Raises FileNotFoundError or
    ProcessLookupError (no such process) and PermissionError (it cannot be looked at)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        line = f.read()
    # The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    fields = line[line.rindex(b")") + 2:].split()
    return fields[0], int(fields[19]) * 1000 // _TICKS_PER_S


def start_ms(pid: int) -> int | None:
    """Start time of process pid in ms since boot, or None if it does not exist or cannot be
    looked at."""
    if pid <= 0:
        return None
    try:
        return _stat(pid)[1]
    except (OSError, ValueError, IndexError):
        return None


def own_start_ms() -> int:
    global _own_start, _own_pid
    pid = os.getpid()
    if _own_start is None or _own_pid != pid:
        _own_start = start_ms(pid) or 0
        _own_pid = pid
    return _own_start


def alive(pid: int, started_ms: int | None = None) -> bool:
    """Whether process pid is running (and, if started_ms is given, is that same process)."""
    if pid <= 0:
        return False
    try:
        state, started = _stat(pid)
    except (OSError, ValueError, IndexError):
        return False
    return state != b"Z" and (started_ms is None or started_ms == 0 or started == started_ms)


def ended(pid: int, started_within: Callable[[int], bool]) -> bool:
    """Whether process pid has certainly ended: there is no such process, it is a zombie, or
    its start time fails ``started_within`` (the pid now names another process). Unlike
    ``not alive(...)``, a process that cannot be looked at (access denied, or hidden from
    /proc altogether) has not ended: a caller that stops waiting for an ended process must
    not stop for a live one."""
    if pid <= 0:
        return True
    try:
        state, started = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return not _signalable(pid)
    except (OSError, ValueError, IndexError):
        return False
    return state == b"Z" or not started_within(started)


def _signalable(pid: int) -> bool:
    """Whether process pid exists, asked of the kernel rather than /proc: a /proc mounted with
    hidepid=invisible (2) has no entry at all for another user's process, which then looked
    ended. Signal 0 is delivered to no one; only ESRCH says that there is no such process
    (EPERM: it exists and is another user's). A pid beyond pid_t's range (a segment file's name
    may carry any digits) names no process, and os.kill would raise OverflowError for it."""
    if pid > _PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
