"""Report files written through an open descriptor (rmm_mp.outpaths.replacing): a path that
names a descriptor of the process (`--json /dev/fd/3 3> out.json`), standard output redirected
to a file in a directory the user cannot write to, and an interruption while the report is
copied through standard output. Each case runs a child Python, as the shell would start
`rmm-mp run --json PATH`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# As `rmm-mp run` ends: the text report, the files, then a last line.
_REPORT = ("import sys\nfrom rmm_mp import outpaths\nfrom rmm_mp.outpaths import write_json\n"
           "{setup}\n"
           "print('the report', flush=True)\nwrite_json({{'ok': True}}, sys.argv[1])\n"
           "print('result: OK', flush=True)\n")

# What a directory the user cannot write to gives (tests run as root, whom permission bits do
# not stop): creating any file there fails, the file the path names can still be written.
_NO_NEW_FILES = ("import errno\n"
                 "def _refuse(folder, name):\n"
                 "    raise PermissionError(errno.EACCES, 'Permission denied', folder)\n"
                 "outpaths._new_temp = _refuse\n")

_JSON = '{\n "ok": true\n}\n'


def test_a_report_to_dev_fd_n_goes_through_that_descriptor(tmp_path: Path) -> None:
    """`--json /dev/fd/3` with descriptor 3 opened by the shell on a file (`3> out.json`), which
    the shell writes to afterwards too: the file holds the report and then the shell's line,
    and is the file the shell opened. The report was renamed over the path, a new file: the
    shell's descriptor went on to the unlinked one, so its later line was lost (and a reader
    of the shell's open file saw no report)."""
    out = tmp_path / "out.json"
    script = _REPORT.format(setup="")
    shell = '{ "$0" -c "$1" /dev/fd/3 && echo done >&3; } 3> "$2"'
    proc = subprocess.run(["bash", "-c", shell, sys.executable, script, str(out)], capture_output=True, text=True,
                          env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "the report\nresult: OK\n"
    assert out.read_text() == _JSON + "done\n", out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("redirect", [">", ">>"])
def test_a_report_to_redirected_stdout_in_a_directory_without_write_permission(tmp_path: Path,
                                                                               redirect: str) -> None:
    """`--json /dev/stdout > DIR/out.txt` where DIR is not writable but out.txt is (no
    temporary file can be made beside it): the file holds the text, the report and the last
    line, in order. The write failed "Permission denied" after the run, though the check before
    it (which opens the file) had passed."""
    out = tmp_path / "out.txt"
    out.write_text("earlier\n" if redirect == ">>" else "")
    script = _REPORT.format(setup=_NO_NEW_FILES)
    with out.open("a" if redirect == ">>" else "w") as stdout:
        proc = subprocess.run([sys.executable, "-c", script, "/dev/stdout"], stdout=stdout, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    before = "earlier\n" if redirect == ">>" else ""
    assert out.read_text() == f"{before}the report\n{_JSON}result: OK\n", out.read_text()


def test_a_report_file_in_a_directory_without_write_permission_is_written_in_place(tmp_path: Path) -> None:
    """`--json DIR/out.json`, out.json a writable file in a directory that is not: written in
    place (the same file, its old content replaced), where it failed "Permission denied"."""
    out = tmp_path / "out.json"
    out.write_text("an older and longer report than the new one\n")
    inode = out.stat().st_ino
    proc = subprocess.run([sys.executable, "-c", _REPORT.format(setup=_NO_NEW_FILES), str(out)],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert out.read_text() == _JSON and out.stat().st_ino == inode


# Standard output redirected to a file; the report (over 1 MiB, two chunks of the copy) is
# interrupted after its first chunk went through: by SIGINT (Ctrl-C, caught by write_files as
# `rmm-mp run` does), or by a signal handler that ends the process at once (the machine's
# SIGHUP handler: remove_unfinished, then the default action).
_INTERRUPTED = r"""
import functools, os, signal, sys
from rmm_mp import outpaths
from rmm_mp.outpaths import write_files, write_json
mode = sys.argv[1]
# Ctrl-C as a terminal gives it, also when this test runs where SIGINT is ignored (a CI job
# started in the background, `nohup`): the child inherits that, and the SIGINT did nothing.
signal.signal(signal.SIGINT, signal.default_int_handler)
real_write = os.write
def write(fd, data):
    done = real_write(fd, data)
    if fd == 1 and done > 4096:
        if mode == "ctrl-c":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            outpaths.remove_unfinished()
            os._exit(129)
    return done
print("the report", flush=True)
os.write = write
errors = []
write_files([("json", "/dev/stdout", functools.partial(write_json, {"filler": "x" * 1_500_000}))], {}, errors)
os.write = real_write
print(*errors, sep="\n", flush=True)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "at-once"])
def test_an_interrupted_report_to_redirected_stdout_leaves_none_of_it(tmp_path: Path, how: str) -> None:
    """Ctrl-C (or a signal that ends the process at once) while the report is copied through
    standard output redirected to a file (`--json /dev/stdout > out.txt`): the file holds the
    text before and what is printed after (write_files' "interrupted" line), no part of the
    report. Its first megabyte stayed, followed by the message."""
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        proc = subprocess.run([sys.executable, "-c", _INTERRUPTED, how], stdout=stdout, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=60)
    text = out.read_text()
    if how == "ctrl-c":
        assert proc.returncode == 0, proc.stderr
        assert text == "the report\ncould not write the json report to /dev/stdout: interrupted (Ctrl-C)\n", text[:200]
    else:
        assert proc.returncode == 129, proc.stderr
        assert text == "the report\n", text[:200]


# As _INTERRUPTED, with another writer appending to the same file (its own O_APPEND open file,
# as a second `... >> out.log` job has) once the report's first chunk went through.
_INTERRUPTED_SHARED = _INTERRUPTED.replace(
    "    if fd == 1 and done > 4096:\n",
    "    if fd == 1 and done > 4096:\n"
    "        other = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND)\n"
    "        real_write(other, b'another writer\\n')\n"
    "        os.close(other)\n")


@pytest.mark.parametrize("how", ["ctrl-c", "at-once"])
def test_an_interrupted_report_does_not_cut_what_another_writer_appended(tmp_path: Path, how: str) -> None:
    """`--json /dev/stdout >> out.log` while another process appends to out.log too, the copy
    interrupted (Ctrl-C, or a signal that ends the process at once) after another writer's
    line followed the report's first chunk: that line stays (the report's part before it
    cannot be taken out without it, and stays too). The file was cut back to where the report
    began, taking the other writer's line with it."""
    out = tmp_path / "out.log"
    assert _INTERRUPTED_SHARED != _INTERRUPTED
    with out.open("a") as stdout:
        proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_SHARED, how, str(out)], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, env=ENV, timeout=60)
    assert proc.returncode == (0 if how == "ctrl-c" else 129), proc.stderr
    text = out.read_text()
    assert text.startswith("the report\n{\n"), text[:200]
    assert "another writer\n" in text, text[-200:]
