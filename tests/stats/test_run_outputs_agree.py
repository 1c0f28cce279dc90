"""One short `rmm-mp run` with every report file, cross-checked: the text report, the JSON, the
CSV and the trace say the same thing, and what they say is true of the calls the trace holds.

Scenario: the bundled quickstart (realms built, run, torn down; RTT and RIPAS churn; shared
mappings) on 2 CPU processes for a few hundred steps, with --json, --csv and --trace, through
click's runner. The trace holds every call (nothing dropped), so its exact durations are the raw
samples the histograms were built from; the test recomputes, independently of rmm_mp.stats:

- per (CPU, call) and for "all": count, max, mean (sum // count) exactly, and each percentile as
  the nearest-rank sample's bucket upper edge, capped at the maximum (docs/latency.md);
- the "all" records as the sums over CPUs; EL3 + RMM + lock wait against the mean; the time split
  as the sum of the RMI records; per CPU and lock class, the contended count, total and longest
  wait against the trace's lock-wait events; total_calls;
- the CSV rows are the JSON records (same columns, ns); the JSON validates against
  docs/report-schema.json; every text latency row is its JSON record in us (two decimals, a tie rounded up);
- the trace: one track per CPU, X events sorted by start, events of a track nested, never
  partly overlapping;
- what the trace cannot show: HOST step records against the CPUs' step counters, and REC runs
  (EXIT records) against the RMI_REC_ENTER calls that did not fail.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rmm_mp.cli import main
from schema_subset import errors

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report-schema.json").read_text())
PERCENTILES = (("p50", "50"), ("p90", "90"), ("p99", "99"), ("p999", "99.9"))
TEXT_ROW = re.compile(r"^(\S+)\s+(\d+|all)\s+([\d,]+)\s+([\d,]+)" + r"\s+([\d,]+\.\d\d)" * 6 + "$")


def _upper_edge(value: int) -> int:
    """The largest value of ``value``'s bucket: one bucket per ns below 64, then 32 per power of two."""
    if value < 64:
        return value
    shift = value.bit_length() - 6
    return (((value >> shift) + 1) << shift) - 1


def _percentile(samples: list[int], p: str) -> int:
    """The reported figure for sorted ``samples``: the nearest-rank value's bucket edge, capped at max."""
    rank = max(1, math.ceil(Fraction(p) * len(samples) / 100))
    return min(_upper_edge(samples[rank - 1]), samples[-1])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("outputs")
    result = CliRunner().invoke(main, ["run", "quickstart", "--cpus", "2", "--iterations", "150", "--json",
                                       str(d / "r.json"), "--csv", str(d / "r.csv"), "--trace", str(d / "t.json"),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    with open(d / "r.csv", newline="") as f:
        rows = list(csv.reader(f))
    return {"text": result.output, "doc": json.loads((d / "r.json").read_text()), "csv": rows,
            "trace": json.loads((d / "t.json").read_text())}


def _samples(trace: dict[str, Any]) -> dict[tuple[int | str, str], list[int]]:
    """{(cpu or "all", call): sorted durations in ns} of the trace's calls and REC runs."""
    out: dict[tuple[int | str, str], list[int]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X" and e["cat"] != "lock":
            ns = round(e["dur"] * 1000)
            call = e["name"].removeprefix("REC run -> ")
            out[(e["tid"] - 1, call)].append(ns)
            out[("all", call)].append(ns)
    return {key: sorted(v) for key, v in out.items()}


@pytest.mark.multiprocess
def test_records_are_true_of_the_traced_calls(outputs: dict[str, Any]) -> None:
    """Every RMI, RSI, PSCI and REC-run record (per CPU and "all") has the count, max, mean and
    percentiles of the trace's durations of that call; HOST steps, not traced, are left out."""
    doc, trace = outputs["doc"], outputs["trace"]
    assert trace["otherData"]["dropped"] == {"0": 0, "1": 0}
    samples = _samples(trace)
    checked = {r["kind"] for r in doc["latency"]}
    assert {"RMI", "RSI", "EXIT", "HOST"} <= checked
    recorded = set()
    for r in doc["latency"]:
        if r["kind"] == "HOST":
            continue
        key = (r["cpu"], r["call"])
        recorded.add(key)
        v = samples.get(key, [])
        assert r["count"] == len(v), r
        assert r["max"] == v[-1] and r["mean"] == sum(v) // len(v), r
        assert [r[k] for k, _ in PERCENTILES] == [_percentile(v, p) for _, p in PERCENTILES], r
    assert recorded == set(samples), set(samples) ^ recorded


@pytest.mark.multiprocess
def test_all_records_time_split_and_locks_add_up(outputs: dict[str, Any]) -> None:
    """"all" = the CPUs' records summed; EL3 + RMM + lock wait means fall 0-2 ns short of the mean,
    and are 0 outside RMI; the time split sums the RMI records; lock contention per CPU and class
    is the trace's lock-wait events; total_calls counts every per-CPU record."""
    doc, trace = outputs["doc"], outputs["trace"]
    per_cpu: dict[str, list[dict[str, Any]]] = defaultdict(list)
    totals = {}
    for r in doc["latency"]:
        if r["cpu"] == "all":
            totals[r["call"]] = r
        else:
            per_cpu[r["call"]].append(r)
        assert r["mean"] - 2 <= r["el3_mean"] + r["rmm_mean"] + r["lock_wait_mean"] <= r["mean"], r
        if r["kind"] != "RMI":
            assert r["el3_mean"] == r["lock_wait_mean"] == 0, r
    assert set(totals) == set(per_cpu)
    for call, rs in per_cpu.items():
        a = totals[call]
        assert a["count"] == sum(r["count"] for r in rs) and a["errors"] == sum(r["errors"] for r in rs)
        assert a["max"] == max(r["max"] for r in rs)
    assert doc["total_calls"] == sum(r["count"] for rs in per_cpu.values() for r in rs)
    for split in doc["time_split"]:
        assert split["total_ns"] == split["el3_ns"] + split["rmm_ns"] + split["lock_wait_ns"], split
        rmi = [r for r in doc["latency"] if r["kind"] == "RMI" and r["cpu"] == split["cpu"]]
        assert split["calls"] == sum(r["count"] for r in rmi)
        assert 0 <= split["total_ns"] - sum(r["mean"] * r["count"] for r in rmi) < split["calls"]
    waits: dict[tuple[int, str], list[int]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X" and e["cat"] == "lock":
            waits[(e["tid"] - 1, e["args"]["class"])].append(round(e["dur"] * 1000))
    for lock in doc["locks"]:
        if lock["cpu"] != "all" and lock["class"] != "all":
            w = waits.pop((lock["cpu"], lock["class"]), [])
            assert (lock["contended"], lock["wait_ns"], lock["max_wait_ns"]) == (len(w), sum(w), max(w, default=0))
    assert waits == {}, f"lock waits in the trace but not in the report: {waits}"
    for split in doc["time_split"]:
        if split["cpu"] != "all":
            assert split["lock_wait_ns"] == sum(lock["wait_ns"] for lock in doc["locks"]
                                                if lock["cpu"] == split["cpu"] and lock["class"] == "all")


@pytest.mark.multiprocess
def test_csv_json_and_text_agree(outputs: dict[str, Any]) -> None:
    """The JSON validates; the CSV is its latency records (header = the record's keys, ns); every
    latency row of the text is its JSON record in us (two decimals), and every record has its row but an "all"
    record of a call only one CPU made."""
    doc, rows, text = outputs["doc"], outputs["csv"], outputs["text"]
    assert errors(doc, SCHEMA) == [] and doc["latency_unit"] == "ns"
    assert [c.removesuffix("_ns") for c in rows[0]] == list(doc["latency"][0])   # times named with their unit
    assert rows[1:] == [[str(v) for v in r.values()] for r in doc["latency"]]
    records = {(str(r["cpu"]), r["call"]): r for r in doc["latency"]}
    shown = set()
    in_latency = False
    for line in text.splitlines():
        if line.startswith("Latency per call"):
            in_latency = True
        elif line.startswith("Time split"):
            break
        m = TEXT_ROW.match(line)
        if in_latency and m:
            r = records[(m[2], m[1])]
            shown.add((m[2], m[1]))
            assert [int(m[3].replace(",", "")), int(m[4].replace(",", ""))] == [r["count"], r["errors"]], line
            for shown_us, key in zip(m.groups()[4:], ("p50", "p90", "p99", "p999", "max", "mean")):
                # Two decimals of us: the nearest 10 ns, a value ending in 5 ns rounded up.
                assert Fraction(shown_us.replace(",", "")) * 1000 == (r[key] + 5) // 10 * 10, (line, key, r)
    cpus_of = defaultdict(int)
    for cpu, call in records:
        cpus_of[call] += cpu != "all"
    assert shown == {(cpu, call) for cpu, call in records if cpu != "all" or cpus_of[call] > 1}


@pytest.mark.multiprocess
def test_trace_tracks_are_sorted_and_nested(outputs: dict[str, Any]) -> None:
    """One named track per CPU; on each, X events by start, each inside the one it starts in
    (a REC run in its RMI_REC_ENTER, an RSI call in its REC run), never partly overlapping it."""
    trace = outputs["trace"]
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert names == {1: "CPU 0", 2: "CPU 1"}
    for tid in names:
        track = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["tid"] == tid]
        assert track and [e["ts"] for e in track] == sorted(e["ts"] for e in track)
        open_ends: list[int] = []
        for e in track:
            start = round(e["ts"] * 1000)
            end = start + round(e["dur"] * 1000)
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], e
            open_ends.append(end)


@pytest.mark.multiprocess
def test_host_steps_and_rec_runs_are_counted_once_each(outputs: dict[str, Any]) -> None:
    """The records the trace cannot check: per CPU, each HOST_<ACTIVITY> record counts the steps
    the CPU's counters say it made of that activity ("<activity> steps"), and the REC runs (EXIT
    records, every exit reason) are the RMI_REC_ENTER calls that did not fail: one run each."""
    doc = outputs["doc"]
    counters = {c["cpu"]: c["values"] for c in doc["counters"]}
    records = [r for r in doc["latency"] if r["cpu"] != "all"]
    hosts = [r for r in records if r["kind"] == "HOST"]
    assert hosts
    for r in hosts:
        activity = r["call"].removeprefix("HOST_").lower().replace("_", "-")
        assert r["count"] == counters[r["cpu"]].get(f"{activity} steps"), (r, counters[r["cpu"]])
    for cpu in counters:
        steps = sum(n for key, n in counters[cpu].items() if key.endswith(" steps") and not key.startswith("phase "))
        assert steps == sum(r["count"] for r in hosts if r["cpu"] == cpu), cpu
        enters = [r for r in records if r["cpu"] == cpu and r["call"] == "RMI_REC_ENTER"]
        runs = sum(r["count"] for r in records if r["cpu"] == cpu and r["kind"] == "EXIT")
        assert runs == sum(r["count"] - r["errors"] for r in enters), cpu
