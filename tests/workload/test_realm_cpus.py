"""A realm's `cpus` key: the CPUs that run its vCPUs (rmm_mp.workload.spec / resolve, the run
queues of rmm_mp.host.runqueue).

Loader and resolver tests write a small file and check the ConfigError's line, key, value and
expectation, or the run queues the resolved workload gives each realm and CPU; `workloads show`
names the key; the report records the CPUs a realm was kept to. The multi-process test runs four
CPUs with a trace and reads from it which CPU entered which realm's RECs (the report has no
per-CPU per-realm figure; the trace's REC runs are on a track per CPU and name the realm).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload import spec
from rmm_mp.workload.describe import describe
from rmm_mp.workload.render_json import to_json
from rmm_mp.workload.resolve import Workload, resolve
from rmm_mp.workload.lost import kept_to
from rmm_mp.workload.run import RunOptions, run_workload

HEAD = 'iterations = 10\ncpus = 4\nactivities = { run = 1 }\n'


def realm(name: str, cpus: str | None = None, guest: str = "hello", extra: str = "") -> str:
    return f'[[realm]]\nname = "{name}"\nguest = "{guest}"\n' + (f"cpus = {cpus}\n" if cpus else "") + extra


def load(tmp_path: Path, text: str, **options: object) -> Workload:
    path = tmp_path / "w.toml"
    path.write_text(text)
    return resolve(spec.load(str(path)), **options)  # type: ignore[arg-type]


def refused(tmp_path: Path, text: str, line: int, key: str, value: object, expected: str,
            **options: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **options)
    err = info.value
    assert (err.line, err.key, err.value) == (line, key, value), str(err)
    assert expected in err.expected, str(err)
    return err


@pytest.mark.parametrize("cpus, value, expected", [
    ('"0-"', "0-", 'CPU ids 0..255: a non-empty list of integers such as [0, 1], a string such as "0-3"'),
    ('"3-1"', "3-1", "CPU ids 0..255"),
    ("[]", [], "CPU ids 0..255"),
    ("[0, 0]", [0, 0], "CPU ids, each once (CPU 0 is listed twice)"),
    ('"0-2,2"', "0-2,2", "CPU ids, each once (CPU 2 is listed twice)"),
    ("[256]", [256], "CPU ids 0..255"),
    ("1", 1, "CPU ids 0..255"),
], ids=["open-range", "backwards", "empty", "twice-list", "twice-string", "too-big", "integer"])
def test_a_bad_cpu_set_is_refused_as_a_group_cpus_is(tmp_path: Path, cpus: str, value: object, expected: str) -> None:
    """A realm's cpus takes the CPU-set syntax of group cpus, with the same errors, at its line."""
    refused(tmp_path, HEAD + realm("a", cpus), 7, "realm[0].cpus", value, expected)


def test_a_set_with_no_cpu_of_the_run_is_refused_naming_the_run_cpus(tmp_path: Path) -> None:
    """--cpus 2 on a file whose realm runs on CPUs 2-3: refused naming the realm, the key, the
    value as written and the run's CPUs."""
    err = refused(tmp_path, HEAD + realm("b", '"2-3"'), 7, "realm[0].cpus", "2-3",
                  "at least one CPU of this run to run the vCPUs of realm 'b': the run's CPUs are 0-1", cpus=2)
    assert "ids from 2 up are ignored" in err.expected
    refused(tmp_path, HEAD + realm("b", "[5]"), 7, "realm[0].cpus", [5], "the run's CPUs are 0-3")


def test_a_set_with_no_cpu_of_a_one_cpu_run_names_that_cpu_in_the_singular(tmp_path: Path) -> None:
    """--cpus 1 on a file whose realm runs on CPUs 2-3: the error says the run has only CPU 0;
    it said "the run's CPUs are 0"."""
    err = refused(tmp_path, HEAD + realm("b", '"2-3"'), 7, "realm[0].cpus", "2-3",
                  "at least one CPU of this run to run the vCPUs of realm 'b': the run has only CPU 0 ", cpus=1)
    assert "ids from 1 up are ignored" in err.expected and "CPUs are" not in err.expected


def test_a_set_whose_cpus_never_run_vcpus_is_refused(tmp_path: Path) -> None:
    """CPUs 2-3 only churn (no 'run', 'lifecycle' or 'attest' weight in any phase): a realm
    restricted to them would never run, so it is refused; a 'run' weight in one phase is enough."""
    group = '[[group]]\ncpus = "2-3"\nactivities = { rtt-churn = 1 }\n'
    refused(tmp_path, HEAD + group + realm("b", '"2-3"'), 10, "realm[0].cpus", "2-3",
            "a CPU whose weights include 'run' (or 'lifecycle', 'attest') in some phase, to run the vCPUs of "
            "realm 'b': CPUs 2-3 of the set have none")
    phases = ('[[phase]]\nname = "churn"\niterations = 5\n[[phase.group]]\ncpus = "2-3"\n'
              'activities = { rtt-churn = 1 }\n[[phase]]\nname = "all"\niterations = 5\n')
    w = load(tmp_path, 'cpus = 4\nactivities = { run = 1 }\n' + phases + realm("b", '"2-3"') + realm("c"))
    assert w.queues == (1, 0) and w.served_by(2) == (0, 1) and w.served_by(0) == (0,)


def test_a_run_cpu_that_may_run_no_realm_is_refused(tmp_path: Path) -> None:
    """Every realm runs on CPUs 0-1, and CPUs 2-3 have a 'run' weight: 'run' has nothing to work
    on there, refused as 'run' with no realm is, naming the CPU and where each realm runs."""
    refused(tmp_path, HEAD + realm("a", '"0-1"') + realm("b", "[1]"), 3, "activities.run", 1,
            "an activity with something to work on: CPU 2 may run no realm's vCPUs (every realm's cpus "
            "leaves it out: a on 0-1, b on 1)")


def test_more_distinct_sets_than_run_queues_is_refused(tmp_path: Path) -> None:
    """Eight realms on eight different single CPUs of fvp's 8: the host has 8 run queues, one for
    realms every CPU runs, so the eighth distinct set is refused at its realm."""
    text = 'iterations = 10\nplatform = "fvp"\nactivities = { run = 1 }\n' + "".join(
        realm(f"r{i}", f"[{i}]") for i in range(8))
    refused(tmp_path, text, 4 + 7 * 4 + 3, "realm[7].cpus", [7],
            "one of at most 7 distinct CPU sets short of all the run's CPUs")


def test_realms_share_a_queue_per_distinct_set_and_cpus_serve_theirs(tmp_path: Path) -> None:
    """Queue 0 holds the realms every CPU of the run may run (no cpus, "all", or a set that
    covers the run's CPUs once ids beyond them are ignored); each other distinct set gets a queue
    in file order, served by its CPUs and, before it, queue 0 by every CPU when some realm is in
    it."""
    text = HEAD + realm("a", '"0-1"') + realm("b", "[2, 3]") + realm("c") + realm("d", '"1,0"') + \
        realm("e", '"all"') + realm("f", '"0-5"') + realm("g", "[3]")
    w = load(tmp_path, text)
    assert w.queues == (1, 2, 0, 1, 0, 0, 3)
    assert [w.served_by(c) for c in range(4)] == [(0, 1), (0, 1), (0, 2), (0, 2, 3)]
    assert [w.runs_on(r) for r in (0, 1, 2, 5)] == [(0, 1), (2, 3), (0, 1, 2, 3), (0, 1, 2, 3)]
    # No realm every CPU runs: queue 0 is served only by a CPU that would serve nothing else.
    churner = '[[group]]\ncpus = [3]\nactivities = { rtt-churn = 1 }\n'
    w = load(tmp_path, HEAD + churner + realm("a", '"0-1"') + realm("b", "[2]"))
    assert w.queues == (1, 2) and [w.served_by(c) for c in range(4)] == [(1,), (1,), (2,), (0,)]


def test_workloads_show_names_the_cpus_of_a_realm(tmp_path: Path) -> None:
    """`workloads show` prints a realm's cpus as written, the CPUs of the run that run its vCPUs,
    and the ids this run does not have ("CPU" for one, "CPUs" for more); a realm without the key
    gets no such line."""
    text = describe(load(tmp_path, HEAD + realm("a", '"0-1"') + realm("b", "[1, 3, 6]") + realm("c")
                         + realm("d", "[2, 6, 7]")))
    lines = text.splitlines()
    assert '    cpus "0-1": its vCPUs run on CPUs 0-1 only' in lines, text
    assert "    cpus [1, 3, 6]: its vCPUs run on CPUs 1,3 only (CPU 6 not in this run)" in lines, text
    assert "    cpus [2, 6, 7]: its vCPUs run on CPU 2 only (CPUs 6-7 not in this run)" in lines, text
    assert sum("cpus" in line for line in lines) == 3, text


def test_workloads_show_says_plainly_when_a_realms_cpus_cover_the_whole_run(tmp_path: Path) -> None:
    """A realm whose cpus hold every CPU of the run ("0-3" of four, [0, 1, 2, 3, 9] with an id
    the run does not have, [0] on a one-CPU run): `workloads show` says every CPU of the run runs
    its vCPUs, as without the key, not "only". It said "its vCPUs run on CPUs 0-3 only", which
    reads as a restriction that is not there. (A line wider than 118 columns goes on, indented
    by 6: read here joined.)"""
    lines = describe(load(tmp_path, HEAD + realm("a", '"0-3"') + realm("b", "[0, 1, 2, 3, 9]"))).replace(
        "\n      ", " ").splitlines()
    assert '    cpus "0-3": its vCPUs run on every CPU of this run (CPUs 0-3), as without the key' in lines, lines
    assert ("    cpus [0, 1, 2, 3, 9]: its vCPUs run on every CPU of this run (CPUs 0-3), as without the key "
            "(CPU 9 not in this run)") in lines, lines
    one = describe(load(tmp_path, HEAD + realm("a", "[0]"), cpus=1)).splitlines()
    assert "    cpus [0]: its vCPUs run on every CPU of this run (CPU 0), as without the key" in one, one


def test_the_report_records_the_cpus_a_realm_is_kept_to(tmp_path: Path) -> None:
    """Four CPUs: a realm with cpus [1, 3, 9] is recorded (RealmOutcome.cpus, the JSON's "cpus")
    as kept to CPUs (1, 3); one with "0-3" or no cpus as None (every CPU of the run); CPU 2's
    private ripas-churn realm (past the templates) as (2,). On one CPU, every realm, CPU 0's
    private one too, as None (docs/report-schema.json says so)."""
    w = load(tmp_path, HEAD + realm("a", "[1, 3, 9]") + realm("b", '"0-3"') + realm("c"))
    assert [kept_to(w, r, 0) for r in range(3)] == [(1, 3), None, None]
    assert kept_to(w, 1 << 30, 2) == (2,) and kept_to(w, -1, 2) == (2,)
    one = load(tmp_path, HEAD + realm("a", "[0, 3]"), cpus=1)
    assert (kept_to(one, 0, 0), kept_to(one, -1, 0)) == (None, None)


@pytest.mark.multiprocess
def test_each_realm_is_entered_only_by_the_cpus_it_names(tmp_path: Path) -> None:
    """Four CPUs: realm a (2 RECs, REC 1 started by PSCI CPU_ON) on CPUs 0-1, b on CPUs 2-3, and
    lifecycle realm boot (turned off after 5 entries or by itself, rebuilt by CPU 3, its
    owner) on CPU 2 only. The trace's REC
    runs show each named realm entered only on its CPUs and every CPU entering something; the
    unnamed ones (boot's earlier generations, which the trace does not name) only on CPU 2."""
    path = tmp_path / "w.toml"
    # Timed, not counted: CPU 3 would otherwise end its steps before boot was ever done.
    path.write_text('seconds = 0.5\ncpus = 4\n'
                    '[[group]]\ncpus = "0-2"\nactivities = { run = 1 }\n'
                    '[[group]]\ncpus = [3]\nactivities = { run = 1, lifecycle = 1 }\n'
                    + realm("a", '"0-1"', "ripas-loop", "recs = 2\n") + realm("b", '"2-3"', "ripas-loop", "recs = 2\n")
                    + realm("boot", "[2]", "ripas-flip", "lifecycle = true\nlifetime = 5\n"))
    trace = tmp_path / "t.json"
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False, trace_path=str(trace)))
    assert report.ok, (report.problems, report.failures)
    # Rebuilt by CPU 3 at least twice: a generation it built ran (on CPU 2) until it was done.
    assert report.counters[3].get("realms built", 0) >= 2, report.counters
    ran: dict[str, set[int]] = collections.defaultdict(set)
    entries: collections.Counter[int] = collections.Counter()
    for e in json.loads(trace.read_text())["traceEvents"]:
        if e["ph"] == "X" and e["name"].startswith("REC run"):
            cpu = e["tid"] - 1
            realm_name = e["args"].get("realm", "").split(" ")[0].split("#")[0]
            ran[realm_name or "unnamed"].add(cpu)
            entries[cpu] += 1
    assert ran["a"] == {0, 1} and ran["b"] <= {2, 3} and ran["boot"] | ran["unnamed"] <= {2}, dict(ran)
    assert ran["boot"] | ran["unnamed"] and 3 in ran["b"], dict(ran)
    assert set(entries) == {0, 1, 2, 3}, entries
    # The JSON report records the CPUs each realm was kept to, every generation of boot included.
    kept = {r["name"].split("#")[0]: r["cpus"] for r in to_json(report)["realms"]}
    assert kept == {"a": [0, 1], "b": [2, 3], "boot": [2]}, kept
