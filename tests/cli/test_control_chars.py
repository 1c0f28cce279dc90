"""A path or name a user gave that holds control characters (ESC, CR) is shown escaped in every
message that names it (printable.shown_path), never raw: raw, a directory named with ESC c or
ESC [2J reset or cleared the terminal and a CR overwrote the start of the message.

ESC c (not ESC [2J) is used because click strips complete CSI sequences from what it prints
to a stream that is not a terminal, which would hide the raw ESC from these tests but not
from a terminal."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from realm_table import realm_table

from rmm_mp.cli import main
from rmm_mp.outpaths import write_files
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.explore_cli import _write_json as explore_write_json
from rmm_mp.stress.report import StressReport
from rmm_mp.workload.render_text import _output

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "tests" / "vectors" / "ccatoken" / "veraison-rust-ccatoken" / "testdata"
DIR = "o\x1bc\rb"
"""A directory name holding ESC c (a terminal reset) and CR."""
SHOWN = '"o\\u001Bc\\rb'
"""How a message starts naming a path in DIR, relative (TOML basic string escapes)."""


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code != 0 or "attest" in args, result.output
    return result.output


def _attest_garbage(command: str) -> Callable[[Path], str]:
    def case(d: Path) -> str:
        (d / "tok.cbor").write_bytes(b"\x01\x02garbage")
        return _cli("attest", command, str(d / "tok.cbor"))
    return case


def _attest_empty(d: Path) -> str:
    (d / "tok.cbor").write_bytes(b"")
    return _cli("attest", "verify", str(d / "tok.cbor"))


def _attest_inspect_ok(d: Path) -> str:
    shutil.copy(TESTDATA / "cca-token-draft-ffm-00.cbor", d / "tok.cbor")
    return CliRunner().invoke(main, ["attest", "inspect", str(d / "tok.cbor")]).output


def _attest_key_name(d: Path) -> str:
    """A key that is not this platform's: the check's reason names the key file."""
    shutil.copy(ROOT / "tests" / "vectors" / "ccatoken" / "veraison-ccatoken" / "realm" / "testvectors" / "tf-rmm"
                / "cca_platform.pub", d / "key.pub")
    return CliRunner().invoke(main, ["attest", "verify", str(TESTDATA / "cca-token-draft-ffm-00.cbor"),
                                     "--platform-key", str(d / "key.pub")]).output


def _stress_replay(d: Path) -> str:
    (d / "sched.json").write_text("not json")
    return _cli("stress", "--replay", str(d / "sched.json"))


def _stress_checkers(d: Path) -> str:
    return _cli("stress", "--checkers", f"lockdep,{d.name}")


def _config_checkers(d: Path) -> str:
    with pytest.raises(ValueError) as exc:
        StressConfig(checkers=(d.name,))
    return str(exc.value)


def _config_inject(d: Path) -> str:
    with pytest.raises(ValueError) as exc:
        StressConfig(inject=(d.name,))
    return str(exc.value)


def _outpaths_write_files(d: Path) -> str:
    def fail(path: str) -> None:
        raise OSError(28, "No space left on device")
    errors: list[str] = []
    write_files([("json", str(d / "r.json"), fail)], {}, errors)
    return "\n".join(errors)


def _explore_json(d: Path) -> str:
    # A path whose directory does not exist: the write fails with ENOENT.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert not explore_write_json(str(d / "gone" / "e.json"), [], (), False, {})
    return err.getvalue()


def _run_written(d: Path) -> str:
    return _output("json", str(d / "r.json"), None)  # type: ignore[arg-type]


def _replay_command(d: Path) -> str:
    return StressReport.replay_command(None, str(d / "s.json"))  # type: ignore[arg-type]


CASES = {
    "attest verify TOKEN: garbage": _attest_garbage("verify"),
    "attest inspect TOKEN: garbage": _attest_garbage("inspect"),
    "attest verify TOKEN: empty": _attest_empty,
    "attest inspect: its header line": _attest_inspect_ok,
    "attest verify --platform-key: the check's reason": _attest_key_name,
    "stress --replay: not a schedule": _stress_replay,
    "stress --checkers: unknown name": _stress_checkers,
    "StressConfig: unknown checker": _config_checkers,
    "StressConfig: unknown bug": _config_inject,
    "outpaths.write_files: could not write": _outpaths_write_files,
    "explore --json: could not write": _explore_json,
    "run report: Written line": _run_written,
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_path_with_control_characters_is_shown_escaped(tmp_path: Path, case: Callable[[Path], str]) -> None:
    """Each message that names a user's path (or name) holding ESC and CR shows it with escapes
    (\\u001B, \\r) and holds neither character raw."""
    d = tmp_path / DIR
    d.mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path)   # the relative name shows the escapes whole, as SHOWN spells them
    try:
        shown = case(Path(DIR))
    finally:
        os.chdir(cwd)
    assert "\x1b" not in shown and "\r" not in shown, repr(shown)
    assert SHOWN in shown, repr(shown)


def test_the_replay_command_quotes_control_characters_for_the_shell(tmp_path: Path) -> None:
    """`rmm-mp stress`'s replay line names a schedule path holding ESC and CR in ANSI-C quotes
    ($'...'), which bash reads back as the same path, and holds neither character raw."""
    line = _replay_command(Path(DIR))
    assert "\x1b" not in line and "\r" not in line, repr(line)
    assert line.endswith("$'o\\x1bc\\x0db/s.json'"), line
    (tmp_path / DIR).mkdir()
    (tmp_path / DIR / "s.json").write_text("")
    shell = subprocess.run(["bash", "-c", "ls " + line.split("--replay ", 1)[1]], cwd=tmp_path,
                           capture_output=True, timeout=10)
    assert shell.returncode == 0, shell.stderr


def test_a_run_names_its_files_in_a_directory_with_control_characters_escaped(tmp_path: Path) -> None:
    """`rmm-mp run attestation-storm --save-tokens D/t --json D/r.json` with D named with ESC
    and CR: the "Written:" line and each realm's "saved as" name D escaped, never raw."""
    d = tmp_path / DIR
    d.mkdir()
    result = subprocess.run([sys.executable, "-m", "rmm_mp", "run", "attestation-storm", "--seconds", "0.3",
                             "--cpus", "2", "--save-tokens", f"{DIR}/t", "--json", f"{DIR}/r.json"],
                            cwd=tmp_path, capture_output=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "\x1b" not in out and "\r" not in out, repr(out[-2000:])
    assert f'Written: tokens {SHOWN}/t"' in out and f'json {SHOWN}/r.json"' in out, out[-2000:]
    assert any(f'saved as {SHOWN}/t/att256-' in detail for _, detail, _ in realm_table(out)), out[-3000:]


@pytest.mark.parametrize("name, word", [("w\tx", "$'./w\\x09x'"), ("w\x1bcx", "$'./w\\x1bcx'"),
                                        ("w\u200bx", "$'./w\\u200bx'")], ids=["tab", "esc", "zero-width-space"])
def test_the_hint_for_a_file_of_another_suffix_with_control_characters_is_a_shell_word(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, word: str) -> None:
    """`rmm-mp run NAME`, NAME a file without .toml whose name holds a tab, an ESC or a zero-width space, is told
    the word to type to read it, in bash's $'...' quotes, and that the name holds characters
    that are not printable. The hint named it with the message's TOML escapes ("./w\\tx"), which a shell
    reads as a backslash and a t: another file."""
    (tmp_path / name).write_text('seconds = 1\nactivities = { run = 1 }\n[[realm]]\nname = "vm"\nguest = "hello"\n')
    monkeypatch.chdir(tmp_path)
    output = _cli("workloads", "validate", name)
    # Neither "control characters" (a zero-width space is none) nor "a POSIX shell": dash, the sh
    # of Debian, reads $'...' as a $ and a quoted word.
    assert (f"write {word} to read it as a workload file; the name holds characters that are not printable, which "
            "bash, zsh and ksh write in $'...' quotes (dash does not)") in output, output
    assert "\x1b" not in output, repr(output)
    typed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, text=True, check=True).stdout
    assert typed == "./" + name
    result = CliRunner().invoke(main, ["workloads", "validate", typed])
    assert result.exit_code == 0 and "valid" in result.output, result.output
