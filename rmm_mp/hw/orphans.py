"""Finding and removing the shared memory of machines whose creator is gone.

A creator killed with SIGKILL cannot unlink its segments; its reaper (hw.reaper) does, unless
it was killed too. For that case every Machine.create and `rmm-mp clean` looks at each rmm-mp
machine in /dev/shm: if its creator (pid from
the name, start time from the control block) is not running, the machine is an orphan and all
its segments are unlinked. Processes still attached keep their mappings until they exit.

This module owns orphan detection. It must not create machines.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator

from rmm_mp.hw import process
from rmm_mp.hw.control import LAYOUT_VERSION, MAGIC, OFF_CREATOR_START
from rmm_mp.hw.segment import MachineSegments, list_machines, segment_path, unlink_machine
from rmm_mp.printable import shown_path


def creator_start_ms(prefix: str) -> int | None:
    """The creator start time stored in a machine's control block, if readable."""
    # Unreadable (another user's, or not a file at all: a directory of that name) is unknown,
    # never a raise: every Machine.create looks at every machine in the directory.
    try:
        fd = os.open(segment_path(prefix, "ctl"), os.O_RDONLY)
    except OSError:
        return None
    try:
        header = os.pread(fd, OFF_CREATOR_START + 8, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(header) < OFF_CREATOR_START + 8 or header[:8] != MAGIC:
        return None
    # Another layout's start time may be of another kind (up to layout 4: wall-clock ms, which
    # never equals a start since boot): unknown, so the pid alone decides, as for a creator
    # that could not read its own start time.
    if struct.unpack_from("<I", header, 8)[0] != LAYOUT_VERSION:
        return None
    return struct.unpack_from("<Q", header, OFF_CREATOR_START)[0]


def is_orphan(machine: MachineSegments) -> bool:
    """Whether the machine's creator has certainly ended (no such process, a zombie, or its pid
    now names a process started at another time than the control block records). A creator
    that cannot be looked at (access denied: another user's, under a restricted /proc) is not
    taken for dead, since removal would pull a live machine from under its processes."""
    started = creator_start_ms(machine.prefix)
    return process.ended(machine.creator_pid, lambda ms: not started or ms == started)


def orphaned_machines() -> Iterator[MachineSegments]:
    """Each machine in the segment directory whose creator has certainly ended (is_orphan),
    never one of this process's own: what remove_orphans unlinks and `rmm-mp clean --dry-run`
    lists, so that both judge alike. Each is judged as it is reached."""
    for machine in list_machines():
        if machine.creator_pid != os.getpid() and is_orphan(machine):
            yield machine


def remove_orphans(dry_run: bool = False) -> tuple[list[MachineSegments], list[tuple[MachineSegments, str]]]:
    """Unlink every orphaned machine; returns what was removed, and each orphan of which an
    entry could not be unlinked with why (another user's segment in the sticky /dev/shm, a
    directory that only looks like a segment). Such an orphan is left as it is: the caller
    reports it (`rmm-mp clean`) or goes on (Machine.create), never raises. With ``dry_run``
    (`rmm-mp clean --dry-run`) nothing is unlinked: what would be, and what would fail and why
    (unlink_problems), are returned alike."""
    removed: list[MachineSegments] = []
    failed: list[tuple[MachineSegments, str]] = []
    for machine in orphaned_machines():
        problems = unlink_problems(machine) if dry_run else unlink_machine(machine)
        if problems:
            failed.append((machine, "; ".join(problems)))
        else:
            removed.append(machine)
    return removed, failed


def unlink_problems(machine: MachineSegments) -> list[str]:
    """What unlink_machine would say of ``machine`` without unlinking anything (`rmm-mp clean
    --dry-run`): a line for each entry it could not unlink, worded as it words them. Foreseen
    are the two cases the real clean meets: a directory with a segment's name, and an entry the
    directory's permissions keep (another user's in the sticky /dev/shm, or a directory this
    user cannot write). The dry run said "would remove" of them, with exit status 0, where the
    clean then failed."""
    problems = []
    euid = os.geteuid()
    for path in machine.paths:
        try:
            entry = os.lstat(path)
            parent = os.stat(os.path.dirname(path) or ".")
        except FileNotFoundError:
            continue        # gone already: the real clean passes over it too
        except OSError as exc:
            problems.append(f"{shown_path(path)}: {exc.strerror or exc}")
            continue
        if stat.S_ISDIR(entry.st_mode):
            code = errno.EISDIR
        elif euid == 0:
            continue        # root may unlink any other entry (CAP_DAC_OVERRIDE, CAP_FOWNER)
        elif not os.access(os.path.dirname(path) or ".", os.W_OK | os.X_OK):
            code = errno.EACCES
        elif parent.st_mode & stat.S_ISVTX and euid not in (entry.st_uid, parent.st_uid):
            code = errno.EPERM
        else:
            continue
        problems.append(f"{shown_path(path)}: {os.strerror(code)}")
    return problems
