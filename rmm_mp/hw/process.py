"""Process identity for shared-memory bookkeeping: a pid plus its start time.

A pid alone can be reused after its process dies; (pid, start time in ms) names one process.
Zombies count as dead: they hold nothing any more.

This module owns liveness decisions. It must not touch shared memory.
"""

from __future__ import annotations

import os
from typing import Callable

import psutil

_own_start: int | None = None
_own_pid = 0


def start_ms(pid: int) -> int | None:
    """Start time of process pid in ms since the epoch, or None if it does not exist."""
    try:
        return round(psutil.Process(pid).create_time() * 1000)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
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
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_ms is None or started_ms == 0 or round(proc.create_time() * 1000) == started_ms
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def ended(pid: int, started_within: Callable[[int], bool]) -> bool:
    """Whether process pid has certainly ended: there is no such process, it is a zombie, or
    its start time fails ``started_within`` (the pid now names another process). Unlike
    ``not alive(...)``, a process that cannot be looked at (access denied) has not ended:
    a caller that stops waiting for an ended process must not stop for a live one."""
    if pid <= 0:
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return not started_within(round(proc.create_time() * 1000))
    except (psutil.NoSuchProcess, ProcessLookupError):
        return True
    except psutil.AccessDenied:
        return False
