"""The JSON and CSV views of a RunReport: one document, every figure derived once.

``to_json`` builds the document docs/report-schema.json describes ({"schema":
"rmm-mp-run-report/1", ...}); the text report (render_text) is drawn from the same document, so
the terminal and the file cannot disagree. Times are integer ns in "latency", "time_split" and
"locks", seconds (float) in "processes" and the run metadata.

Decisions the issue leaves open, recorded here and in docs/latency.md:
- "latency" holds an "all" record per call even when one CPU ran, so totals are always found
  by cpu == "all"; the text table leaves that duplicate row out.
- "time_split" covers RMI calls only: RSI and PSCI calls and REC runs happen inside an
  RMI_REC_ENTER, so counting them again would add the same time twice.
- "locks" has a record per (class, CPU) with at least one acquisition, an "all" CPU record per
  class, and class "all" records (per CPU and in total) summing every class.
- "invariants.violations" keeps the first MAX_VIOLATIONS; "violation_count" has them all.

This module owns the document's shape. It must not run anything or touch a machine.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from typing import Any

from rmm_mp.outpaths import replacing
from rmm_mp.stats import calls
from rmm_mp.stats import report as latency
from rmm_mp.stats.histogram import FLUSH_INTERVAL_NS
from rmm_mp.words import count as _count
from rmm_mp.workload.report import EXCEPTION_LOOP_FACTOR, EXCEPTION_LOOP_MIN, GuestOutput, LockClassStats, RunReport

SCHEMA = "rmm-mp-run-report/1"
MAX_VIOLATIONS = 100
MAX_HALF_WRITTEN_NAMED = 5
"""Half-written rows a CPU's warning names (a flush cut off between its two passes leaves every
slot it changed with a stale time split)."""
MAX_LOOPING_NAMED = 5
"""Realms the exception-loop warning names (a lifecycle run may have thousands of instances)."""


def oversubscription_warning(report: RunReport) -> str:
    # Says what to do as well as what is wrong: the p50 hardly moves (docs/latency.md,
    # "Oversubscription"); the tails need as many cores as CPU processes.
    fits = "1" if report.host_cores == 1 else f"{report.host_cores} or fewer"
    # The CPUs started, which ran on the cores (RunReport.oversubscribed): of how many, when some
    # never started.
    ran = _count(report.started_cpus, 'simulated CPU') + (
        f" (of {report.cpus}; {len(report.not_started)} never started)" if report.not_started else "")
    if not report.latency_recorded:
        # No latency was recorded (--no-latency): "latency includes ... for tail figures" spoke of
        # figures the report does not have. What was recorded and is skewed: the lock waits (a
        # holder's process waiting for a core holds its lock meanwhile) and the work done per
        # second of the run.
        return (f"{ran} on {_count(report.host_cores, 'host core')}: the lock waits include time a lock "
                f"holder's process was not scheduled, and each CPU did less work in the run's time; for figures "
                f"free of that, run with --cpus {fits}")
    return (f"{ran} on {_count(report.host_cores, 'host core')}: latency "
            f"includes time a CPU process was not scheduled (the tails and means more than the p50s); for tail "
            f"figures, run with --cpus {fits}")


def warnings(report: RunReport) -> list[str]:
    """What makes the figures less trustworthy than they look (shown as WARNING lines)."""
    out = []
    if report.oversubscribed:
        out.append(oversubscription_warning(report))
    if report.pinned:
        unpinned = sorted(cpu for cpu, u in report.usage.items() if u.pinned_core is None)
        if unpinned:
            cpus = ", ".join(str(c) for c in unpinned)
            which = f"CPU {cpus}: it ran" if len(unpinned) == 1 else f"CPUs {cpus}: they ran"
            out.append(f"pinning was asked (--pin) but was not possible for {which} unpinned")
    unpublished = sorted(f.cpu for f in report.failures if f.unpublished)
    if unpublished:
        # Such a process never made the flush that closing its CPU handle makes (docs/latency.md).
        cpus = ", ".join(str(c) for c in unpublished)
        its = "its" if len(unpublished) == 1 else "their"
        if report.latency_recorded:
            out.append(f"CPU {cpus} died without publishing {its} last figures: {its} latency and lock figures stop "
                       f"at {its} last flush (one about every {FLUSH_INTERVAL_NS // 1_000_000} ms), so {its} last "
                       f"calls are missing")
        else:
            out.append(f"CPU {cpus} died without publishing {its} lock figures (with --no-latency they are published "
                       f"only at the end): the lock table has none of {its} locks")
    out.extend(_half_written_warnings(report))
    # A close that failed after the result arrived: the CPU counts as returned (cpu_exit.close_machine).
    out.extend(f"CPU {cpu}: {what} (its result arrived and counts; its process wrote the traceback to stderr)"
               for cpu, what in sorted(report.cpu_warnings.items()))
    out.extend(report.close_warnings)
    looping = [r for r in report.realms if r.exception_loop]
    if looping:
        # A row of folded lifecycle instances names how many of them looped, each judged alone.
        named = ", ".join(f"{r.name} ({'' if r.instances == 1 else f'{r.looping:,} of them; in all '}"
                          f"{r.exceptions:,} exceptions, "
                          f"{_count(r.counters.get('entries', 0), 'REC entry', 'REC entries')})"
                          for r in looping[:MAX_LOOPING_NAMED])
        more = f" and {len(looping) - MAX_LOOPING_NAMED:,} more" if len(looping) > MAX_LOOPING_NAMED else ""
        count = sum(1 if r.instances == 1 else r.looping for r in looping)
        out.append(f"{_count(count, 'realm')} took more than {EXCEPTION_LOOP_FACTOR} exceptions per REC entry "
                   f"(and at least {EXCEPTION_LOOP_MIN}): {named}{more}; a guest doing so is likely stuck in an "
                   f"exception loop (vbar not set, an SEA at an EMPTY page, udf)")
    if report.trace_dropped:
        lost = ", ".join(f"CPU {cpu} {n:,}" for cpu, n in sorted(report.trace_dropped.items()))
        out.append(f"the trace holds only the newest {report.trace_capacity:,} records of each CPU, so its timeline "
                   f"starts late; older records were overwritten ({lost}; the file's otherData.dropped); to trace "
                   f"a run from its start, make it shorter (--seconds or --iterations)")
    if report.trace_left_out:
        left = ", ".join(f"CPU {cpu} {n:,}" for cpu, n in sorted(report.trace_left_out.items()))
        out.append(f"the trace leaves out {_count(sum(report.trace_left_out.values()), 'record')} that may be torn "
                   f"({left}; the file's otherData.left_out): a CPU process killed while writing one leaves it "
                   f"half old, half new")
    return out


def _half_written_warnings(report: RunReport) -> list[str]:
    """One warning per CPU with slots a flush left half written (CallStats.half_written): a CPU
    process killed while it flushed. Its other rows are whole, up to that flush."""
    out = []
    for cpu, per_slot in sorted(report.stats.items()):
        torn = [(slot, s) for slot, s in sorted(per_slot.items(), key=lambda item: calls.name(item[0]))
                if s.half_written()]
        if not torn:
            continue
        named = ", ".join(f"{calls.name(slot)} ({s.count:,} calls counted, {sum(s.buckets):,} in its histogram)"
                          if sum(s.buckets) != s.count else f"{calls.name(slot)} (its time split not updated)"
                          for slot, s in torn[:MAX_HALF_WRITTEN_NAMED])
        more = f" and {len(torn) - MAX_HALF_WRITTEN_NAMED:,} more" if len(torn) > MAX_HALF_WRITTEN_NAMED else ""
        out.append(f"CPU {cpu} died during a flush of its figures, so some are half written: {named}{more}; "
                   f"in those rows and their \"all\" rows the percentiles and the time split do not hold")
    return out


def _lock_record(cpu: int | str, cls: str, s: LockClassStats) -> dict[str, Any]:
    share = s.contended / s.acquired if s.acquired else 0.0
    return {"cpu": cpu, "class": cls, "acquired": s.acquired, "contended": s.contended,
            "contended_share": round(share, 6), "wait_ns": s.wait_ns, "max_wait_ns": s.max_wait_ns}


def _sum_locks(items: list[LockClassStats]) -> LockClassStats:
    return LockClassStats(sum(s.acquired for s in items), sum(s.contended for s in items),
                          sum(s.wait_ns for s in items), max((s.max_wait_ns for s in items), default=0))


def lock_records(locks: dict[int, dict[int, LockClassStats]]) -> list[dict[str, Any]]:
    """Per class (by class number): a record per CPU then "all"; then class "all" per CPU and in total."""
    out: list[dict[str, Any]] = []
    for cls in sorted({c for per_cpu in locks.values() for c in per_cpu}):
        name = latency.lock_class_name(cls)
        per_cpu = [(cpu, locks[cpu][cls]) for cpu in sorted(locks) if cls in locks[cpu]]
        out.extend(_lock_record(cpu, name, s) for cpu, s in per_cpu)
        out.append(_lock_record("all", name, _sum_locks([s for _, s in per_cpu])))
    if out:
        cpus = sorted(locks)
        out.extend(_lock_record(cpu, "all", _sum_locks(list(locks[cpu].values()))) for cpu in cpus)
        out.append(_lock_record("all", "all", _sum_locks([s for cpu in cpus for s in locks[cpu].values()])))
    return out


def _split_record(cpu: int | str, split: latency.TimeSplit) -> dict[str, Any]:
    return {"cpu": cpu, "calls": split.calls, "total_ns": split.total_ns, "el3_ns": split.el3_ns,
            "rmm_ns": split.rmm_ns, "lock_wait_ns": split.lock_wait_ns}


def time_split_records(report: RunReport) -> list[dict[str, Any]]:
    """Per CPU whose figures were read, then "all"; empty when there are none: latency not
    recorded (--no-latency), or no CPU's figures read (every CPU never started, or a signal
    skipped the read), where one "all" row of zeros read as a measured split of no calls."""
    if not report.latency_recorded or not report.stats:
        return []
    out = [_split_record(cpu, latency.time_split(report.stats[cpu])) for cpu in sorted(report.stats)]
    out.append(_split_record("all", latency.time_split(latency.merged(report.stats))))
    return out


def _invariants(report: RunReport) -> dict[str, Any] | None:
    inv = report.invariants
    if inv is None:
        return None
    return {"ok": inv.ok, "granules": inv.granules, "violation_count": len(inv.violations),
            "violations": [str(v) for v in inv.violations[:MAX_VIOLATIONS]], "state_counts": dict(inv.state_counts)}


def _output(out: GuestOutput | None) -> dict[str, Any] | None:
    if out is None:
        return None
    return {"console": out.console, "console_bytes": out.console_bytes,
            "log": [{"rec": rec, "values": list(values)} for rec, values in out.log], "log_count": out.log_count}


def _run(report: RunReport) -> dict[str, Any]:
    return {
        "workload": report.workload, "source": report.source, "platform": report.platform, "cpus": report.cpus,
        "seed": report.seed, "seconds": report.seconds, "iterations": report.iterations,
        "elapsed_s": round(report.elapsed_s, 6), "interrupted": report.interrupted,
        "total_calls": report.total_calls, "calls_per_second": round(report.calls_per_second, 1),
        "latency_recorded": report.latency_recorded, "pin_requested": report.pinned,
        "host": {"cores": report.host_cores, **report.host},
    }


def to_json(report: RunReport) -> dict[str, Any]:
    """The report as a JSON-ready document (docs/report-schema.json)."""
    records = latency.call_records(report.stats) if report.latency_recorded else []
    return {
        "schema": SCHEMA,
        **_run(report),
        "ok": report.ok,
        "warnings": warnings(report),
        "latency_unit": "ns",
        "latency": [asdict(r) for r in records],
        "time_split": time_split_records(report),
        "locks": lock_records(report.locks),
        "processes": [{"cpu": cpu, **report.usage[cpu].to_json()} for cpu in sorted(report.usage)],
        "realms": [{"name": r.name, "recs": r.recs, "ok": r.ok, "detail": r.detail, "counters": dict(r.counters),
                    "exceptions": r.exceptions, "output": _output(r.output), "output_dropped": r.output_dropped,
                    "cpus": None if r.cpus is None else list(r.cpus), "instances": r.instances}
                   for r in report.realms],
        "counters": [{"cpu": cpu, "values": dict(report.counters[cpu])} for cpu in sorted(report.counters)],
        "failures": [{"cpu": f.cpu, "how": f.how, "traceback": f.traceback,
                      "held_locks": [f"{pa:#x}" for pa in f.held_locks]} for f in report.failures],
        "problems": list(report.problems),
        "invariants": _invariants(report),
        "outputs": dict(report.outputs),
        "output_errors": list(report.output_errors),
        "not_done": list(report.not_done),
        "not_started": list(report.not_started),
    }


def write_json(report: RunReport, path: str) -> None:
    with replacing(path) as temp, open(temp, "w", encoding="utf-8") as out:
        json.dump(to_json(report), out, indent=2)
        out.write("\n")


CSV_TIME_FIELDS = frozenset(("p50", "p90", "p99", "p999", "max", "mean", "el3_mean", "rmm_mean", "lock_wait_mean"))
"""The latency record's fields that are times (ns): their CSV columns carry the unit."""
CSV_FIELDS = tuple(f"{name}_ns" if name in CSV_TIME_FIELDS else name for name in latency.RECORD_FIELDS)
"""The CSV's header: the JSON latency record's field names, each time with its unit, `p50_ns`. A
CSV has no latency_unit beside it, and a spreadsheet or pandas reader sees only the header."""


def write_csv(report: RunReport, path: str) -> None:
    """One row per latency record (the JSON "latency" fields, in order; times in ns, their
    columns named with the unit: CSV_FIELDS), header first."""
    with replacing(path) as temp, open(temp, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        if report.latency_recorded:
            for r in latency.call_records(report.stats):
                writer.writerow([getattr(r, name) for name in latency.RECORD_FIELDS])
