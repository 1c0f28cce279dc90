"""docs/workloads.md stays true: every TOML example in it is a valid workload, and every key
and activity the code accepts, and every realm counter the report shows, is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rmm_mp.workload import spec
from rmm_mp.workload.fields import ACTIVITIES
from rmm_mp.workload.resolve import resolve

DOC = Path(__file__).resolve().parents[2] / "docs" / "workloads.md"
TEXT = DOC.read_text()
EXAMPLES = re.findall(r"```toml\n(.*?)```", TEXT, re.S)
GUESTS = {m.group(1): m.group(0)[len("```asm\n"):-len("```")]
          for m in re.finditer(r"```asm\n// ([\w.-]+\.s):.*?```", TEXT, re.S)}
"""The guest files of the doc's examples, by the name their first line gives them."""


def write_guests(directory: Path) -> None:
    """Put the doc's guest files where its TOML examples look for them: beside the workload."""
    for name, text in GUESTS.items():
        (directory / name).write_text(text)


def test_the_doc_has_examples() -> None:
    """docs/workloads.md holds at least five TOML examples for the next test to validate."""
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("n", range(len(EXAMPLES)))
def test_every_toml_example_validates(n: int, tmp_path: Path) -> None:
    """Each TOML example of docs/workloads.md, written to a file, loads and resolves to a workload with
    phases and CPUs."""
    write_guests(tmp_path)
    path = tmp_path / f"example{n}.toml"
    path.write_text(EXAMPLES[n])
    w = resolve(spec.load(str(path)))
    assert w.phases and w.cpus >= 1


def test_every_key_and_activity_is_documented() -> None:
    """Every top-level, realm, group and phase key and every activity the code accepts appears in
    docs/workloads.md in backquotes."""
    for key in spec.TOP_KEYS + spec.REALM_KEYS + spec.GROUP_KEYS + spec.PHASE_KEYS + ACTIVITIES:
        assert f"`{key}`" in TEXT or f"`[[{key}]]`" in TEXT, key


def test_every_realm_counter_is_documented() -> None:
    """Every per-realm counter the host keeps (realm_entry.COUNTERS, shown in the report's realm
    table) appears in docs/workloads.md in backquotes, so a reader can look up what it counts."""
    from rmm_mp.host.realm_entry import COUNTERS

    missing = [name for name in COUNTERS if f"`{name}`" not in TEXT]
    assert missing == []


def test_every_guest_example_is_named_by_a_toml_example() -> None:
    """Each guest file docs/workloads.md shows (an asm block whose first line names it) is the
    guest of some TOML example, and every asm block names its file so the tests can write it."""
    assert len(GUESTS) == TEXT.count("```asm\n") >= 1
    for name in GUESTS:
        assert any(f'guest = "{name}"' in example for example in EXAMPLES), name


@pytest.mark.multiprocess
def test_the_guest_of_your_own_example_runs_as_the_doc_says(tmp_path: Path) -> None:
    """docs/workloads.md, "A guest of your own": hello-loop.s with ROUNDS = 5 on one CPU for
    200 steps turns itself off having reported pass with detail 5, printed "round 0".."round 4"
    on its console, LOGged 0..4 from REC 0, and counted the entries, MMIO writes and host calls
    the doc gives."""
    from rmm_mp.workload import render
    from rmm_mp.workload.run import RunOptions, run_workload

    write_guests(tmp_path)
    example = next(e for e in EXAMPLES if 'guest = "hello-loop.s"' in e)
    path = tmp_path / "looper.toml"
    path.write_text(example)
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False, console=True))
    assert report.ok, (report.problems, report.failures)
    (realm,) = render.to_json(report)["realms"]
    assert realm["detail"] == "turned itself off, reported pass (detail 0x5)", realm
    assert realm["counters"] == {"entries": 48, "mmio_writes": 40, "host_calls": 7}, realm
    assert realm["output"]["console"] == "".join(f"round {n}\n" for n in range(5))
    assert [(r["rec"], r["values"]) for r in realm["output"]["log"]] == [(0, [n, 0, 0, 0]) for n in range(5)]
    for line in ("`entries 48`", "`mmio_writes 40`", "`host_calls 7`", "reported pass (detail\n0x5)"):
        assert line in TEXT, line
