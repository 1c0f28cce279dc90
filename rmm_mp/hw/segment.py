"""Named POSIX shared-memory segments, and finding the ones a dead creator left behind.

A segment is a file in /dev/shm mapped with mmap. We do not use
multiprocessing.shared_memory: on Python 3.11/3.12 every SharedMemory registers with the
resource tracker, which then unlinks the segment when an unrelated process that merely
attached exits. Mapping the files directly keeps ownership explicit: the creator unlinks,
attachers never do.

Names: every machine has a prefix ``rmm-mp-<creator pid>-<8 hex>``; its segments are
``<prefix>.<part>``. The creator pid in the name lets any process decide whether a machine is
orphaned; the creator's start time, stored in the control segment by the caller, guards
against pid reuse.

This module owns /dev/shm naming and mapping, and the refusal of a segment directory that cannot
serve (check_shm_dir). It must not know what the segments contain.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass

from rmm_mp.hw.faults import MachineError
from rmm_mp.printable import shown_path

SHM_DIR = os.environ.get("RMM_MP_SHM_DIR", "/dev/shm")
"""Where segments live: /dev/shm, or the directory RMM_MP_SHM_DIR names (a tmpfs keeps them in
memory; any directory works, at the cost of disk writes; every process of a machine must see the
same one, which children inherit through the environment)."""


def shown_shm_dir() -> str:
    """SHM_DIR as a message names it: as every user-supplied path is (printable.shown_path),
    since RMM_MP_SHM_DIR is the user's and may hold an ESC, a newline or bytes that are not
    UTF-8, which a message printed raw, acting on the terminal."""
    return shown_path(SHM_DIR)


NAME_PREFIX = "rmm-mp-"
MACHINE_PARTS = ("ctl", "granules", "gpt", "dram", "cpus")
"""The parts every machine has, control block first (docs/architecture.md): Machine.create makes
them and Machine.attach maps them in this order."""
TRACE_PART = "trace"
"""The part a machine made for tracing has besides (its trace rings)."""
STRESS_PART = "stress"
"""The part the stress tool makes under a machine's name (rmm_mp.stress.shared)."""
PARTS = MACHINE_PARTS + (TRACE_PART, STRESS_PART)
"""Every part a segment may have: a machine's (docs/architecture.md) and the stress tool's
``stress``. Only these are a machine's segments: `rmm-mp clean` and every Machine.create unlink
an orphan's entries, and an entry that merely looks like one (``rmm-mp-<pid>-<8 hex>.txt``, a
user's file) is not rmm-mp's to delete. A creator's reaper (hw.reaper) is told each of these
paths before the machine's first segment exists. Segment.create refuses any other part, so that
a new one cannot be made without being listed here (and then left behind by its SIGKILLed
creator, its reaper not told of it)."""
_MACHINE = r"rmm-mp-(?P<pid>[1-9][0-9]*)-(?P<tag>[0-9a-f]{8})"
"""A machine's name as machine_prefix makes it: the creator's pid in ASCII digits with no leading
0, then 8 lower-case hex digits. The one pattern for it: `rmm-mp check` takes a machine name
(is_machine_name) that `rmm-mp clean` would list (list_machines). \\d+ took a pid with a leading
0 and non-ASCII digits (int() reads both), and check took any word after 'rmm-mp-'."""
_MACHINE_RE = re.compile(_MACHINE, re.ASCII)
_NAME_RE = re.compile(rf"{_MACHINE}\.(?P<part>{'|'.join(PARTS)})", re.ASCII)


def machine_prefix(pid: int, tag: str) -> str:
    """The name shared by all segments of one machine."""
    return f"{NAME_PREFIX}{pid}-{tag}"


def segment_path(prefix: str, part: str) -> str:
    return os.path.join(SHM_DIR, f"{prefix}.{part}")


class Segment:
    """One mapped segment. ``buf`` is a memoryview of the whole mapping."""

    __slots__ = ("path", "size", "_mmap", "buf")

    def __init__(self, path: str, size: int, mapping: mmap.mmap) -> None:
        self.path = path
        self.size = size
        self._mmap: mmap.mmap | None = mapping      # None once closed
        self.buf = memoryview(mapping)

    @classmethod
    def create(cls, prefix: str, part: str, size: int) -> "Segment":
        """Create and map a new zero-filled segment; it fails if the name exists.

        ftruncate makes a sparse file: no page is touched, so DRAM of any size costs nothing
        until it is written.
        """
        if part not in PARTS:
            raise ValueError(f"part = {part!r}: expected one of {', '.join(PARTS)} (segment.PARTS)")
        path = segment_path(prefix, part)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            _unlink_quietly(path)
            raise
        os.close(fd)
        return cls(path, size, mapping)

    @classmethod
    def attach(cls, prefix: str, part: str) -> "Segment":
        """Map an existing segment; raises FileNotFoundError if it is gone."""
        path = segment_path(prefix, part)
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(path, size, mapping)

    def close(self) -> None:
        """Unmap. Every view derived from ``buf`` must have been released first."""
        if self._mmap is None:
            return
        self.buf.release()
        self._mmap.close()
        self._mmap = None

    def unlink(self) -> None:
        _unlink_quietly(self.path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@dataclass(frozen=True)
class MachineSegments:
    """All /dev/shm entries of one machine prefix."""

    prefix: str
    creator_pid: int
    paths: tuple[str, ...]


def is_machine_name(name: str) -> bool:
    """Whether ``name`` is a machine's name (``rmm-mp-<pid>-<8 hex>``, as machine_prefix makes it)."""
    return _MACHINE_RE.fullmatch(name) is not None


MACHINE_NAME_FORM = "rmm-mp-, its creator's pid (no leading 0), '-' and 8 lower-case hex digits"
"""What is_machine_name takes, as a message says it."""


def is_segment_name(name: str) -> bool:
    """Whether ``name`` is a segment's file name (``<prefix>.<part>``)."""
    return _NAME_RE.fullmatch(name) is not None


def is_segment_path(path: str) -> bool:
    """Whether ``path`` names an entry of the segment directory with a segment's name (a live
    machine's segment, or where one may be made): a file an output option must not replace,
    since the machine's processes find their shared memory by that name."""
    target = os.path.realpath(path)
    return (os.path.dirname(target) == os.path.realpath(SHM_DIR)
            and is_segment_name(os.path.basename(target)))


def list_machines() -> list[MachineSegments]:
    """Every rmm-mp machine present in /dev/shm, grouped by prefix."""
    groups: dict[str, tuple[int, list[str]]] = {}
    try:
        names = os.listdir(SHM_DIR)
    except (FileNotFoundError, NotADirectoryError):
        return []   # no segment directory: no machine (Machine.create says why it cannot make one)
    for name in names:
        match = _NAME_RE.fullmatch(name)
        if match is None:
            continue
        prefix = name.rsplit(".", 1)[0]
        groups.setdefault(prefix, (int(match["pid"]), []))[1].append(os.path.join(SHM_DIR, name))
    return [MachineSegments(p, pid, tuple(sorted(paths))) for p, (pid, paths) in sorted(groups.items())]


def unlink_machine(segments: MachineSegments) -> list[str]:
    """Unlink every entry of ``segments``; returns a line for each one that could not be
    (path and reason), after trying all. The path is named as a message names every path
    (printable.shown_path): it is in RMM_MP_SHM_DIR, the user's, which may hold an ESC or a
    newline that `rmm-mp clean`'s error line printed raw."""
    problems = []
    # The control block first, as a close unlinks it (Machine.attach: an attacher racing this
    # then finds no machine, not a machine missing a part "removed by hand"). In plain sorted
    # order, as the sweeps once went, .cpus came first and an attacher saw that part missing.
    for path in sorted(segments.paths, key=lambda path: not path.endswith(f".{MACHINE_PARTS[0]}")):
        try:
            _unlink_quietly(path)
        except OSError as exc:
            problems.append(f"{shown_path(path)}: {exc.strerror or exc}")
    return problems


def unlink_parts(prefix: str) -> None:
    """Unlink every segment of ``prefix``: a machine's own parts and those that tools made under
    its name (the stress tool's ``.stress``), each part in PARTS. Only those, as for an orphan:
    another file named ``prefix.<something>`` (`rmm-mp check NAME --json /dev/shm/NAME.json`,
    which is no segment's path) is not rmm-mp's to delete."""
    for part in PARTS:
        try:
            _unlink_quietly(segment_path(prefix, part))
        except NotADirectoryError:
            return      # no segment directory: nothing to unlink


def free_bytes() -> int:
    """Bytes that can still be allocated in /dev/shm."""
    stat = os.statvfs(SHM_DIR)
    return stat.f_bavail * stat.f_frsize


def check_shm_dir(create: bool = True) -> None:
    """Refuse a segment directory (RMM_MP_SHM_DIR) that is missing or not a directory, and with
    ``create`` one this user cannot create files in, with a MachineError naming it, before
    anything looks in it. Without ``create`` (`rmm-mp clean`, which only looks for and removes
    segments, and `rmm-mp check`, which attaches) the error says the segments cannot be looked
    for there, and one this user cannot list is refused too: finding nothing in a directory that
    does not exist said "no orphaned rmm-mp shared memory", as if it had looked."""
    where = shown_shm_dir()
    if "RMM_MP_SHM_DIR" in os.environ:
        # Set but empty (`RMM_MP_SHM_DIR= rmm-mp clean`), it named nothing visible: "looked for in
        # (RMM_MP_SHM_DIR)", with the value missing between two spaces.
        where = f"{where} (RMM_MP_SHM_DIR)" if where else "'' (RMM_MP_SHM_DIR, set to an empty string)"
    doing = "made" if create else "looked for"
    if not os.path.isdir(SHM_DIR):
        found = "something that is not a directory" if os.path.lexists(SHM_DIR) else _absent(SHM_DIR)
        if os.path.islink(SHM_DIR):
            # "something that is not a directory" for a link whose target is gone read as a file.
            found = f"a symbolic link to {shown_path(os.readlink(SHM_DIR))}, which {_link_end(SHM_DIR)}"
        raise MachineError(f"shared memory cannot be {doing} in {where}: found {found}, expected a directory "
                           "(a tmpfs such as /dev/shm keeps the machine in memory)")
    # Read too: Machine.create lists the directory (its sweep of orphans), which in a directory
    # of mode 0300 ended in a PermissionError traceback.
    if create and not os.access(SHM_DIR, os.R_OK | os.W_OK | os.X_OK):
        raise MachineError(f"shared memory cannot be made in {where}: expected a directory this user can "
                           "list and create files in")
    if not create:
        try:
            os.listdir(SHM_DIR)
        except OSError as exc:
            # A directory this user cannot list (mode 0300) ended clean's look in a traceback.
            raise MachineError(f"shared memory cannot be looked for in {where}: {exc.strerror or exc}, expected "
                               "a directory this user can read") from None


def _absent(path: str) -> str:
    """What a ``path`` with no entry of its own leads to: nothing, or a path that cannot be
    followed (a loop of links, or a directory this user cannot search, above it read "nothing")."""
    try:
        os.lstat(path)
    except OSError as exc:      # ELOOP, or EACCES on a directory above it, is no "nothing"
        if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return f"a path that cannot be followed ({exc.strerror or exc})"
    return "nothing"


def _link_end(path: str) -> str:
    """Where the symbolic link ``path``, which is no directory, leads: to nothing, to something
    else, or round in a loop."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "names nothing"
    except OSError as exc:      # ELOOP: "Too many levels of symbolic links"
        return f"cannot be followed ({exc.strerror or exc})"
    return "is not a directory"
