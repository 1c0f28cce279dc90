"""The guest output blocks of `rmm-mp run`'s text report (workload/render_text.py), on
hand-built reports (tests/stats/report_samples.py): a guest that wrote nothing gets one line
between them all, not an empty block each."""

from __future__ import annotations

import json
from pathlib import Path

from rmm_mp.workload.render import format_report, to_json
from rmm_mp.workload.report import GuestOutput, RealmOutcome
from stats.report_samples import hand_built
from stats.schema_subset import errors

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "report-schema.json"
FAILED = "the guest reported failure code 5 (detail 0x0)"


def test_guests_that_wrote_nothing_are_named_in_one_line() -> None:
    """Sixteen failed lifecycle instances whose guest wrote no console byte and no LOG record, and
    one whose guest wrote a line: the text has the one block with its console, and one line
    counting the sixteen and naming the first five, within the width; no "Guest output of" title
    of a silent guest. Each silent one used to get a block of its own, an empty title and a blank
    line: 32 lines per CPU of a lifecycle run saying nothing. The JSON keeps every realm's output
    and stays valid against docs/report-schema.json."""
    empty = GuestOutput("", 0, (), 0)
    silent = tuple(RealmOutcome(f"vm#{n}", 1, False, FAILED, {}, empty) for n in range(16))
    talker = RealmOutcome("loud#1", 1, False, FAILED, {}, GuestOutput("stuck\n", 6, (), 0))
    report = hand_built(realms=(*silent, talker))
    doc = to_json(report)
    assert errors(doc, json.loads(SCHEMA.read_text())) == []
    assert [r["output"]["console_bytes"] for r in doc["realms"]] == [0] * 16 + [6]
    lines = format_report(report).splitlines()
    titles = [line for line in lines if line.startswith("Guest output of")]
    assert titles == ["Guest output of loud#1: console (6 bytes written), LOG (0 records)"], titles
    start = next(i for i, line in enumerate(lines) if line.startswith("No guest output"))
    end = next(i for i in range(start, len(lines)) if not lines[i])
    note = lines[start:end]
    assert " ".join(line.strip() for line in note) == (
        "No guest output (no console byte, no LOG record) of 16 realms: vm#0, vm#1, vm#2, vm#3, vm#4 and 11 more")
    assert all(len(line) <= 118 for line in note)


def test_a_guest_with_only_log_records_keeps_its_block() -> None:
    """A guest that wrote no console byte but made LOG calls has output to show: its block stays,
    with the LOG lines, and no "No guest output" line is printed."""
    out = GuestOutput("", 0, ((0, (1, 2, 3, 4)),), 1)
    text = format_report(hand_built(realms=(RealmOutcome("logger", 1, False, FAILED, {}, out),)))
    assert "Guest output of logger: console (0 bytes written), LOG (1 record)" in text
    assert "  LOG rec 0: 0x1 0x2 0x3 0x4" in text and "No guest output" not in text
