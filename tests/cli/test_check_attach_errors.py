"""`rmm-mp check NAME`: every refusal of Machine.attach is printed in one form, "Error: MachineError:
...", with exit status 2 (check --help, docs/stress.md). Only a missing segment directory was
printed so; no such machine, a segment that cannot be attached or a machine still being made
read "Error: no machine named ...", without the type that clean, run and explore print."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rmm_mp.cli import main
from rmm_mp.hw import segment
from rmm_mp.hw.faults import MachineError

NAME = "rmm-mp-1-0badc0de"


@pytest.fixture
def shm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty segment directory of this test's own."""
    monkeypatch.setattr(segment, "SHM_DIR", str(tmp_path))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(tmp_path))
    return tmp_path


def _refusal(*args: str) -> str:
    result = CliRunner().invoke(main, ["check", *args])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output, result.output
    return result.stderr


def test_no_such_machine_is_printed_as_a_machine_error(shm_dir: Path) -> None:
    assert _refusal(NAME) == f"Error: MachineError: no machine named {NAME!r} in {shm_dir} (it was closed, or " \
                             f"never existed)\n"


def test_a_segment_that_cannot_be_attached_is_printed_as_a_machine_error(shm_dir: Path) -> None:
    (shm_dir / f"{NAME}.ctl").write_bytes(b"")     # truncated: nothing to map
    assert _refusal(NAME) == f"Error: MachineError: no machine named {NAME!r} can be attached: its ctl segment in " \
                             f"{shm_dir}: cannot mmap an empty file\n"


@pytest.mark.parametrize("refusal", [MachineError(f"machine {NAME!r} is still being created: try again in a moment"),
                                     ValueError("a refusal that names no argument")])
def test_any_other_attach_refusal_is_printed_in_the_same_form(shm_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                              refusal: Exception) -> None:
    from rmm_mp.machine import Machine

    def attach(name: str) -> Machine:
        raise refusal
    monkeypatch.setattr(Machine, "attach", attach)
    assert _refusal(NAME) == f"Error: {type(refusal).__name__}: {refusal}\n"


def test_a_missing_segment_directory_keeps_its_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "none"
    monkeypatch.setattr(segment, "SHM_DIR", str(where))
    monkeypatch.setenv("RMM_MP_SHM_DIR", str(where))
    assert _refusal(NAME).startswith(f"Error: MachineError: shared memory cannot be looked for in {where} ")


def test_check_help_gives_exit_2_for_a_machine_that_cannot_be_attached() -> None:
    """check --help said exit 2 for "no such machine" only, while a machine still being made and
    a segment that cannot be mapped or is cut short end with it too (the cases above,
    tests/hw/test_attach_sizes.py)."""
    text = " ".join(CliRunner().invoke(main, ["check", "--help"]).output.split())
    assert "one that cannot be attached (still being made, a segment that cannot be mapped or is shorter than the machine needs)" in text, text


def test_every_pause_slot_taken_is_printed_with_its_type_as_the_refusals_are() -> None:
    """The other exit-2 refusal before a verdict, every pause slot held, read "Error: all 8 pause
    slots ..." without the type the attach refusals print."""
    from rmm_mp import Machine
    from rmm_mp.hw.control import QUIESCE_SLOTS
    from rmm_mp.hw.quiesce import Pause

    with Machine.create("host", cpus=1) as m:
        pauses = [Pause(m.control) for _ in range(QUIESCE_SLOTS)]
        for p in pauses:
            p.__enter__()
        try:
            stderr = _refusal(m.name)
        finally:
            for p in pauses:
                p.__exit__(None, None, None)
    assert stderr.startswith(f"Error: QuiesceError: all {QUIESCE_SLOTS} pause slots"), stderr
