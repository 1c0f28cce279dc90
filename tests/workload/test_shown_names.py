"""Names of files a user gave, as the workload commands print them (describe, the text report,
`rmm-mp workloads validate`, `rmm-mp platform show`): a character that would act on a terminal
(ESC, a newline) is shown escaped, as a TOML string (printable.shown_path). click.echo strips
such sequences only when the output is not a terminal, so on one they went through raw."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from rmm_mp.cli import main
from rmm_mp.hw import platform as plat
from rmm_mp.workload import spec
from rmm_mp.workload.describe import describe
from rmm_mp.workload.render import format_report
from rmm_mp.workload.resolve import resolve
from stats.report_samples import hand_built

ESC_NAME = "w\x1b[2J"


def _workload(tmp_path: Path) -> Path:
    (tmp_path / "g\x1b[31m.s").write_text("start:\n    b start\n")
    path = tmp_path / f"{ESC_NAME}.toml"
    path.write_text('seconds = 1\nactivities = { run = 1 }\n[[realm]]\nname = "vm"\nguest = "g\\u001b[31m.s"\n')
    return path


def test_workloads_show_escapes_the_file_name_and_a_guest_path(tmp_path: Path) -> None:
    """`rmm-mp workloads show` of a workload file and a guest file whose names hold an ESC shows
    both escaped, in its header and in the realm's line. Before, they were printed raw: the
    terminal cleared its screen and turned red."""
    text = describe(resolve(spec.load(_workload(tmp_path))))
    assert "\x1b" not in text, repr(text)
    assert text.splitlines()[0] == f'workload "w\\u001B[2J" ("{tmp_path}/w\\u001B[2J.toml")'
    assert f'guest file "{tmp_path}/g\\u001B[31m.s"' in text


def test_the_report_header_escapes_the_workload_name_and_path() -> None:
    """The text report's first line names the workload and its file escaped when they hold an
    ESC. Before, they were printed raw."""
    head = format_report(hand_built(workload=ESC_NAME, source=f"/tmp/{ESC_NAME}.toml")).splitlines()[0]
    assert head == 'workload "w\\u001B[2J" ("/tmp/w\\u001B[2J.toml")'


def test_validate_and_platform_show_escape_the_path_they_print(tmp_path: Path) -> None:
    """`rmm-mp workloads validate` names a valid file, and `rmm-mp platform show` the platform's
    source, escaped when the path holds an ESC. Before, both printed the path raw."""
    path = _workload(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["workloads", "validate", str(path)], color=True)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and result.output.startswith(f'"{tmp_path}/w\\u001B[2J.toml": valid')
    platform = tmp_path / "p\x1b[2J.toml"
    shutil.copy(plat.platform_dir() / "host.toml", platform)
    result = runner.invoke(main, ["platform", "show", str(platform)], color=True)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and f'source: "{tmp_path}/p\\u001B[2J.toml"' in result.output
