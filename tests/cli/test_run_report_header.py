"""The header of `rmm-mp run`'s text report says what its count of calls counts (hand-built
reports, tests/stats/report_samples.py)."""

from __future__ import annotations

import re
from pathlib import Path

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.stats import calls
from rmm_mp.workload import render_text
from rmm_mp.workload.render import format_report, to_json
from stats.report_samples import hand_built, slot_of, stats_of


def test_the_header_count_names_rec_runs_and_host_steps_beside_the_calls() -> None:
    """A report whose CPU 0 made 5 RMI_REC_ENTER calls, had 5 REC runs (EXIT kind) and 5 host
    activity steps in 3 s: the JSON's total_calls is 15 (every record of the latency tables, as
    docs/report-schema.json says), and the header shows 15 as "calls, REC runs and host steps",
    with its rate, never as "15 calls". Labelled "calls" alone it read as RMI, RSI and PSCI calls,
    three times the calls made here."""
    enter = slot_of(int(RmiFid.RMI_REC_ENTER))
    stats = {0: {enter: stats_of(enter, [1000] * 5), calls.EXIT_BASE + 5: stats_of(calls.EXIT_BASE + 5, [800] * 5),
                 calls.HOST_BASE: stats_of(calls.HOST_BASE, [5000] * 5)}}
    report = hand_built(stats=stats, elapsed_s=3.0)
    assert to_json(report)["total_calls"] == 15
    head = format_report(report).splitlines()[:4]
    assert " 15 calls," not in " ".join(head), head
    assert head[2].startswith("latency recorded: yes (15 calls, REC runs and host steps, 5/s); pinning: "), head


def test_the_latency_line_stays_within_the_width() -> None:
    """A pinned run of 100,000 records in 1.5 s (66,667/s): "latency recorded: yes (100,000 calls,
    REC runs and host steps, 66,667/s); pinning: asked (cores in the CPU process table)" is 121
    columns, so "pinning: ..." goes on a line of its own, indented by 4 as a wrapped line is,
    and every header line is within the report's 118. Since the count moved onto this line, a
    long run with pinning asked printed it past the width (a 60 s run at 60,000/s: 122 columns)."""
    delegate = slot_of(int(RmiFid.RMI_GRANULE_DELEGATE))
    report = hand_built(stats={0: {delegate: stats_of(delegate, [1000] * 100_000)}}, elapsed_s=1.5, pinned=True)
    head = format_report(report).splitlines()[:5]
    assert head[2] == "latency recorded: yes (100,000 calls, REC runs and host steps, 66,667/s);", head
    assert head[3] == "    pinning: asked (cores in the CPU process table)", head
    assert all(len(line) <= 118 for line in head), [len(line) for line in head]


def test_the_header_excerpt_in_docs_latency_is_what_the_report_prints() -> None:
    """docs/latency.md shows the header of a pinned run of 8,078 records at 31,556/s: its
    latency and pinning lines are the ones the report prints for those figures. With the
    count's label one column longer ("calls, REC runs and host steps") that line is 119
    columns, so "pinning: ..." goes on a line of its own; the excerpt still showed both on one
    line, which the report never prints."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "latency.md").read_text().splitlines()
    at = next(i for i, line in enumerate(docs) if line.startswith("    latency recorded: yes ("))
    shown = [docs[at][4:]] + [line[4:] for line in docs[at + 1:at + 2] if line.startswith("        pinning: ")]
    match = re.match(r"latency recorded: yes \(([\d,]+) calls, .*?, ([\d,]+)/s\)", shown[0])
    assert match is not None, shown[0]
    records, rate = (int(n.replace(",", "")) for n in match.groups())
    doc = to_json(hand_built(pinned=True))
    doc.update(total_calls=records, calls_per_second=float(rate))
    head = render_text._header(doc)
    first = next(i for i, line in enumerate(head) if line.startswith("latency recorded: "))
    printed = head[first:first + 1] + [line for line in head[first + 1:first + 2] if line.startswith("    pinning: ")]
    assert shown == printed, (shown, printed)


def test_the_platform_line_is_wrapped_within_the_width() -> None:
    """Found by a campaign of random accepted workloads: the platform line was never wrapped, so
    a platform of a longer name (a lower-case identifier of any length) beside a seed near 2^64
    passed 118 columns: here 133. It is wrapped on whole words, its later lines indented by 4, as
    the host load line is; a short one stays one line."""
    name = "acme-neoverse-reference-design-board"
    report = hand_built(platform=name, seed=2**64 - 1, iterations=1_000_000_000_000, seconds=None)
    head = format_report(report).splitlines()
    at = next(i for i, line in enumerate(head) if line.startswith("platform "))
    assert all(len(line) <= 118 for line in head[:at + 3]), [len(line) for line in head[:at + 3]]
    whole = (f"platform {name}: 2 CPUs on 2 host cores, seed 18446744073709551615, ran 2.01 s "
             "(limit 1,000,000,000,000 iterations)")
    assert head[at + 1].startswith("    ") and f"{head[at]} {head[at + 1][4:]}" == whole, head
    assert head[at + 2].startswith("latency recorded: "), head
    short = format_report(hand_built()).splitlines()
    assert short[1].startswith("platform host: ") and short[2].startswith("latency recorded: "), short[:3]


def test_a_platform_name_wider_than_the_line_is_broken_within_the_width() -> None:
    """A platform's name may be longer than the report's width (a lower-case identifier of any
    length; the campaign that found the unwrapped line ran one of 150 characters). Wrapped on whole
    words only, it stayed one word of 151 columns on a line of 160: a name wider than the line is
    broken at the width, its pieces on lines indented by 4, and read together they give it whole."""
    name = "board-" + "x" * 144
    head = format_report(hand_built(platform=name, seed=2**64 - 1)).splitlines()
    at = next(i for i, line in enumerate(head) if line.startswith("platform"))
    end = next(i for i, line in enumerate(head) if line.startswith("latency recorded: "))
    assert all(len(line) <= 118 for line in head), [len(line) for line in head]
    assert end - at >= 2 and all(line.startswith("    ") for line in head[at + 1:end]), head[at:end]
    assert f"platform {name}: 2 CPUs" in head[at] + "".join(line[4:] for line in head[at + 1:end]), head[at:end]


def test_the_platform_line_breaks_between_phrases_never_inside_one() -> None:
    """Wrapped on every space, the platform line parted a figure from its unit or its label at
    one name length or another: "(limit 2" then "    s)" (names of 35 to 37 characters), "ran
    2.01" then "s", "seed" then the seed, "2 host" then "cores,", or "platform" alone above the
    name. For every name length each such phrase is now on one line, and every line is within
    the width."""
    held = ("platform b", "2 CPUs", "2 host cores,", "seed 18446744073709551615,", "ran 2.01 s", "(limit 2 s)")
    for n in range(1, 160):
        head = format_report(hand_built(platform="b" * n, seed=2**64 - 1)).splitlines()
        end = next(i for i, line in enumerate(head) if line.startswith("latency recorded: "))
        lines = head[1:end]
        assert all(len(line) <= 118 for line in lines), (n, lines)
        assert all(any(phrase in line for line in lines) for phrase in held), (n, lines)
