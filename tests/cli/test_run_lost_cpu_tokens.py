"""What `rmm-mp run --save-tokens` reports of the attestation tokens of a CPU that returned no
result (killed): its lifecycle tally (hw.cpuarea, 0x800; workload.cpustate.Host.publish) counts
the tokens it saved and those it could not write, and the report shows both."""

from __future__ import annotations

from pathlib import Path

import pytest
from lost_cpu import LOST, drop_the_lost_cpus_result, owned_where_run, pinned_realms
from realm_table import realm_table

from rmm_mp.workload import render, spec
from rmm_mp.workload.resolve import Workload, resolve
from rmm_mp.workload.run import RunOptions, run_workload

pytestmark = pytest.mark.multiprocess

WORKLOAD = 'iterations = 60\ncpus = 2\nactivities = { attest = 1 }\n' + pinned_realms("att", "attest", 'ram = "3M"\n')
"""att0 is CPU 0's lifecycle realm, att1 CPU 1's, each run by its owner alone: every token named
att1-* is CPU 1's, and CPU 1 saves some on every run (a loaded 3.12.1 suite once met a run in
which it saved none, when both CPUs ran one realm's two instances: lost_cpu.pinned_realms)."""


def _resolved(path: Path) -> Workload:
    return owned_where_run(resolve(spec.load(str(path))))


def test_the_rows_of_a_lost_cpu_s_instances_say_how_many_tokens_it_saved(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Attest realms on 2 CPUs with --save-tokens, CPU 1's result dropped: the rows of att1's
    instances, made from CPU 1's tally, say how many tokens CPU 1 saved of them (the att1-*
    files in the directory), in the text report as in the JSON's detail. They said only how
    many instances there were, and the tokens were in the header's total alone."""
    drop_the_lost_cpus_result(monkeypatch)
    path = tmp_path / "w.toml"
    path.write_text(WORKLOAD)
    tokens = tmp_path / "tokens"
    report = run_workload(_resolved(path), RunOptions(progress=False, tokens_dir=str(tokens)))
    saved = len([p for p in tokens.iterdir() if p.name.startswith("att1-")])
    assert saved, "CPU 1 must have saved a token for the test to mean anything"
    rows = [r for r in report.realms if r.name.startswith("att1")]
    told = f"CPU {LOST} saved {saved} token{'s' if saved > 1 else ''} of att1's instances to --save-tokens' directory"
    assert [r.name for r in rows if told in r.detail] == [rows[0].name], [r.detail for r in rows]
    assert [" ".join(cells[:-3]) for cells, detail, _ in realm_table(render.format_report(report)) if told in detail] \
        == [rows[0].name]


def test_the_tokens_a_lost_cpu_could_not_write_are_a_report_file_error(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """As above, but every file CPU 1 would write its tokens to is a directory (so each write
    fails) and CPU 0's are left free: the report names the tokens CPU 1 could not save among the
    report files not written, as it does a CPU's that returned its result, and the run's rows of
    att1 say so. Only the returned results carried the write failures, so the report said
    "tokens DIR (N tokens)" and nothing of those lost."""
    dropped = drop_the_lost_cpus_result(monkeypatch)
    path = tmp_path / "w.toml"
    path.write_text(WORKLOAD)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for generation in range(400):
        (tokens / f"att1-0-{generation:06d}.cbor").mkdir()
    report = run_workload(_resolved(path), RunOptions(progress=False, tokens_dir=str(tokens)))
    lost = dropped[0]
    unsaved = sum(bool(f.token_write_error) for f in lost.finished) + sum(f.unsaved for f in lost.folded)
    assert unsaved, "CPU 1 must have failed to write a token for the test to mean anything"
    saved = len([p for p in tokens.iterdir() if p.is_file()])
    assert report.tokens_saved == saved
    errors = [e for e in report.output_errors if e.startswith("could not save ")]
    assert errors and errors[0].startswith(f"could not save {unsaved} of {unsaved + saved} tokens to "), \
        report.output_errors
    assert f"CPU {LOST} returned no result" in errors[0], errors
    assert any(f"{unsaved} could not be written" in r.detail for r in report.realms if r.name.startswith("att1"))


def test_a_row_of_folded_lifecycle_instances_says_how_many_tokens_they_saved() -> None:
    """Instances a CPU did not list one by one (after its first 128 of an outcome) are folded into
    a row of their template (realms.Folded), which sums their tokens saved and not written: the
    row's detail gives both counts, as a listed instance names its token file. It gave neither:
    500 attest instances' tokens were in the Written: line's total only."""
    from rmm_mp.workload.realms import Folded, folded_outcome
    fold = Folded(0, "att", 1, True, 500, {"entries": 900}, 0, "att#130", "att#640", tokens_saved=497, unsaved=3)
    assert folded_outcome(fold).detail.endswith(
        "; 497 tokens saved to --save-tokens' directory, 3 could not be written")
    quiet = Folded(0, "vm", 1, True, 500, {"entries": 900}, 0, "vm#130", "vm#640")
    assert "token" not in folded_outcome(quiet).detail
