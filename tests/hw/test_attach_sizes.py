"""Machine.attach refuses a segment shorter than the machine its control block describes.

A copy of a live machine's segments under another name, one of them cut short, stands for a
machine truncated by hand or by a full /dev/shm (the live machine's own files are not cut: its
creator's mappings would fault). Before, attach mapped what was there: `rmm-mp check` then died
in a traceback on the first granule past the end, or called a cut DRAM's invariants holding.

The copies are named with this process's pid: a Machine.create in another test process sweeps
a machine whose creator has ended as an orphan, and under pid 1 a copy's creator (this process,
by the start time its control block holds) was judged ended.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rmm_mp import Machine
from rmm_mp.hw import segment
from rmm_mp.hw.faults import MachineError


def _copy(m: Machine, name: str, cut: str, size: int) -> list[Path]:
    paths = []
    for part in segment.MACHINE_PARTS:
        dst = Path(segment.segment_path(name, part))
        shutil.copyfile(segment.segment_path(m.name, part), dst)
        paths.append(dst)
        if part == cut:
            os.truncate(dst, size)
    return paths


@pytest.mark.parametrize("cut, size", [("ctl", 100), ("granules", 10), ("gpt", 100), ("dram", 4096),
                                       ("cpus", 8)])
def test_a_cut_segment_is_refused_naming_it_and_its_sizes(cut: str, size: int) -> None:
    name = f"rmm-mp-{os.getpid()}-5e65c0de"
    with Machine.create("host", cpus=2) as m:
        paths = _copy(m, name, cut, size)
        try:
            with pytest.raises(MachineError, match=(f"^'{name}': its {cut} segment in {re.escape(segment.SHM_DIR)} "
                                                    f"holds {size:,} bytes where the machine needs [0-9,]+: "
                                                    "truncated, or not made by this version of rmm-mp$")):
                Machine.attach(name)
            # Whole again, the same copy attaches: the refusal was the size's, not the copy's.
            for part in segment.MACHINE_PARTS:
                shutil.copyfile(segment.segment_path(m.name, part), segment.segment_path(name, part))
            Machine.attach(name).close()
        finally:
            for path in paths:
                path.unlink(missing_ok=True)


def test_check_of_a_cut_machine_exits_2_with_the_refusal() -> None:
    """`rmm-mp check` prints the refusal as every other attach refusal (exit 2), no traceback."""
    name = f"rmm-mp-{os.getpid()}-5e65c0df"
    with Machine.create("host", cpus=1) as m:
        paths = _copy(m, name, "granules", 10)
        try:
            proc = subprocess.run([sys.executable, "-m", "rmm_mp", "check", name, "--no-pause"],
                                  capture_output=True, text=True, timeout=120)
        finally:
            for path in paths:
                path.unlink(missing_ok=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"Error: MachineError: '{name}': its granules segment" in proc.stderr


@pytest.mark.parametrize("how", ["empty", "directory"])
def test_an_unmappable_trace_segment_is_refused_naming_it(how: str) -> None:
    """The trace segment (a machine made with trace rings) is attached after the control block is
    read; an empty one was refused as "'NAME': cannot mmap an empty file", naming no segment, and one
    that cannot be opened (here a directory in its place) raised IsADirectoryError out of attach
    (a traceback from `rmm-mp check`). Both are refused as an unmappable ctl, granules, ... is."""
    name = f"rmm-mp-{os.getpid()}-5e65c0e0"
    with Machine.create("host", cpus=1, trace_capacity=64) as m:
        paths = _copy(m, name, "", 0)
        trace = Path(segment.segment_path(name, segment.TRACE_PART))
        if how == "empty":
            trace.touch()
        else:
            trace.mkdir()
        try:
            with pytest.raises(MachineError, match=(f"^no machine named '{name}' can be attached: its "
                                                    f"{segment.TRACE_PART} segment in {re.escape(segment.SHM_DIR)}: ")):
                Machine.attach(name)
        finally:
            for path in paths:
                path.unlink(missing_ok=True)
            trace.unlink() if how == "empty" else trace.rmdir()


@pytest.mark.parametrize("gone", [*(part for part in segment.MACHINE_PARTS if part != "ctl"), segment.TRACE_PART])
def test_a_machine_missing_a_segment_past_its_control_block_names_it(gone: str) -> None:
    """A control block without one of the other parts read "no machine named ... (it was closed,
    or never existed)", naming no part; the trace segment (of a machine made with trace rings,
    mapped once the control block is read) is named as the other parts are (found by review)."""
    name = f"rmm-mp-{os.getpid()}-5e65c0e1"
    with Machine.create("host", cpus=1, trace_capacity=64) as m:
        paths = _copy(m, name, "", 0)     # the machine's parts, not its trace segment
        if gone != segment.TRACE_PART:
            trace = Path(segment.segment_path(name, segment.TRACE_PART))
            shutil.copyfile(segment.segment_path(m.name, segment.TRACE_PART), trace)
            paths.append(trace)
            Path(segment.segment_path(name, gone)).unlink()
        try:
            with pytest.raises(MachineError, match=(f"^machine '{name}' cannot be attached: its {gone} segment is "
                                                    f"not in {re.escape(segment.SHM_DIR)} \\(removed by hand, or "
                                                    "the machine is being closed\\)$")):
                Machine.attach(name)
        finally:
            for path in paths:
                path.unlink(missing_ok=True)


def test_every_unlinker_unlinks_the_control_block_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine.attach tells a missing control block ("no machine named ... (it was closed, or never
    existed)") from a missing part past it ("removed by hand, or the machine is being closed"),
    which holds only if whatever unlinks a machine unlinks its control block first. `rmm-mp
    clean` and the orphan sweep (segment.unlink_machine) unlinked the sorted paths, .cpus before
    .ctl, and the reaper its set's, in any order (found by review): an attacher racing them was
    told a part was removed by hand."""
    import builtins
    import types

    from rmm_mp.hw import reaper

    order: list[str] = []
    monkeypatch.setattr(segment.os, "unlink", lambda path: order.append(os.fsdecode(path)))
    prefixes = [segment.machine_prefix(4000 + i, f"{i:08x}") for i in range(20)]
    for prefix in prefixes:
        paths = tuple(sorted(segment.segment_path(prefix, part) for part in segment.PARTS))
        segment.unlink_machine(segment.MachineSegments(prefix, 4000, paths))
    assert [p.rsplit(".", 1)[1] for p in order[::len(segment.PARTS)]] == ["ctl"] * len(prefixes), order[:8]

    # The reaper's script, run here with an os that hands it the lines and records its unlinks.
    lines = b"".join(b"+" + os.fsencode(segment.segment_path(p, part)) + b"\n"
                     for p in prefixes for part in segment.PARTS)
    reads = [lines, b""]
    unlinked: list[str] = []
    fake_os = types.SimpleNamespace(read=lambda fd, n: reads.pop(0), unlink=lambda p: unlinked.append(os.fsdecode(p)))
    fake_signal = types.SimpleNamespace(SIGINT=2, SIGTERM=15, SIGHUP=1, SIG_IGN=None, signal=lambda *a: None)

    def fake_import(name: str, *args: object) -> object:
        return {"os": fake_os, "signal": fake_signal}[name]

    exec(reaper.SCRIPT, {"__builtins__": {**vars(builtins), "__import__": fake_import}})
    assert len(unlinked) == len(prefixes) * len(segment.PARTS)
    for prefix in prefixes:
        mine = [p for p in unlinked if p.startswith(segment.segment_path(prefix, ""))]
        assert mine[0].endswith(".ctl"), mine
