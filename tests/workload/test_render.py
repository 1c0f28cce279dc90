"""The text report of a run (rmm_mp/workload/render.py format_report, drawn by render_text.py).

Scenarios, on hand-built reports (tests/stats/report_samples.py): the header names workload,
source, platform, CPUs, host cores, seed, time, rate, latency recording and pinning; every kind
of call gets its table with per-CPU rows and an "all" row only where more than one CPU made the
call, figures in us; the RMI time split per call and CPU and its shares ("-" for a CPU without RMI calls); lock contention per class and CPU;
CPU processes; WARNING lines for oversubscription and impossible pinning; the --no-latency
message instead of tables; realms capped with the rest counted; failures, problems, invariants,
outputs and the verdict; every line within the report's 118 columns.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rmm_mp.check import InvariantReport
from rmm_mp.cpu_outcome import CpuFailure, ProcessUsage
from rmm_mp.workload import realms as workload_realms
from rmm_mp.workload.render import format_report, to_json
from rmm_mp.workload.report import GuestOutput, LockClassStats, RealmOutcome
from realm_table import realm_rows
from stats.report_samples import DELEGATE, RTT, hand_built, slot_of, stats_of
from stats.schema_subset import errors

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "report-schema.json"

GOOD = dict(failures=(), problems=(), invariants=InvariantReport(4096, (), {"NS": 4096}),
            realms=(RealmOutcome("vm0", 2, True, "SYSTEM_OFF", {"exits": 40}),))


def _section(text: str, title: str) -> list[str]:
    """The lines of the section whose title starts with ``title``, up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def _row(lines: list[str], *first: str) -> list[str]:
    return next(line.split() for line in lines if line.split()[:len(first)] == list(first))


def test_header_says_what_ran() -> None:
    """A clean two-CPU report's first four lines: workload and source; platform, CPUs, cores, seed, time,
    calls and rate; latency recording and pinning; the host. It ends "result: OK", counting a warning where
    there is one, and one CPU reads in the singular."""
    text = format_report(hand_built(**GOOD))
    head = text.splitlines()[:4]
    assert head[0] == "workload smp-realms (workloads/smp-realms.toml)"
    assert head[1] == "platform host: 2 CPUs on 2 host cores, seed 7, ran 2.01 s (limit 2 s)"
    assert head[2] == "latency recorded: yes (200 calls, REC runs and host steps, 99/s); pinning: off"
    assert head[3] == "host: x86_64, Python 3.11.7, 2026-11-27 10:00:00 +0000"
    assert "WARNING" not in text and text.endswith("result: OK")
    assert format_report(hand_built(cpus=3, **GOOD)).endswith("result: OK (1 warning above)")
    # One CPU (the benchmark's and many a first run's) reads in the singular.
    one = format_report(hand_built(cpus=1, **GOOD)).splitlines()[1]
    assert one.startswith("platform host: 1 CPU on 2 host cores, seed 7,"), one
    # So does a run limited to one iteration (--iterations 1, a quick check of a workload).
    once = format_report(hand_built(seconds=None, iterations=1, **GOOD)).splitlines()[1]
    assert once.endswith("ran 2.01 s (limit 1 iteration)"), once
    both = format_report(hand_built(iterations=1_000, **GOOD)).splitlines()[1]
    assert both.endswith("ran 2.01 s (limit 2 s or 1,000 iterations)"), both
    # A limit of seconds is shown with its digits, not %g's six (100000.5 s read "limit 100000 s"),
    # grouped as the iterations are.
    odd = format_report(hand_built(seconds=100_000.5, **GOOD)).splitlines()[1]
    assert odd.endswith("(limit 100,000.5 s)"), odd


def test_a_run_of_under_10_ms_gives_its_time_in_ms() -> None:
    """A run of 3 iterations that took 0.27 ms: the header says "ran 0.27 ms", where it said
    "ran 0.00 s" beside a rate of thousands of calls a second; 0.01 s and more stays in s."""
    short = format_report(hand_built(seconds=None, iterations=3, elapsed_s=0.000272)).splitlines()[1]
    assert short.endswith(", ran 0.27 ms (limit 3 iterations)"), short
    edge = format_report(hand_built(elapsed_s=0.01)).splitlines()[1]
    assert ", ran 0.01 s (limit" in edge, edge


def test_header_limit_of_a_tenth_of_a_microsecond_has_no_exponent() -> None:
    """A run limited to `--seconds 1e-7`: the header's limit reads "0.0000001 s", as the other
    lengths the tool shows, where it read "1e-07 s"."""
    head = format_report(hand_built(seconds=1e-7)).splitlines()[1]
    assert head.endswith("(limit 0.0000001 s)"), head


def test_header_shows_the_host_load() -> None:
    """With the host's load averages recorded at the start and the end of the CPUs' run, the
    header's fifth line gives both, and stays within the 118 columns even with three-digit
    loads (it wraps); without them (the CPUs never started) there is no such line."""
    host = {"machine": "x86_64", "python": "3.11.7", "date": "2026-11-27 10:00:00 +0000",
            "load_start": [0.5, 0.25, 0.12], "load_end": [2.0, 1.0, 0.75]}
    head = format_report(hand_built(host=host, **GOOD)).splitlines()
    assert head[4] == ("host load (1, 5, 15-minute averages): 0.50 0.25 0.12 as the CPUs started, "
                       "2.00 1.00 0.75 as they ended")
    busy = {**host, "load_start": [123.45, 99.5, 100.0], "load_end": [150.25, 120.0, 101.0]}
    text = format_report(hand_built(host=busy, **GOOD))
    assert "123.45 99.50 100.00" in text and max(len(line) for line in text.splitlines()) <= 118
    assert "host load" not in format_report(hand_built(**GOOD))


def test_latency_tables_per_kind_in_us() -> None:
    """DELEGATE on CPUs 0 and 1 has an "all" row; UNDELEGATE (CPU 0 only) has none."""
    text = format_report(hand_built())
    rmi = _section(text, "RMI calls (EL3 entry to EL3 exit)")
    assert rmi[1].split() == ["call", "cpu", "count", "errors", "p50", "p90", "p99", "p99.9", "max", "mean"]
    assert _row(rmi, "RMI_GRANULE_DELEGATE", "0") == ["RMI_GRANULE_DELEGATE", "0", "100", "3", "2.62", "2.62",
                                                      "4.03", "50.00", "50.00", "3.20"]
    assert _row(rmi, "RMI_GRANULE_DELEGATE", "all")[2] == "140"
    assert [line.split()[1] for line in rmi if line.startswith("RMI_GRANULE_UNDELEGATE")] == ["0"]
    for title, call in [("RSI calls", "RSI_HOST_CALL"), ("PSCI calls", "PSCI_CPU_ON"),
                        ("REC runs by exit reason", "EXIT_HOST_CALL"), ("Host activities", "HOST_RUN")]:
        assert _row(_section(text, title), call, "0")[0] == call
    assert "percentiles are upper edges of histogram buckets" in text


def test_time_split_of_rmi_calls() -> None:
    """Mean per call in us and shares of the calls' time, per call and in total per CPU and overall."""
    split = _section(format_report(hand_built()), "Time split of RMI calls")
    delegate = _row(split, "RMI_GRANULE_DELEGATE", "all")
    assert delegate[2:] == ["140", "3.00", "0.79", "26.2", "2.10", "70.0", "0.11", "3.8"]
    total = _row(split, "all", "RMI", "calls", "all")
    assert total[4] == "194"
    assert abs(sum(float(total[i]) for i in (7, 9, 11)) - 100) < 0.3
    assert _row(split, "all", "RMI", "calls", "0")[4] == "153"


def test_time_split_has_a_row_per_call_and_cpu() -> None:
    """The split of one call on one CPU is in the text, as it is in the JSON and CSV records: a
    first-time user asking how much of a call's time on CPU 1 is EL3 found only its "all" row.
    DELEGATE (CPUs 0 and 1) has a row for each CPU and an "all" row; UNDELEGATE (CPU 0 only) has
    its CPU 0 row and no "all" row that would repeat it, as in the latency tables."""
    split = _section(format_report(hand_built()), "Time split of RMI calls")
    assert _row(split, "RMI_GRANULE_DELEGATE", "0")[2:] == ["100", "3.20", "0.80", "25.0", "2.24", "70.0", "0.16",
                                                             "5.0"]
    assert _row(split, "RMI_GRANULE_DELEGATE", "1")[2:] == ["40", "2.50", "0.75", "30.0", "1.75", "70.0", "0.00",
                                                             "0.0"]
    assert _row(split, "RMI_GRANULE_DELEGATE", "all")[2] == "140"
    assert _row(split, "RMI_GRANULE_UNDELEGATE", "0")[2] == "50"
    assert not any(line.split()[:2] == ["RMI_GRANULE_UNDELEGATE", "all"] for line in split)


def test_time_split_of_one_cpu_totals_on_its_cpu_row() -> None:
    """A one-CPU run: the split's rows are CPU 0's, the per-call rows and the totals alike, as the
    lock table's "all classes" row is; an "all RMI calls" row labelled "all" under per-call rows
    labelled "0" read as two different sets of calls (it repeated CPU 0's)."""
    report = hand_built(cpus=1, stats={0: hand_built().stats[0]})
    split = _section(format_report(report), "Time split of RMI calls")
    assert [line.split()[-9] for line in split[4:]] == ["0"] * (len(split) - 4), split
    assert _row(split, "all", "RMI", "calls", "0")[4] == "153"


def test_time_split_of_a_cpu_without_rmi_calls_has_no_means() -> None:
    """CPU 1 made no RMI call: its "all RMI calls" row counts 0 calls and shows "-" for each mean
    and share, as for the shares, not a mean of 0.00 us that no call took."""
    report = hand_built()
    split = _section(format_report(replace(report, stats={**report.stats, 1: {}})), "Time split of RMI calls")
    assert _row(split, "all", "RMI", "calls", "1")[4:] == ["0"] + ["-"] * 7


def test_lock_contention_per_class_and_cpu() -> None:
    """The lock section: per class and CPU the acquires, contended ones, their share, the total and the
    longest wait in us; an "all" row only for a class more than one CPU took, and totals over every class."""
    locks = _section(format_report(hand_built()), "Lock contention per granule class")
    assert _row(locks, "RTT", "all") == ["RTT", "all", "1,500", "35", "2.33", "200.00", "40.00"]
    assert _row(locks, "DATA", "1") == ["DATA", "1", "4", "1", "25.00", "0.90", "0.90"]
    assert not any(line.split()[:2] == ["DATA", "all"] for line in locks)  # one CPU: no total row
    assert _row(locks, "all", "classes", "all")[3] == "1,514"


def test_cpu_processes() -> None:
    """A pinned CPU's row in the CPU processes table: user and system seconds, involuntary and voluntary
    switches, peak RSS and private MiB, and its core. The switch columns say "switches" (they said
    "cs", which the table's title does not explain, next to "s" for seconds)."""
    usage = {0: ProcessUsage(1.5, 0.25, 12, 340, 60 << 20, 1, 20 << 20)}
    procs = _section(format_report(hand_built(pinned=True, usage=usage)), "CPU processes")
    assert procs[1].split() == ["cpu", "user", "s", "system", "s", "involuntary", "switches", "voluntary", "switches",
                                "peak", "RSS", "private", "core"]
    assert procs[3].split() == ["0", "1.50", "0.25", "340", "12", "60.0", "20.0", "1"]


def test_warnings_are_printed_near_the_top() -> None:
    """4 simulated CPUs on 2 cores, with pinning asked but not possible: both warnings come within
    the first nine lines of the report (the first, which says what to do, wrapped to two)."""
    text = format_report(hand_built(cpus=4, host_cores=2, pinned=True,
                                    usage={0: ProcessUsage(1.0, 0.0, 1, 1, 1 << 20, None, 20 << 20)}))
    warnings = [line for line in text.splitlines()[:9] if line.startswith(("WARNING: ", "    "))]
    assert warnings == [
        "WARNING: 4 simulated CPUs on 2 host cores: latency includes time a CPU process was not scheduled "
        "(the tails and means",
        "    more than the p50s); for tail figures, run with --cpus 2 or fewer",
        "WARNING: pinning was asked (--pin) but was not possible for CPU 0: it ran unpinned"]


def test_a_long_warning_is_wrapped_within_the_width() -> None:
    """Seven realms in an exception loop: the warning naming five of them (about 380 columns as
    one line) is printed as "WARNING: " and lines of at most 118 columns, the later ones indented
    by 4, that put together give the JSON's warning word for word. Before, it was one line."""
    many = tuple(RealmOutcome(f"vm#{n}", 1, True, "running", {"entries": 1}, exceptions=1000) for n in range(7))
    report = hand_built(realms=many)
    (warned,) = [w for w in to_json(report)["warnings"] if "exception loop" in w]
    lines = format_report(report).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WARNING: 7 realms"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
    assert end - start >= 3 and all(len(line) <= 118 for line in lines[start:end])
    assert " ".join(line.strip() for line in lines[start:end]) == f"WARNING: {warned}"


def test_no_latency_says_so_instead_of_empty_tables() -> None:
    """A --no-latency report says latency was not recorded, counts no calls and no rate, and has no
    latency tables or time split; the lock section is still there."""
    text = format_report(hand_built(latency_recorded=False, stats={}, **GOOD))
    assert "latency recorded: no (--no-latency): calls not counted; pinning: off" in text
    assert "calls/s" not in text and "/s)" not in text
    assert "Latency was not recorded (--no-latency): no per-call figures and no time split." in text
    assert "RMI calls (" not in text and "Time split" not in text
    assert "Lock contention per granule class" in text


def test_realms_are_capped_with_the_rest_counted() -> None:
    """30 ok realms and one failed: the failed one and 20 ok ones are shown, 10 are counted in a
    note wrapped to the report's 118 columns."""
    realms = tuple(RealmOutcome(f"vm#{n}", 1, True, "SYSTEM_OFF", {"exits": n}) for n in range(30))
    reason = "REC 0: RMI_REC_ENTER returned ERROR_REC (index 0) " + " ".join(["xxxxxxxxxx"] * 15)
    failed = RealmOutcome("vm#bad", 1, False, reason)
    section = _section(format_report(hand_built(realms=(*realms, failed))), "Realms: 30 of 31 ok")
    rows = realm_rows(section)
    names = [cells[0] for cells, _, _ in rows]
    assert names[0] == "vm#bad" and names[1:21] == [f"vm#{n}" for n in range(20)] and len(names) == 21
    assert " ".join(line.strip() for line in section[-2:]) == (
        "... and 10 more realms, all ok (in the JSON report: one row each, but a CPU's lifecycle "
        "instances after its first 128 of each outcome share a row per realm)")
    # The note is wrapped to the width: on one line it took 159 columns in a lifecycle run's report.
    assert all(len(line) <= 118 for line in section[-2:]) and section[-1].startswith("    "), section[-2:]
    assert rows[0][1] == reason  # a failed realm's detail is never clipped (wrapped in its column)


def test_a_wide_failed_realm_row_wraps_within_the_width() -> None:
    """A failed realm with a 110-character detail and a realm name of 32 characters plus
    instance and generation, next to an ok realm with a long counter list: every line of the
    table (header and rule too) is at most 118 columns; the failed realm's detail and all its
    counters are wrapped in their columns and put together give them whole; each heading is
    over its own dashes. Before, the failed row was printed on one line, 160-odd columns, and
    the header and rule followed it past the width."""
    name = "r-very-long-name-of-32-chars-abc[1]#123"
    reason = "REC 0: RMI_REC_ENTER returned ERROR_REC (index 0) " + " ".join(["xxxxxxxxxx"] * 5) + " /tmp/a/path"
    many = {f"counter{n}": 1000 + n for n in range(30)}
    failed = RealmOutcome(name, 1, False, reason, {"entries": 3, "exits": 5, **many})
    ok = RealmOutcome("vm0", 2, True, "SYSTEM_OFF", many)
    section = _section(format_report(hand_built(realms=(failed, ok))), "Realms: 1 of 2 ok")
    assert all(len(line) <= 118 for line in section), [len(line) for line in section]
    head, rule = section[1], section[2]
    for heading in head.split():
        start = head.index(heading)
        assert rule[start:start + len(heading)] == "-" * len(heading), heading
    (cells, detail, counters), (ok_cells, ok_detail, ok_counters) = realm_rows(section)
    assert cells == [name, "1", "0", "FAILED"] and detail == reason
    assert counters == ", ".join(f"{k} {v:,}" for k, v in failed.counters.items())
    assert ok_cells == ["vm0", "2", "0", "ok"] and ok_detail == "SYSTEM_OFF" and ok_counters.endswith(", ...")
    section = _section(format_report(hand_built(realms=(ok,))), "Realms: 1 of 1 ok")
    assert len(section[2]) <= 118 and len(section[3]) <= 118, section


def test_a_failed_realms_counter_wider_than_the_least_counters_column_fits() -> None:
    """A failed realm with a long detail (the detail column at its cap) and a counter wider than
    COUNTERS_MIN with its comma ("ripas_changes 54,321," is 21 columns): the detail column
    narrows so that the widest counter fits, and every line stays within 118 columns. It used
    to leave the counters 20 columns, and that line ran to 119."""
    reason = ("REC 0: RMI_REC_ENTER returned ERROR_REC (index 0) after the realm asked for a RIPAS change "
              "of 0x80000000")
    failed = RealmOutcome("ripas[0]#3", 1, False, reason, {"entries": 123456, "ripas_changes": 54321,
                                                            "ripas_destroyed": 12})
    section = _section(format_report(hand_built(realms=(failed,))), "Realms: 0 of 1 ok")
    assert all(len(line) <= 118 for line in section), [len(line) for line in section]
    (_, detail, counters), = realm_rows(section)
    assert detail == reason and counters == "entries 123,456, ripas_changes 54,321, ripas_destroyed 12"


def test_a_detail_word_wider_than_its_column_stays_whole() -> None:
    """A failed realm whose detail has a path wider than the detail column: the path is kept
    whole on a line of its own, which takes no counters (they go on the lines around it)."""
    path = "/tmp/" + "d" * 70 + "/att256-0-000000.cbor"
    failed = RealmOutcome("vm#bad", 1, False, f"saving the token failed: {path}: No such file", {"entries": 3})
    section = _section(format_report(hand_built(realms=(failed,))), "Realms: 0 of 1 ok")
    assert any(path in line for line in section)
    (_, detail, counters), = realm_rows(section)
    assert detail == failed.detail and counters == "entries 3"


def test_an_ok_realms_clipped_line_keeps_its_detail() -> None:
    """An ok realm with a long counter list: its line is clipped to the width, and what is cut is
    the end of the counters, not how the realm ended."""
    counters = {f"counter{n}": 1000 + n for n in range(20)}
    realm = RealmOutcome("vm#0", 4, True, "turned itself off, reported pass (detail 0x0)", counters)
    section = _section(format_report(hand_built(realms=(realm,))), "Realms: 1 of 1 ok")
    assert section[1].split() == ["realm", "RECs", "exceptions", "result", "detail", "counters"]
    line = section[3]
    assert len(line) <= 120 and line.endswith(", ...")
    assert "turned itself off, reported pass (detail 0x0)" in line and "counter0 1,000" in line
    # Cut after a whole counter: the last one shown has its full value (counterN 1,00N).
    last = line.removesuffix(", ...").rsplit(", ", 1)[1]
    name, value = last.split()
    assert value == f"{counters[name]:,}", line


def test_an_ok_realm_with_a_long_name_keeps_its_whole_detail() -> None:
    """An ok lifecycle instance of a 32-character name whose detail ends with a 64-bit value:
    its detail is wrapped in its column, whole ("(detail 0xffffffff..." cut at the width read as
    another value), every line within 118 columns, its counters after it cut after a whole
    counter or to "..." (a realm with no counters keeps its "-")."""
    detail = "turned itself off, reported pass (detail 0xffffffffffffffff)"
    realm = RealmOutcome("r-very-long-name-of-32-chars-abc[1]#123", 1, True, detail,
                         {"entries": 57, "mmio_writes": 52, "mmio_reads": 1234567})
    section = _section(format_report(hand_built(realms=(realm,))), "Realms: 1 of 1 ok")
    assert all(len(line) <= 118 for line in section), section
    (_, got, counters), = realm_rows(section)
    assert got == detail and "0xffffffffffffffff)" in "".join(section)
    assert counters.endswith("...") and "mmio_reads" not in counters
    bare = RealmOutcome(realm.name, 1, True, detail, {})
    (_, got, counters), = realm_rows(_section(format_report(hand_built(realms=(bare,))), "Realms: 1 of 1 ok"))
    assert got == detail and counters == "-"      # no counters: not "..." as if some were cut


def test_exceptions_are_shown_and_a_realm_in_an_exception_loop_is_warned_about() -> None:
    """Each realm's exceptions are a column of the realm table and a JSON field; a realm with at
    least 64 exceptions and more than 4 per REC entry gets a WARNING naming it (one with 64 in 16
    entries, or 63 in 1, does not); past 5 such realms the warning counts the rest."""
    realms = (RealmOutcome("spin", 1, True, "running when the run ended (10 REC entries)", {"entries": 10},
                           exceptions=50_000),
              RealmOutcome("fine", 1, True, "turned itself off", {"entries": 16}, exceptions=64),
              RealmOutcome("few", 1, True, "turned itself off", {"entries": 1}, exceptions=63))
    report = hand_built(realms=realms)
    doc = to_json(report)
    assert [r["exceptions"] for r in doc["realms"]] == [50_000, 64, 63]
    loop = [w for w in doc["warnings"] if "exception loop" in w]
    assert loop == ["1 realm took more than 4 exceptions per REC entry (and at least 64): spin (50,000 exceptions, "
                    "10 REC entries); a guest doing so is likely stuck in an exception loop (vbar not set, an SEA at "
                    "an EMPTY page, udf)"]
    text = format_report(report)
    assert f"WARNING: {loop[0]}" in text.replace("\n    ", " ")     # wrapped to the width
    section = _section(text, "Realms: 3 of 3 ok")
    assert section[3].split()[:4] == ["spin", "1", "50,000", "ok"] and section[4].split()[:3] == ["fine", "1", "64"]
    many = tuple(RealmOutcome(f"vm#{n}", 1, True, "running", {"entries": 1}, exceptions=1000) for n in range(7))
    (warned,) = [w for w in to_json(hand_built(realms=many))["warnings"] if "exception loop" in w]
    assert warned.startswith("7 realms took") and "vm#4 (1,000 exceptions, 1 REC entry) and 2 more;" in warned


def test_a_row_of_folded_instances_is_warned_about_when_one_of_them_looped() -> None:
    """Rows of lifecycle instances a CPU did not list one by one (realms.Folded, merged over two
    CPUs) are judged instance by instance for the exception-loop warning: 100 instances of 5
    exceptions in 1 REC entry each (500 in 100 in all, none a loop alone) are not warned about;
    one instance of 1,000 exceptions in 2 entries among 999 quiet ones of 3 entries (1,000 in
    2,999 in all) is, as "1 realm", the row saying how many of its instances looped. Before, the
    warning read the row's sums as one realm's: the first was warned about, the second not."""
    Finished, Folded = workload_realms.Finished, workload_realms.Folded

    def instance(n: int, exceptions: int, entries: int) -> workload_realms.Finished:
        return Finished(f"vm#{n}", 1, 0, n, "SYSTEM_OFF", "SYSTEM_OFF", 0, (0, 0), {"entries": entries},
                        exceptions=exceptions)

    def fold(name: str, *done: workload_realms.Finished) -> RealmOutcome:
        per_cpu = [Folded(0, name, 1, True), Folded(0, name, 1, True)]
        for n, f in enumerate(done):
            per_cpu[n % 2].add(f, "")
        merged = Folded(0, name, 1, True)
        for part in per_cpu:
            merged.merge(part)
        return workload_realms.folded_outcome(merged)

    handled = fold("handled", *(instance(n, 5, 1) for n in range(100)))
    assert (handled.instances, handled.exceptions, handled.counters["entries"]) == (100, 500, 100)
    assert not [w for w in to_json(hand_built(realms=(handled,)))["warnings"] if "exception loop" in w]
    one_loop = fold("one", instance(0, 1000, 2), *(instance(n, 0, 3) for n in range(1, 1000)))
    (warned,) = [w for w in to_json(hand_built(realms=(handled, one_loop)))["warnings"] if "exception loop" in w]
    assert warned.startswith("1 realm took more than 4 exceptions per REC entry (and at least 64): "
                             "one (1,000 instances) (1 of them; in all 1,000 exceptions, 2,999 REC entries);"), warned


def test_a_realm_not_reported_shows_its_exceptions_as_unknown() -> None:
    """A realm whose owner CPU returned no result (realms.unreported): nobody read its RD, so
    its exceptions are unknown, not none: "?" in the realm table, null in the JSON report, and
    no exception-loop warning, next to a realm that took none (0)."""
    report = hand_built(realms=(workload_realms.unreported("lost", 2, 1),
                                RealmOutcome("calm", 1, True, "turned itself off", {"entries": 3})))
    doc = to_json(report)
    assert [r["exceptions"] for r in doc["realms"]] == [None, 0]
    assert not [w for w in doc["warnings"] if "exception loop" in w]
    section = _section(format_report(report), "Realms: 1 of 2 ok")
    rows = realm_rows(section)
    assert rows[0][0] == ["lost", "2", "?", "FAILED"], section
    assert rows[1][0] == ["calm", "1", "0", "ok"], section


def test_long_console_lines_are_cut_into_pieces_within_the_width() -> None:
    """A failed realm whose console has a 300-character line (an ESC at the first cut, a tab
    before it), a short line and an empty one: no line of its guest output is wider than 118
    columns (the report's width); the long line goes on after "  + " in pieces that put together
    give the line as printed (the tab as spaces, the ESC as \\x1b, never cut in two); the others
    are one line each. Before, the long line was printed whole, 300-odd columns."""
    long = "\t" + "a" * 105 + "\x1b" + "b" * 193
    out = GuestOutput(long + "\nshort\n\nend", len(long) + 11, (), 0)
    realm = RealmOutcome("talks", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    section = _section(format_report(hand_built(realms=(realm,))), "Guest output of talks")
    body = section[1:]
    assert all(len(line) <= 118 for line in body), [len(line) for line in body]
    assert [line[:4] for line in body] == ["  | ", "  + ", "  + ", "  | ", "  | ", "  | "], body
    whole = "".join(line[4:] for line in body[:3])
    assert whole == " " * 8 + "a" * 105 + "\\x1b" + "b" * 193
    assert body[0] == "  | " + " " * 8 + "a" * 105 and body[1].startswith("  + \\x1b")
    assert body[3:] == ["  | short", "  | ", "  | end"]


def test_long_console_lines_are_cut_between_characters_with_their_marks_in_columns() -> None:
    """A failed realm's console lines cut to the report's width (114 columns after "  | "), in
    terminal columns: an 'e' + U+0301 (combining acute) ending in column 114 stays whole, its
    accent not moved to the next piece; a thumbs-up with a skin tone (U+1F44D U+1F3FD, two
    columns) ending in column 114 stays whole; 57 CJK characters fill a piece (114 columns);
    a tab after two CJK characters and an accented letter stops at column 8 by columns (2 + 2 +
    1 + 3 spaces), not by characters (4, then 4 spaces); a ZWJ sequence shows its joiner escaped (\\u200d, as any
    character Python does not print) and is cut only between units. Before, the accent began the
    next piece, the skin tone was cut from its thumb, and the tab went a column too far."""
    cjk = "\u4e2d"
    lines = ["a" * 113 + "e\u0301" + "b" * 3,
             "a" * 112 + "\U0001F44D\U0001F3FD" + "c",
             cjk * 58,
             cjk * 2 + "e\u0301\tX",
             "x" * 110 + "\U0001F468\u200d\U0001F469"]
    text = "\n".join(lines) + "\n"
    out = GuestOutput(text, len(text.encode()), (), 0)
    realm = RealmOutcome("marks", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    body = _section(format_report(hand_built(realms=(realm,))), "Guest output of marks")[1:]
    assert body == ["  | " + "a" * 113 + "e\u0301", "  + bbb",
                    "  | " + "a" * 112 + "\U0001F44D\U0001F3FD", "  + c",
                    "  | " + cjk * 57, "  + " + cjk,
                    "  | " + cjk * 2 + "e\u0301" + " " * 3 + "X",
                    "  | " + "x" * 110 + "\U0001F468", "  + \\u200d\U0001F469"], body


def test_console_characters_that_are_not_printable_are_escaped_as_python_writes_them() -> None:
    """A failed realm's console with a C1 control (U+009B, a terminal's CSI), a bidi override,
    a zero-width space, DEL and U+E0001 (a tag character beyond U+FFFF): each is shown escaped,
    the last as \\U000e0001, and the line holds nothing that is not printable. U+E0001 was shown
    as \\ue0001, which reads as U+E000 and a digit 1."""
    out = GuestOutput("\x9b2J \u202eRLO \u200bZ \x7f \U000e0001!\n", 20, (), 0)
    realm = RealmOutcome("odd", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    body = _section(format_report(hand_built(realms=(realm,))), "Guest output of odd")[1:]
    assert body == ["  | \\x9b2J \\u202eRLO \\u200bZ \\x7f \\U000e0001!"], body
    assert body[0].isprintable()


def test_a_mark_right_after_an_escape_is_escaped_too() -> None:
    """A failed realm's console with BEL followed by U+0301 (combining acute), then another
    U+0301, then ESC followed by U+FE0F (a variation selector) and U+E0100 (one beyond U+FFFF):
    BEL shows as \\x07, and each mark after it is shown escaped (\\u0301, \\ufe0f,
    \\U000e0100), since drawn as it is, the mark would sit on the escape's last character (the
    7) as if the guest had printed an accented digit. A mark after a letter still extends it.
    Before, the accent was appended to the escape as it is."""
    out = GuestOutput("\x07\u0301\u0301e\u0301 \x1b\ufe0f\U000e0100\n", 18, (), 0)
    realm = RealmOutcome("bel", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    body = _section(format_report(hand_built(realms=(realm,))), "Guest output of bel")[1:]
    assert body == ["  | \\x07\\u0301\\u0301e\u0301 \\x1b\\ufe0f\\U000e0100"], body


def test_a_console_carriage_return_is_escaped_as_python_writes_it() -> None:
    """A failed realm's console with CRLF line ends, a form feed and a vertical tab: the
    carriage return is shown as Python writes it, \\r (the docs promise Python's escapes), the
    other two as \\x0c and \\x0b, which Python writes too. It was shown as \\x0d, which
    Python never writes for a carriage return."""
    out = GuestOutput("one\r\ntwo\x0c\x0b\r\n", 12, (), 0)
    realm = RealmOutcome("crlf", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    body = _section(format_report(hand_built(realms=(realm,))), "Guest output of crlf")[1:]
    assert body == ["  | one\\r", "  | two\\x0c\\x0b\\r"], body
    assert body == [f"  | {repr(line)[1:-1]}" for line in ("one\r", "two\x0c\x0b\r")]


def test_a_console_backslash_is_shown_doubled_so_that_an_escape_is_unambiguous() -> None:
    """A failed realm's console holds the text \\x1b (a backslash, x, 1, b) and then an ESC:
    the text report shows the backslash doubled (\\\\x1b) and the ESC as \\x1b, so the two
    read differently; the JSON keeps the console as the guest wrote it. Before, both were shown
    as \\x1b, and a guest printing the text looked like one printing ESC."""
    out = GuestOutput("\\x1b \x1b \\\n", 10, (), 0)
    realm = RealmOutcome("slash", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    report = hand_built(realms=(realm,))
    body = _section(format_report(report), "Guest output of slash")[1:]
    assert body == ["  | \\\\x1b \\x1b \\\\"], body
    assert to_json(report)["realms"][0]["output"]["console"] == "\\x1b \x1b \\\n"


def test_a_console_line_of_wide_characters_is_cut_by_the_columns_it_takes() -> None:
    """A failed realm's console line of 200 CJK characters (U+4E2D, two terminal columns each)
    after "ab": its pieces take at most 114 columns after "  + " or "  | " counting each such
    character as two (57 to a piece, the first piece 56 and "ab"), and put together they give the
    line. Before, a character counted as one column: a piece of 114 of them took 228."""
    wide = "ab" + "\u4e2d" * 200
    out = GuestOutput(wide + "\n", len(wide.encode()) + 1, (), 0)
    realm = RealmOutcome("wide", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    body = _section(format_report(hand_built(realms=(realm,))), "Guest output of wide")[1:]
    assert "".join(line[4:] for line in body) == wide
    assert [len(line) - 4 for line in body] == [58, 57, 57, 30], body  # characters, not columns
    assert all(4 + 2 * line.count("\u4e2d") + len(line[4:].replace("\u4e2d", "")) <= 118 for line in body)


def test_a_guest_output_title_too_long_for_the_width_is_wrapped() -> None:
    """A failed realm named lifecycle#1234 whose guest wrote 2,345,678 console bytes and 1,234
    LOG records: the block's title, which says both rings showed only their last entries, is 132
    columns on one line; it is wrapped within 118 on whole words (the name whole on the first
    line), later lines indented by 4, and the console follows it. It was one line before."""
    out = GuestOutput("stuck\n", 2_345_678, tuple((0, (1, 2, 3, 4)) for _ in range(8)), 1234)
    realm = RealmOutcome("lifecycle#1234", 1, False, "the guest reported failure code 5 (detail 0x0)", {}, out)
    section = _section(format_report(hand_built(realms=(realm,))), "Guest output of lifecycle#1234: console")
    title = [line for line in section if not line.startswith(("  | ", "  LOG"))]
    assert len(title) == 2 and title[1].startswith("    ") and not title[1].startswith("     "), section
    assert all(len(line) <= 118 for line in section), [len(line) for line in section]
    assert " ".join(line.strip() for line in title) == (
        "Guest output of lifecycle#1234: console (2,345,678 bytes written, up to the last 1,024 shown), LOG "
        "(1,234 records, the last 8 shown)")
    assert section[len(title)] == "  | stuck"


def test_failed_realms_whose_output_was_not_kept_are_named_in_a_note() -> None:
    """Seven failed lifecycle instances whose CPU had kept enough guest output (output_dropped)
    and one failed realm with its output: the JSON says output_dropped per realm; the text has
    the one realm's output block, then a note counting the seven and naming the first five, within
    the width. A report with no such realm has no note. Before, those realms showed no output and
    nothing said why."""
    failed = "the guest reported failure code 5 (detail 0x0)"
    dropped = tuple(RealmOutcome(f"bad#{n}", 1, False, failed, {}, output_dropped=True) for n in range(20, 27))
    kept = RealmOutcome("bad#3", 1, False, failed, {}, GuestOutput("stuck\n", 6, (), 0))
    report = hand_built(realms=(kept, *dropped))
    assert [r["output_dropped"] for r in to_json(report)["realms"]] == [False] + [True] * 7
    text = format_report(report)
    note = _section(text, "Guest output not kept")
    assert " ".join(line.strip() for line in note) == (
        "Guest output not kept of 7 failed realms (a CPU keeps it for the first 16 lifecycle instances that fail on "
        "it): bad#20, bad#21, bad#22, bad#23, bad#24 and 2 more")
    assert all(len(line) <= 118 for line in note)
    assert "  | stuck" in _section(text, "Guest output of bad#3")
    assert "Guest output not kept" not in format_report(hand_built(realms=(kept,)))


def test_rows_of_folded_lifecycle_instances_count_every_instance() -> None:
    """One listed instance and two rows of instances a CPU did not list one by one (realms.Folded):
    500 that passed and 40 that failed. The JSON gives each row's instances (1, 500, 40) and
    validates; the text counts instances, not rows ("Realms: 501 of 541 ok", the verdict's "40
    realms failed", "Guest output not kept of 40 failed realms"), and each folded row says what
    it stands for, the failed one with its first instance's failure."""
    Folded = workload_realms.Folded
    listed = RealmOutcome("vm#1", 1, True, "turned itself off", {"entries": 2})
    passed = workload_realms.folded_outcome(Folded(0, "vm", 1, True, 500, {"entries": 900}, 0, "vm#130", "vm#640"))
    failed = workload_realms.folded_outcome(Folded(
        1, "bad", 1, False, 40, {"entries": 40}, 0, "bad#200: the guest reported failure code 7 (detail 0x55)", "bad#300"))
    report = hand_built(realms=(listed, passed, failed))
    doc = to_json(report)
    assert [(r["name"], r["instances"], r["ok"]) for r in doc["realms"]] == [
        ("vm#1", 1, True), ("vm (500 instances)", 500, True), ("bad (40 instances)", 40, False)]
    assert errors(doc, json.loads(SCHEMA.read_text())) == []
    text = format_report(report)
    assert "Realms: 501 of 541 ok" in text and text.splitlines()[-1].startswith("result: FAILED: 40 realms failed")
    assert "Guest output not kept of 40 failed realms" in text
    assert "500 more instances of vm, not listed one by one, all ok" in passed.detail
    assert "40 more instances of bad, not listed one by one, all failed; the first, bad#200: the guest reported " \
           "failure code 7" in failed.detail


def test_host_activity_counters_wrap_between_counters_not_inside_a_name() -> None:
    """A CPU whose counters run past the width wraps on whole words: a hyphenated counter name
    such as "rtt-churn steps" is never cut at its hyphen (a quickstart run printed "rtt-" at the end
    of one line and "churn steps 352" on the next), nor parted from its value: every counter is on
    one line, name and value."""
    values = {"REC entries": 2323, "pages assigned": 3074, "pages destroyed": 2527, "queue empty": 310,
              "rtt-churn misses": 1224, "rtt-churn steps": 352, "rtt-churn successes": 5613, "run steps": 2633,
              "tables created": 7, "tables destroyed": 2, "tables folded": 3}
    for shift in range(40):  # a first counter of 0 to 43 columns moves the hyphens over the break
        counters = {0: {**({"x" * shift: 1} if shift else {}), **values}}
        lines = _section(format_report(hand_built(counters=counters)), "Host activity counters per CPU")[1:]
        assert all(not line.endswith("-") and len(line) <= 118 for line in lines), lines
        for name, value in values.items():
            assert any(f"{name} {value:,}" in line for line in lines), (shift, name, lines)


def test_failures_problems_invariants_outputs_and_verdict() -> None:
    """A failed, interrupted run: the CPU failure with its held locks and traceback, the problem, the
    violation, the files written, INTERRUPTED in the header and a verdict listing every cause; a report
    whose invariants were not checked fails for that."""
    text = format_report(hand_built(interrupted=True))
    assert "  CPU 1 raised RuntimeError; locks still held: 0x88012000\n  Traceback" in text
    assert "  vm1 did not reach SYSTEM_OFF" in text
    assert "invariants: 1 invariant violation:\n[lock-held] granule 0x88012000: locked by CPU 1" in text
    assert "Written: json out/report.json, trace out/trace.json" in text
    assert "INTERRUPTED" in text.splitlines()[4]
    assert text.splitlines()[-1] == ("result: FAILED: 1 realm failed, 1 CPU process failed, 1 problem, "
                                     "1 invariant violation, interrupted")
    unchecked = format_report(replace(hand_built(**GOOD), invariants=None))
    assert "invariants: not checked" in unchecked and unchecked.endswith("result: FAILED: invariants not checked")


def test_cpu_failures_say_why_the_cpus_were_asked_to_stop() -> None:
    """A timed run whose CPUs did not all reach the start barrier, or were still running after its
    end, is stopped by the parent ("time is up (...)", host.stopped_by). The killed CPU's line says
    only that it did not stop "of being asked"; the text report used to leave out why it was asked
    (docs/workloads.md quotes the reason), so a run that never started read as a mystery. The reason
    now heads the CPU failures section; a run stopped by Ctrl-C keeps its INTERRUPTED header only."""
    stuck = CpuFailure(1, "did not stop within 10 s of being asked and was terminated", "", ())
    why = "time is up (CPUs not all at the start barrier 60 s after they were started)"
    report = hand_built(failures=(stuck,), host={**hand_built().host, "stopped_by": why})
    assert _section(format_report(report), "CPU failures")[1:] == [
        f"  the CPUs were asked to stop: {why}",
        "  CPU 1 did not stop within 10 s of being asked and was terminated; locks still held: none"]
    ctrl_c = hand_built(failures=(stuck,), interrupted=True,
                        host={**hand_built().host, "stopped_by": "interrupted (Ctrl-C)"})
    assert _section(format_report(ctrl_c), "CPU failures")[1:] == [
        "  CPU 1 did not stop within 10 s of being asked and was terminated; locks still held: none"]


def test_a_cpu_that_returned_nothing_is_named_in_the_process_and_counter_sections() -> None:
    """CPU 1 was killed: it measured no process figures and returned no counters. The CPU process
    table and the host activity counters used to leave it out without a word, one row short of the
    header's CPUs; each now has a line naming it and pointing at the CPU failures."""
    killed = CpuFailure(1, "was killed by SIGKILL", "", ())
    base = hand_built()
    report = hand_built(failures=(killed,), usage={0: base.usage[0]}, counters={0: base.counters[0]})
    text = format_report(report)
    assert _section(text, "CPU processes")[-1] == \
        "cpu 1: no figures: its process failed before it measured itself (CPU failures below)"
    assert _section(text, "Host activity counters per CPU")[1:] == [
        "cpu 0: realms created 3, rec entries 120", "cpu 1: none: it returned no result (CPU failures below)"]
    nothing = format_report(hand_built(failures=(killed, replace(killed, cpu=0)), usage={}, counters={}))
    assert _section(nothing, "CPU processes")[1:] == [
        "cpu 0: no figures: its process failed before it measured itself (CPU failures below)",
        "cpu 1: no figures: its process failed before it measured itself (CPU failures below)"]


def test_the_realm_tables_rule_keeps_to_the_width() -> None:
    """An ok realm whose counter list runs to 400-odd columns: its row is clipped to the width,
    and so is the dashed rule under the header, which spans the counters column (it was as wide
    as the whole list, 229 columns under `rmm-mp run quickstart`'s loop realm)."""
    counters = {f"counter{n}": 1000 + n for n in range(30)}
    realm = RealmOutcome("vm#0", 4, True, "turned itself off, reported pass (detail 0x0)", counters)
    section = _section(format_report(hand_built(realms=(realm,))), "Realms: 1 of 1 ok")
    rule = section[2]
    assert set(rule) == {"-", " "} and rule.startswith("-----") and rule.endswith("-"), rule
    assert len(rule) <= 118 and len(section[3]) <= 118, [len(line) for line in section]


def test_lines_fit_in_118_columns() -> None:
    """A full report, one of 8 CPUs on 2 cores (with its warning) and one without latency: no line of
    their text is longer than the report's width, 118 columns (the latency section's title was 120:
    the test allowed 120)."""
    for report in (hand_built(), hand_built(cpus=8, host_cores=2), hand_built(latency_recorded=False)):
        long = [line for line in format_report(report).splitlines() if len(line) > 118]
        assert long == [], long


def test_a_realm_row_says_its_token_was_not_saved_and_why() -> None:
    """An attest instance whose token verified but could not be written to --save-tokens'
    directory (it was removed during the run): its row stays ok (the realm did its part; the
    file is a report file not written, which fails the run) but its detail says saving failed,
    with the reason, in the text and the JSON. A saved one names its file. The row of folded
    instances gives the first reason beside how many could not be written. Before, the row of an
    unsaved token read "token of 1,028 bytes verified", as in a run without --save-tokens, and
    the folded row gave the count alone."""
    Finished, Folded = workload_realms.Finished, workload_realms.Folded
    why = "/tmp/gone/att256-0-000000.cbor: No such file or directory"

    def instance(n: int, **token: object) -> workload_realms.Finished:
        return Finished(f"att256[0]#{n}", 1, 0, n, "DONE", "SYSTEM_OFF", 1, (0, 0x404), {"entries": 9},
                        token=1028, **token)  # type: ignore[arg-type]

    unsaved = workload_realms.outcome(instance(0, token_write_error=why), [], False)
    saved = workload_realms.outcome(instance(1, token_file="/tmp/t/att256-0-000001.cbor"), [], False)
    assert unsaved.ok and saved.ok
    assert unsaved.detail.endswith(f"; token of 1,028 bytes verified, but saving it failed: {why}"), unsaved.detail
    assert saved.detail.endswith("; token of 1,028 bytes verified, saved as /tmp/t/att256-0-000001.cbor"), saved.detail
    fold = Folded(0, "att256", 1, True)
    for f in (instance(2, token_write_error=why), instance(3, token_write_error="other")):
        fold.add(f, "")
    folded = workload_realms.folded_outcome(fold)
    assert folded.detail.endswith(f"0 tokens saved to --save-tokens' directory, 2 could not be written "
                                  f"(the first: {why})"), folded.detail
    doc = to_json(hand_built(realms=(unsaved, folded)))
    assert [r["detail"] for r in doc["realms"]] == [unsaved.detail, folded.detail]
    (_, detail, _), = realm_rows(_section(format_report(hand_built(realms=(unsaved,))), "Realms: 1 of 1 ok"))
    assert detail.endswith(f"but saving it failed: {why}")


def test_the_written_line_wraps_within_the_width_and_keeps_each_name_whole() -> None:
    """Tokens saved to a directory of 30 characters and a JSON file: the "Written:" line with the
    no-token note was 157 columns, past the report's 118 (129 in a real quickstart run with
    --save-tokens and --json). Now it wraps as a warning does (later lines indented by 4), in the
    note or between files, never inside "tokens PATH" or "json PATH", even for a path with a
    space; one line as before when it fits."""
    report = hand_built(outputs={"tokens": "/tmp/a directory/of some tokens", "json": "/tmp/run report.json"})
    written = _section(format_report(report), "Written: ")
    assert len(written) == 2 and all(len(line) <= 118 for line in written), written
    assert written[1].startswith("    ") and not written[1].startswith("     "), written
    assert " ".join(line.strip() for line in written) == (
        "Written: tokens /tmp/a directory/of some tokens (none: no realm running the attest guest obtained a "
        "token; only their tokens are read), json /tmp/run report.json"), written
    assert "tokens /tmp/a directory/of some tokens" in written[0], written
    assert any("json /tmp/run report.json" in line for line in written), written
    short = format_report(hand_built(outputs={"json": "out/report.json", "trace": "out/trace.json"}))
    assert "\nWritten: json out/report.json, trace out/trace.json\n" in short


def test_trace_records_left_out_are_warned_about() -> None:
    """A trace that left out records (trace_left_out: CPU 1's possibly torn oldest record) gets
    a warning naming the CPU, the count and otherData.left_out; none without."""
    warned = [w for w in to_json(hand_built(trace_left_out={1: 1}))["warnings"] if "left_out" in w]
    assert warned == ["the trace leaves out 1 record that may be torn (CPU 1 1; the file's otherData.left_out): a "
                      "CPU process killed while writing one leaves it half old, half new"]
    assert not [w for w in to_json(hand_built())["warnings"] if "left_out" in w]


def test_problems_and_report_file_errors_are_wrapped_to_the_width() -> None:
    """A problem naming the shared memory files a failed close left (run.closed: six paths,
    some 400 columns) and a report file error with a long reason: each is wrapped on whole
    words within 118 columns, its further lines indented under it, every path whole. Both were
    printed on one line (the "Not done" entries already wrapped)."""
    paths = [f"/dev/shm/rmm-mp-12345-0a1b2c3d.{part}" for part in ("ctl", "granules", "gpt", "dram", "cpus", "trace")]
    problem = (f"closing the machine after the run failed (PermissionError: [Errno 13] Permission denied) and 6 "
               f"shared memory files of it are left: {', '.join(paths)}; `rmm-mp clean` removes them once this "
               f"process has ended")
    error = ("could not save 3 of 3 tokens to /tmp/tokens (the first: [Errno 13] Permission denied: "
             "'/tmp/tokens/att256-0-000000.cbor')")
    text = format_report(hand_built(problems=(problem,), output_errors=[error]))
    assert all(len(line) <= 118 for line in text.splitlines()), max(len(line) for line in text.splitlines())
    for title, whole in (("Problems found by the workload's checks", problem), ("Report files not written", error)):
        section = _section(text, title)
        assert section[1].startswith("  ") and not section[1].startswith("   ") and len(section) > 2, section
        assert all(line.startswith("    ") for line in section[2:]), section
        assert " ".join(line.strip() for line in section[1:]) == whole
    assert all(any(path + sep in line for line in text.splitlines()) for path, sep in zip(paths, [","] * 5 + [";"]))


def test_long_realm_names_are_wrapped_in_their_column_within_the_width() -> None:
    """Names as long as a workload file allows (32 characters) with an instance and generation
    ("[63]#1234567"), and a folded row's " (1,234,567 instances)", beside a failed row whose
    counters need 21 columns and ten-digit exception counts: every line of the realm table stays
    within 118 columns, the realm column narrowed and each long name going on below it, broken
    at its space or before its "[" (it ran to 139 columns); the name put together again is
    whole, and the detail and counters are whole too."""
    n = "r" * 32
    counters = {"entries": 123_456_789, "faults": 1_234_567, "ripas_changes": 54_321, "vcpu_errors": 3}
    failed = RealmOutcome(f"{n} (1,234,567 instances)", 64, False, "all failed; the first, " + "x " * 40, counters,
                          exceptions=1_234_567_890, instances=1_234_567)
    ok = RealmOutcome(f"{n}[63]#1234567", 64, True, "running when the run ended (123,456,789 REC entries)",
                      counters, exceptions=1_234_567_890)
    section = _section(format_report(hand_built(realms=(failed, ok))), "Realms: 1 of 1,234,568 ok")
    assert max(len(line) for line in section) <= 118, section
    assert f"\n{n}" in "\n".join(section) and "\n(1,234,567 instances)" in "\n".join(section) \
        and "\n[63]#1234567" in "\n".join(section), section
    (cells, detail, got), (ok_cells, ok_detail, _) = realm_rows(section)
    assert cells == [n, "(1,234,567", "instances)", "64", "1,234,567,890", "FAILED"], cells
    assert detail == failed.detail.strip() and got == ", ".join(f"{k} {v:,}" for k, v in counters.items())
    assert ok_cells == [ok.name, "64", "1,234,567,890", "ok"] and ok_detail == ok.detail, ok_cells


def test_a_latency_table_of_second_long_calls_keeps_to_the_width() -> None:
    """Found by a campaign of random workloads: RSI_ATTESTATION_TOKEN_CONTINUE (30 characters, the
    longest call name) with a p99 and max of about a second (a signing CPU descheduled on a loaded
    host) made the RSI table 120 columns wide. The name is broken after an `_` and goes on below in
    its column, as the realm table does with a long realm name; the figures stay whole and aligned."""
    from rmm_mp.abi.rsi import RsiFid
    from stats.report_samples import slot_of, stats_of

    cont = slot_of(int(RsiFid.RSI_ATTESTATION_TOKEN_CONTINUE))
    base = hand_built(**GOOD)
    stats = {cpu: dict(per) for cpu, per in base.stats.items()}
    stats[0][cont] = stats_of(cont, [14_000] * 30 + [589_000] * 12 + [1_060_700_000])
    stats[1][cont] = stats_of(cont, [20_000, 2_100_000_000])
    text = format_report(replace(base, stats=stats))
    long = [line for line in text.splitlines() if len(line) > 118]
    assert long == [], long
    rsi = _section(text, "RSI calls from realms")
    header = rsi[1]
    assert header.split() == ["call", "cpu", "count", "errors", "p50", "p90", "p99", "p99.9", "max", "mean"]
    first = next(i for i, line in enumerate(rsi) if line.startswith("RSI_ATTESTATION_"))
    # The name's two pieces read back as the name; the continuation line holds nothing else.
    assert rsi[first].split()[0] + rsi[first + 1] == "RSI_ATTESTATION_TOKEN_CONTINUE", rsi
    row = rsi[first].split()
    assert row[1:4] == ["0", "43", "0"] and row[-2] == "1,060,700.00", row
    # Figures stay right-aligned under their headers.
    assert rsi[first].rstrip().endswith(row[-1]) and len(rsi[first]) == len(header)


def test_a_narrowed_call_column_breaks_the_time_split_s_total_row_between_words() -> None:
    """The time split's total rows are labelled "all RMI calls", a name with spaces and no `_`: a
    call column narrowed to 10 (figures of 10 s or more per call beside a 22-character call name)
    cut it at 10, "all RMI ca" above "lls". It is broken after its last space that fits, as a call
    name is after its last `_`, and the pieces read back as the label."""
    from rmm_mp.workload.render_text import table

    lines = table(("call", "cpu", "figure"), [("all RMI calls", "all", "9" * 101)], 2, narrow_first=True)
    assert [len(line) for line in lines[:3]] == [118] * 3 and lines[2].startswith("all RMI  "), lines
    assert lines[3:] == ["calls"], lines


def test_time_split_shares_round_a_tie_up_as_the_times_do() -> None:
    """A share of exactly 38.65 % (773 ns of EL3 in a 2,000 ns call) reads 38.7, and the handler's
    61.35 % reads 61.4, as us() rounds a 5 ns tie up: through a float, 38.65 is a little below
    itself and read 38.6, so the text's shares did not follow from the JSON's ns by one rule."""
    d = slot_of(DELEGATE)
    report = hand_built(cpus=1, stats={0: {d: stats_of(d, [2000], el3=0.3865)}})
    split = _section(format_report(report), "Time split of RMI calls")
    assert _row(split, "RMI_GRANULE_DELEGATE", "0")[2:] == ["1", "2.00", "0.77", "38.7", "1.23", "61.4", "0.00", "0.0"]


def test_lock_share_of_no_lock_is_a_dash_and_a_tie_rounds_up() -> None:
    """CPU 1 took no lock: its "all classes" row counts 0 and shows "-" for the share, as the time
    split does for a CPU without RMI calls, not 0.00 % of nothing (it read 0.00). 1 contended of 800,
    0.125 %, reads 0.13, a tie up as the times (through the float it read 0.12)."""
    locks = {0: {RTT: LockClassStats(800, 1, 900, 900)}, 1: {}}
    lines = _section(format_report(hand_built(locks=locks)), "Lock contention per granule class")
    assert _row(lines, "RTT", "0") == ["RTT", "0", "800", "1", "0.13", "0.90", "0.90"]
    assert _row(lines, "all", "classes", "1") == ["all", "classes", "1", "0", "0", "-", "0.00", "0.00"]
