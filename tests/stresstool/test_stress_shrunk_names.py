"""The default name of the schedule a shrunk replay saves (`rmm-mp stress --replay F --shrink`
without --save-schedule): named after F, never F itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmm_mp.stress.cli import default_schedule_path, stress
from rmm_mp.stress.config import StressConfig

REPLAYED = StressConfig(workload="tables", schedule="replay", seed=1, inject=("walk-unlock-parent-first",),
                        switches=((0, 0),))


@pytest.mark.multiprocess
def test_shrinking_a_replay_never_writes_over_the_file_replayed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A random run's schedule saved as stress-tables-replay-1-BUG.schedule.json (the name a
    shrunk replay of this workload, seed and bug used to get), then replayed with --shrink: the
    shrunk schedule goes to stress-tables-replay-1-BUG-shrunk.schedule.json and the file replayed
    keeps its bytes. Every replay's default name had "replay" as its kind, so this replay wrote
    the shrunk schedule over the file it had read."""
    monkeypatch.chdir(tmp_path)
    replayed = tmp_path / "stress-tables-replay-1-walk-unlock-parent-first.schedule.json"
    runner = CliRunner()
    res = runner.invoke(stress, ["tables", "--inject", "walk-unlock-parent-first", "--schedule", "random", "--steps",
                                 "2000", "--seed", "1", "--checkers", "lockdep", "--save-schedule", str(replayed)])
    assert res.exit_code == 1, res.output
    before = replayed.read_bytes()
    assert json.loads(before)["config"]["strategy"] == "random"
    res = runner.invoke(stress, ["--replay", replayed.name, "--shrink"])
    assert res.exit_code == 1, res.output
    shrunk = tmp_path / "stress-tables-replay-1-walk-unlock-parent-first-shrunk.schedule.json"
    assert replayed.read_bytes() == before, "the file replayed was written over"
    assert f"schedule: {shrunk.name}" in res.output, res.output
    assert json.loads(shrunk.read_text())["config"]["strategy"] == "replay"


@pytest.mark.parametrize("replayed, expected", [
    ("stress-tables-random-1.schedule.json", "stress-tables-random-1-shrunk.schedule.json"),
    ("sub/mine.json", "mine-shrunk.schedule.json"),
    ("x-shrunk.schedule.json", "x-shrunk-shrunk.schedule.json"),
    (".json", ".json-shrunk.schedule.json"),
])
def test_a_shrunk_replay_is_named_after_the_file_replayed(replayed: str, expected: str) -> None:
    """The name of a shrunk replay's schedule: the replayed file's name without its directory
    and its .schedule.json (or .json), then -shrunk.schedule.json, in the current directory; a
    run that is no replay keeps its WORKLOAD-SCHEDULE-SEED name."""
    assert default_schedule_path(REPLAYED, replayed) == expected
    assert default_schedule_path(REPLAYED) == "stress-tables-replay-1-walk-unlock-parent-first.schedule.json"


def test_a_shrunk_replay_s_name_is_never_the_file_replayed_through_a_link(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """NAME-shrunk.schedule.json in the current directory is a link to the file replayed, or the
    replayed file's name is so long that it must be cut: the name chosen is still another file
    and one a file system takes (255 bytes)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.schedule.json").write_text("{}")
    os.symlink("real.schedule.json", tmp_path / "real-shrunk.schedule.json")
    name = default_schedule_path(REPLAYED, "real.schedule.json")
    assert name == "real-shrunk-shrunk.schedule.json", name
    long = "s" * 240 + ".schedule.json"
    name = default_schedule_path(REPLAYED, long)
    assert len(name.encode()) <= 255 and name.endswith("-shrunk.schedule.json") and name.startswith("s" * 100), name


def test_a_shrunk_replay_of_a_file_whose_name_is_not_utf8_is_named_from_its_bytes(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A replayed file named by bytes that are not UTF-8 (b"\\xff" and a cut-off "é"), as click
    hands it on (lone surrogates, os.fsdecode): the shrunk schedule's name is those bytes with
    -shrunk.schedule.json, and a long one is cut to at most 255 bytes between characters (a
    valid "é" is never left half). The name was measured with str.encode, which raised
    UnicodeEncodeError, so `--replay F --shrink` was refused with a codec error."""
    monkeypatch.chdir(tmp_path)
    replayed = os.fsdecode(b"\xff\xc3.schedule.json")
    assert os.fsencode(default_schedule_path(REPLAYED, replayed)) == b"\xff\xc3-shrunk.schedule.json"
    long = os.fsdecode(b"\xff" + "é".encode() * 150 + b".schedule.json")
    name = os.fsencode(default_schedule_path(REPLAYED, long))
    assert len(name) <= 255 and name.endswith(b"-shrunk.schedule.json"), name
    head = name[:-len(b"-01234567-shrunk.schedule.json")]
    assert head == b"\xff" + "é".encode() * 49, head
