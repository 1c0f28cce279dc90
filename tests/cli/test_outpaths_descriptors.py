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

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# As `rmm-mp run` ends: the text report, the files, then a last line.
_REPORT = ("import sys\nfrom rmm_mp import outpaths\nfrom rmm_mp.outpaths import write_json\n"
           "{setup}\n"
           "print('the report', flush=True)\nwrite_json({{'ok': True}}, sys.argv[1])\n"
           "print('result: OK', flush=True)\n")

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
