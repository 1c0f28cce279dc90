"""Output paths named on the command line: checked before a run starts.

A run of minutes must not end in a traceback over a mistyped directory, so every command that
writes files after its run (`rmm-mp run`, `rmm-mp stress`, `rmm-mp check`) probes each path
first and refuses a bad one as a usage error, as it refuses two options naming one file (the
second would overwrite the first's output without a word). The probe creates the path, since
permission bits alone say nothing for root or for /proc; a file the probe created is removed
again, a directory stays (the run would create it anyway).

Once the run is over, ``replacing`` writes each file: to a temporary file beside it, renamed
over the path only when complete, so that a write that fails (disk full) or is interrupted
(Ctrl-C) leaves no truncated file and keeps whatever the path held before; a SIGTERM or SIGHUP
that ends the process at once (the machine's handler) removes the temporary file too
(``remove_unfinished``). A file open on a descriptor of the process (standard output
redirected to it, or named as /dev/fd/N) gets the complete content written through that
descriptor, and none of it if that copy is interrupted. A file the user may write in a
directory where they may not create one is written in place. ``write_files``
writes a command's files in turn so that one that fails or is interrupted is a message, not a
traceback or a silent death: the command names it and exits 1 (`rmm-mp run`, `rmm-mp stress`).

The report on standard output goes through ``echo``: a reader that leaves early (`rmm-mp check
NAME | head -1`) ends the printing quietly, and the command still writes its files and exits
with its own status (`rmm-mp run`, `rmm-mp stress`, `rmm-mp check`, `rmm-mp explore`), where the closed pipe
raised out of the command: click's exit status 1, whatever the verdict, and no files after it.

The rmm-mp program (cli.entry) goes further with ``quiet_when_readers_leave``: its standard
output and standard error drop what is written to them once their reader has gone, whoever
writes (a listing, --help, click's usage errors, the machine's name on stderr), so that a
reader gone is never an error of the command's result.

This module owns that check and those ways of writing. It must not write anything else.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rmm_mp.hw import segment
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.printable import shown_path

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


_unfinished: dict[str, int] = {}
"""Temporary files ``replacing`` is writing -> the pid that made each (a forked child must not
remove its parent's)."""


def remove_unfinished() -> None:
    """Remove every temporary file this process is still writing through ``replacing``, and
    cut a file a report was being copied into through a descriptor back to where the copy
    began: for a signal handler that ends the process at once, where no except clause runs
    (the machine's SIGTERM/SIGHUP handler calls it)."""
    for temp, pid in list(_unfinished.items()):
        if pid == os.getpid():
            try:
                os.unlink(temp)
            except OSError:
                pass
    for fd, (start, written, pending, pid) in list(_appending.items()):
        if pid == os.getpid():
            _cut_back(fd, start, written, pending)


_gone: set[int] = set()
"""Standard streams' descriptors whose reader has gone, pointed at /dev/null since."""


def _to_devnull(fd: int) -> None:
    """Point descriptor ``fd`` at /dev/null: what is written to it from now on is dropped."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    _gone.add(fd)


def _descriptor(stream: object) -> int | None:
    """The descriptor under ``stream``; None for none (a stream that is missing, or in memory)."""
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


class _ReaderGone(io.FileIO):
    """A standard stream's descriptor that drops the write its reader has gone from (EPIPE: a
    pipe closed early) and, pointed at /dev/null, every later one."""

    def write(self, data: ReadableBuffer) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            _to_devnull(self.fileno())
            return memoryview(data).nbytes


def quiet_when_readers_leave() -> None:
    """For a process that runs one command and ends (the rmm-mp program, cli.entry): standard
    output and standard error, each a new text stream with the old one's encoding and buffering
    on the same descriptor, drop what is written once their reader has gone, as ``echo`` does.
    Python ignores SIGPIPE, so such a write raised BrokenPipeError wherever it came: a listing
    or --help ended with click's exit status 1, a usage error or the machine's name on a closed
    stderr with a traceback nobody saw and exit status 1, and the interpreter's last flush said
    "Exception ignored". A stream that has no descriptor is left as it is. One that is missing
    (its descriptor closed when the program began, `2>&-`: Python makes it None) becomes one
    that writes to /dev/null: left None, click, given no stream, wrote its usage errors and
    "Error: ..." lines to standard output (click.echo of get_text_stderr(), None, writes to
    stdout), mixed into the report a script reads there."""
    for name in ("stdout", "stderr"):
        old = getattr(sys, name)
        if old is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
            continue
        fd = _descriptor(old)
        if fd is None:
            continue
        old.flush()         # empty: nothing is written before the command starts
        stream = io.TextIOWrapper(io.BufferedWriter(_ReaderGone(fd, "w", closefd=False)),
                                  encoding=old.encoding, errors=old.errors, newline="\n",
                                  line_buffering=getattr(old, "line_buffering", False),
                                  write_through=getattr(old, "write_through", False))
        setattr(sys, name, stream)


def echo(text: str, err: bool = False) -> bool:
    """click.echo(text) to standard output (standard error with ``err``); False if the stream's
    reader had gone (a pipe closed early: `| head -1`, `| true`). Then the stream's descriptor
    is pointed at /dev/null, so that what the command prints afterwards, and the interpreter's
    last flush, are dropped without a word: as a program killed by SIGPIPE prints nothing more,
    but the command goes on to write its files and to exit with its verdict (Python ignores
    SIGPIPE, so the write raised BrokenPipeError, which click turned into exit status 1). In
    the rmm-mp program the stream drops the write itself (``quiet_when_readers_leave``), and
    says so here through ``_gone``."""
    stream = sys.stderr if err else sys.stdout
    try:
        click.echo(text, err=err)
    except BrokenPipeError:
        _to_devnull(stream.fileno())
        return False
    return _descriptor(stream) not in _gone


def _refuse_dash(option: str, path: str | None, directory: bool) -> None:
    """Raise ConfigError if ``path`` is '-': many tools read it as standard output; these
    options take paths, so it was written as a file named '-' in the working directory, and
    `--json - | python -m json.tool` got the text report while the JSON went where nobody looked."""
    if path != "-":
        return
    what = "directory" if directory else "file"
    # Not "after the text": `rmm-mp run` writes its files before it prints its report.
    where = "" if directory else "/dev/stdout to write it to standard output too, with the text report, or "
    raise ConfigError("command line", option, path,
                      f"a {what} path; '-' is not standard output here (name {where}./- for a {what} named '-')")


def check_output(option: str, path: str | None, directory: bool = False) -> None:
    """Raise ConfigError (naming ``option``, the path and why) if ``path`` cannot be written:
    as a file, or with ``directory`` as a directory that exists or can be created. None passes."""
    if path is None:
        return
    _refuse_dash(option, path, directory)
    if segment.is_segment_path(path):
        # Written through ``replacing``, the report would take the segment's name: every later
        # `rmm-mp check` of that machine found a JSON file where its control block was.
        raise ConfigError("command line", option, path,
                          "a path that is not an rmm-mp machine's shared memory segment in "
                          f"{segment.shown_shm_dir()}")
    try:
        if directory:
            os.makedirs(path, exist_ok=True)
            problem = "" if os.access(path, os.W_OK | os.X_OK) else "it is not writable"
        elif os.path.isdir(path):
            problem = "it is a directory"
        else:
            existed = os.path.exists(path)
            with open(path, "ab"):
                pass
            if not existed:
                os.unlink(path)
            problem = ""
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem:
        kind = "a directory that exists or can be created" if directory else "a file that can be written"
        raise ConfigError("command line", option, path, f"{kind} ({problem})")


def check_outputs(outputs: Iterable[tuple[str, str | None]],
                  directories: Iterable[tuple[str, str | None]] = (),
                  inputs: Iterable[tuple[str, str]] = ()) -> None:
    """check_output for each (option, file path) and each (option, directory path), no path
    named by two options (compared after resolving links and relative paths): the second would
    overwrite the first's output, or find a directory where it writes a file; and no path that
    is one of the ``inputs`` (what, path) the command reads (its workload file, say): the run
    would replace the user's file with its report. Every comparison comes before any probe,
    which creates a directory. None paths are skipped."""
    seen: dict[str, str] = {}
    read = {os.path.realpath(path): what for what, path in inputs}
    files, dirs = list(outputs), list(directories)
    # '-' first: compared as a path, `--json - --csv -` was "a file of its own (--json writes
    # it too)", which said nothing of why '-' is no standard output.
    for option, path in files:
        _refuse_dash(option, path, directory=False)
    for option, path in dirs:
        _refuse_dash(option, path, directory=True)
    for option, path in [*dirs, *files]:
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in read:
            raise ConfigError("command line", option, path, f"a file the run does not read (it is {read[key]})")
        if key in seen:
            raise ConfigError("command line", option, path, f"a file of its own ({seen[key]} writes it too)")
        seen[key] = option
    for option, path in files:
        check_output(option, path)
    for option, path in dirs:
        check_output(option, path, directory=True)


def write_json(document: object, path: str) -> None:
    """``document`` as indented JSON at ``path``, through ``replacing`` (all or nothing); the
    argument order lets functools.partial(write_json, document) serve write_files."""
    with replacing(path) as temp:
        Path(temp).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


@contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yield the name of a new file to write ``path``'s content to: when the block ends, it is
    renamed over ``path`` (os.replace, atomic); when it raises anything (OSError, Ctrl-C), it is
    removed and ``path`` is left as it was. A new file gets the permissions open() would give
    it, a replaced one keeps its own. A path that exists and is not a regular file (/dev/full,
    /dev/stdout, a FIFO) is written in place: it is yielded itself; when it is this process's
    standard output or error (a pipe) and its reader has gone, the write ends quietly and the
    stream is pointed at /dev/null, as ``echo`` does. A symbolic link is followed:
    its target is replaced. The file this process's standard output or error goes to (`--json
    /dev/stdout > out.txt`), or that a descriptor named by the path is open on for writing
    (`--json /dev/fd/3 3> out.json`), gets the content, once complete, written through that
    descriptor, after what was printed to it, rather than replaced: renamed over, it lost the
    report written to it before (the text went on to the unlinked file), and the shell's
    descriptor 3 was left on a file no name reaches. A copy through a descriptor that does not
    end leaves none of the report (``_copy_through``). Where no file can be created beside the
    path (a directory the user cannot write to, a read-only file system) but the path's own
    file exists, the content waits in memory and is then copied into that file (``_rewritten``)
    or through the descriptor.

    What the path is, is asked of the path itself (os.stat follows links as open() does): a
    link of /proc/PID/fd, such as /dev/stdout, names the open file, which realpath cannot
    name when it is a pipe ("/proc/PID/fd/pipe:[N]", no such path): `--json /dev/stdout | jq`
    failed with "No such file or directory"."""
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        stream_fd = _standard_stream(info)
        if stream_fd is None:
            yield path
            return
        # Standard output or error itself, a pipe (`--json /dev/stdout | head -1`): a reader that
        # has gone ends this write quietly, as it ends the printing (``echo``), and the stream is
        # pointed at /dev/null. The write failed "Broken pipe" and the command exited 1, though
        # a reader leaving early changes no exit status. What was printed goes first.
        for stream in (sys.stdout, sys.stderr):
            # Flushed on its own: a BrokenPipeError here (what was printed had not reached a
            # reader that has gone) must still yield, or the with block fails "generator didn't
            # yield". Its descriptor then points at /dev/null, which the buffer is written to later.
            try:
                if stream is not None:
                    stream.flush()
            except BrokenPipeError:
                _to_devnull(stream.fileno())
        try:
            yield path
        except BrokenPipeError:
            _to_devnull(stream_fd)
        return
    stream_fd = None if info is None else _open_on(path, info)
    if stream_fd is not None:
        with _appended(path, stream_fd) as temp:
            yield temp
        return
    target = os.path.realpath(path)
    mode = None if info is None else info.st_mode
    folder, name = os.path.split(target)
    try:
        temp = _new_temp(folder, name)
    except OSError as exc:
        if info is None or exc.errno not in _NO_FILE_BESIDE:
            raise
        # A file the user may write in a directory where they may not create one: written in
        # place (it failed "Permission denied" after the run, though the check had passed).
        with _rewritten(target) as temp:
            yield temp
        return
    try:
        if mode is not None:
            os.chmod(temp, stat.S_IMODE(mode))
        yield temp
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    finally:
        _unfinished.pop(temp, None)


_NO_FILE_BESIDE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
"""Why a temporary file cannot be made beside a path whose own file can be written: the
directory is not the user's to write to, or its file system is mounted read only."""


def _open_on(path: str, info: os.stat_result) -> int | None:
    """The descriptor that writes to the regular file ``info`` describes, if ``path`` names one
    this process has open: standard output or error (``_standard_stream``), or any descriptor
    named as /dev/fd/N, /proc/self/fd/N or /proc/PID/fd/N (`--json /dev/fd/3 3> out.json`) that
    is open for writing. Such a path opened again is a new open file at offset 0, and renamed
    over it left the shell's descriptor on the unlinked file."""
    fd = _standard_stream(info)
    if fd is not None:
        return fd
    fd = _named_descriptor(path)
    if fd is None:
        return None
    try:
        opened = os.fstat(fd)
        writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except OSError:
        return None
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or not writable:
        return None
    return fd


def _named_descriptor(path: str) -> int | None:
    """N if ``path`` names this process's descriptor N, as /dev/fd/N, /proc/self/fd/N or
    /proc/PID/fd/N, itself or through symbolic links (/dev/stdout is one to /proc/self/fd/1);
    else None. The link of /proc/PID/fd/N itself is not read: it names the file the descriptor
    is open on, which is what must not be reopened."""
    own = f"/proc/{os.getpid()}/fd"
    current = os.path.abspath(path)
    for _ in range(40):                 # the kernel follows at most 40 links too
        folder, name = os.path.split(current)
        if name.isascii() and name.isdigit() and os.path.realpath(folder) == own:
            return int(name)
        try:
            target = os.readlink(current)
        except OSError:                 # no link (a plain file), or none there
            return None
        current = os.path.normpath(os.path.join(folder, target))
    return None


@contextmanager
def _rewritten(target: str) -> Iterator[str]:
    """``replacing`` for ``target``, a file that can be written in a directory where no file
    can be created: the content is written to a file in memory and, once complete, copied over
    ``target``'s own (truncated first). A write that fails or is interrupted before the copy
    leaves ``target`` as it was; the copy itself (milliseconds) is all this path cannot make
    all or nothing: one interrupted or failing there leaves ``target`` truncated."""
    temp = _in_memory("rewritten")
    try:
        yield temp
        with open(temp, "rb") as source, open(target, "r+b") as out:
            out.truncate(0)
            while chunk := source.read(1 << 20):
                out.write(chunk)
    finally:
        _forget_in_memory(temp)


_memory: dict[str, int] = {}
"""Files in memory (memfd) that ``_in_memory`` made -> their descriptor."""


def _in_memory(name: str) -> str:
    """A new empty file in memory, named by its /proc/PID/fd link (so the writer opens it by
    name, as any other): for a report that has no directory to be written in."""
    fd = os.memfd_create(f"rmm-mp-{name}", os.MFD_CLOEXEC)
    temp = f"/proc/{os.getpid()}/fd/{fd}"
    _memory[temp] = fd
    return temp


def _forget_in_memory(temp: str) -> None:
    """Close the file in memory ``_in_memory`` named ``temp``: its memory is freed."""
    fd = _memory.pop(temp, None)
    if fd is not None:
        os.close(fd)


def _standard_stream(info: os.stat_result) -> int | None:
    """The descriptor (1 or 2) of the standard stream open on the file ``info`` describes, if
    one is."""
    for fd in (1, 2):
        try:
            stream = os.fstat(fd)
        except OSError:
            continue
        if (stream.st_dev, stream.st_ino) == (info.st_dev, info.st_ino):
            return fd
    return None


@contextmanager
def _appended(path: str, fd: int) -> Iterator[str]:
    """``replacing`` for ``path``, the file the standard stream of descriptor ``fd`` goes to:
    the content is written to a temporary file beside it and, once complete, written through
    ``fd`` after what the streams wrote (flushed first), so that the report before it stays;
    failed or interrupted, nothing is. Written through the stream's own descriptor, as a print
    is, rather than appended through a descriptor of its own: a file redirected without
    O_APPEND (`> out.txt`) is written at its descriptor's offset, which the append left
    behind, so the text printed after the report ("Written: ...", "result: ...") was written
    over the report's start."""
    try:
        temp = _new_temp(os.path.dirname(os.path.realpath(path)), "rmm-mp-append")
    except OSError:
        # No file can be made there (a directory the user cannot write to, a read-only file
        # system; a file deleted since it was opened has no directory): the content waits in
        # memory instead. It failed "Permission denied" after the run.
        temp = _in_memory("append")
    try:
        yield temp
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        with open(temp, "rb") as source:
            _copy_through(fd, source)
    finally:
        if temp in _memory:
            _forget_in_memory(temp)
        else:
            try:
                os.unlink(temp)
            except OSError:
                pass
            _unfinished.pop(temp, None)


_appending: dict[int, list[int]] = {}
"""Descriptors ``_copy_through`` is writing a report through -> [where the copy began (the
size to cut the file back to if it does not end), the bytes of it written so far, the bytes of
the write under way (0 between writes), the pid of the process copying]."""


def _copy_through(fd: int, source: io.BufferedReader) -> None:
    """Write all of ``source`` through ``fd``, a regular file's descriptor, at its offset (at
    the end with O_APPEND). One that does not end (Ctrl-C, SIGTERM as Ctrl-C, disk full; a
    signal that ends the process at once, through ``remove_unfinished``) cuts the file back to
    where the copy began, so that no partial report is left after the text before it: a
    Ctrl-C between two writes left the report's first megabytes. The file is cut back only
    when the copy began at its end (`>`, `>>`), where nothing is beyond to lose, and only
    while all it holds past that point is this copy's (``_cut_back``)."""
    start: int | None
    try:
        size = os.fstat(fd).st_size
        at = size if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND else os.lseek(fd, 0, os.SEEK_CUR)
        start = at if at >= size else None
    except OSError:
        start = None
    progress = [0 if start is None else start, 0, 0, os.getpid()]
    if start is not None:
        _appending[fd] = progress
    try:
        while chunk := source.read(1 << 20):
            view = memoryview(chunk)
            while view:
                progress[2] = len(view)
                done = os.write(fd, view)
                progress[1] += done
                progress[2] = 0
                view = view[done:]
    except BaseException:
        if start is not None:
            _cut_back(fd, start, progress[1], progress[2])
        raise
    finally:
        _appending.pop(fd, None)


def _cut_back(fd: int, start: int, written: int, pending: int) -> None:
    """Truncate the file of ``fd`` to ``start`` bytes and put its offset there (nothing of a
    copy that did not end stays, and the next print follows the text before it), if all the
    file holds past ``start`` is this copy's: the ``written`` bytes, and the ``pending`` ones
    of a write that a signal came after before it was counted (CPython takes a signal as a C
    call such as os.write returns, so that Ctrl-C during a write is raised with its bytes in
    the file). A file that has grown otherwise holds another writer's text too (a second
    job's `>> out.log`, a shell's descriptor shared with a background job), which cutting
    back would lose: it is left as it is, the part of the report written before that text
    included. Another writer that appends between the size check and the truncation (a few
    microseconds) can still lose its text: no system call truncates on a condition."""
    try:
        if os.fstat(fd).st_size - start not in (written, written + pending):
            return
        os.ftruncate(fd, start)
        os.lseek(fd, start, os.SEEK_SET)
    except OSError:
        pass


def _new_temp(folder: str, name: str) -> str:
    """A new empty file in ``folder`` named after ``name``, noted as unfinished (removed by
    ``remove_unfinished`` if the process is ended before its writer is done)."""
    while True:
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        _unfinished[temp] = os.getpid()
        return temp


def write_files(files: Iterable[tuple[str, str, Callable[[str], object]]], outputs: dict[str, str],
                errors: list[str]) -> str:
    """Write each (key, path, write) in the order given: ``write(path)`` writes the file (through
    ``replacing``, so whole or not at all), after ``outputs[key] = path`` so that a file written
    last (a JSON report) can name itself among the outputs. A write that raises OSError (disk
    full, a directory removed since the check) or ValueError (nothing to write) takes its key
    out of ``outputs`` again and appends "could not write the KEY report to PATH: reason" to
    ``errors``; the next file is still written. Ctrl-C (KeyboardInterrupt) ends the file being
    written and skips the rest, each then "...: interrupted (Ctrl-C)"; a caller that takes
    SIGTERM as Ctrl-C too runs this as a step of rmm_mp.interrupts.Interrupts (run, stress and
    check do), whose KeyboardInterrupt names the signal. Returns what interrupted the writing
    ("Ctrl-C", "SIGTERM"), "" if nothing did."""
    stopped = ""
    for key, path, write in files:
        try:
            if stopped:
                raise KeyboardInterrupt(stopped)
            outputs[key] = path
            write(path)
        except (OSError, ValueError) as exc:
            outputs.pop(key, None)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            errors.append(f"could not write the {key} report to {shown_path(path)}: {reason}")
        except KeyboardInterrupt as exc:
            outputs.pop(key, None)
            stopped = stopped or (exc.args[0] if exc.args else "Ctrl-C")
            errors.append(f"could not write the {key} report to {shown_path(path)}: interrupted ({stopped})")
    return stopped
