"""The text report printed at the end of `rmm-mp run`: fixed-width tables, units in every title.

Every figure comes from the JSON document (render_json.to_json) so that the terminal and the
file agree; only the run's failure descriptions come from the RunReport itself. Lines stay
within WIDTH (118) columns, wrapped between phrases (describe.py's wrapper) or with their tables
narrowed; docs/latency.md ("The text report") says where and how.

Sections, in order: header and WARNING lines; latency per kind (RMI, RSI, PSCI, REC exits, host
activities), one row per call and CPU plus an "all" row when more than one CPU ran; the time
split of RMI calls, rowed the same way, and its totals per CPU; lock contention per class; CPU
processes; realms (every failed one, the counted rows of a CPU that returned no result, and at
most MAX_OK_REALMS that succeeded: the JSON has them all), then the guest output of each shown
realm that has one (a failed realm's; every realm's with --console), one line naming those whose
guest wrote nothing, and a note naming the failed realms whose output was not kept; host activity
counters per CPU; failures, problems, what an interruption left undone, invariants; files written; the verdict.

This module owns the layout, but for the realm table's columns and wrapping (render_realms). It
must not compute figures the document does not have.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Collection, Sequence

from rmm_mp.host.realm_entry import CONSOLE_BYTES
from rmm_mp.printable import char_columns, columns, shown_line, shown_path
from rmm_mp.words import count as _count, cpus as _cpus
from rmm_mp.workload.describe import WIDTH, held, paragraph, seconds_text, wrapped
from rmm_mp.workload.render_json import to_json
from rmm_mp.workload.render_realms import realm_table
from rmm_mp.workload.report import MAX_LISTED_PER_CPU, MAX_OUTPUTS_PER_CPU, RunReport

MAX_OK_REALMS = 20
MAX_DROPPED_NAMED = 5
"""Failed realms the note on guest output not kept names (a lifecycle run may fail thousands)."""

_KIND_TITLES = {
    "RMI": "RMI calls (EL3 entry to EL3 exit)",
    "RSI": "RSI calls from realms (timed in the RMM)",
    "PSCI": "PSCI calls from realms (timed in the RMM)",
    "EXIT": "REC runs by exit reason (REC entry to REC exit, inside RMI_REC_ENTER)",
    "HOST": "Host activities",
}


def _wrap(text: str, start: str = "") -> list[str]:
    """``text`` as the report's prose lines are wrapped (describe.wrapped): at most WIDTH terminal
    columns a line, the first after ``start``, later ones indented by 4, broken at spaces only; a
    word wider than the line (a long path) is cut, never inside an escape such as ``\\u001B``.
    textwrap counted characters, so a CJK name or path took a line past the width, and it kept
    such a word whole. Other whitespace is a space (wrapped), as textwrap read it."""
    return wrapped(text, "    ", start)


def _name_pieces(name: str, room: int) -> list[str]:
    """``name`` in pieces of at most ``room`` characters, each cut after its last ``_`` or space when
    it has one (RSI_ATTESTATION_ / TOKEN_CONTINUE; the time split's "all RMI " / "calls", which
    a cut at ``room`` alone parted mid-word), else at ``room``."""
    pieces = []
    while len(name) > room:
        cut = max(name.rfind("_", 0, room), name.rfind(" ", 0, room)) + 1 or room
        pieces.append(name[:cut])
        name = name[cut:]
    return [*pieces, name]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int | Collection[int] = 1,
          narrow_first: bool = False) -> list[str]:
    """Header, a dashed rule, then the rows; text columns (the first ``left``, or those listed)
    flush left, figures flush right. With ``narrow_first``, a table wider than WIDTH narrows its
    first column (a call name) to fit, down to its header's width, and a name longer than that goes
    on below in its column (figures of a second or more, 1,060,708.83 us, made a latency table
    of RSI_ATTESTATION_TOKEN_CONTINUE 120 columns wide)."""
    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]
    texts = set(range(left)) if isinstance(left, int) else set(left)
    over = sum(widths) + 2 * (len(widths) - 1) - WIDTH
    if narrow_first and over > 0:
        widths[0] = max(widths[0] - over, len(header[0]), 8)

    def fmt(line: Sequence[str]) -> str:
        cells = [c.ljust(w) if i in texts else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    out = [fmt(header), "  ".join("-" * w for w in widths)]
    for row in rows:
        first, *rest = _name_pieces(row[0], widths[0])
        out += [fmt((first, *row[1:])), *(piece.rstrip() for piece in rest)]
    return out


def us(ns: int) -> str:
    """``ns`` in us with two decimals, rounded to the nearest 10 ns, a tie (a value ending in
    5 ns) up. In integers: through a float, a tie went up or down by the float's binary error
    (15 ns read 0.01 us, 25 ns 0.03 us), so the text did not follow from the JSON by one rule."""
    if ns < 0:  # none is (the handler part is clamped at 0), but floor division would read -7 as -1.99
        return f"-{us(-ns)}"
    tens = (ns + 5) // 10
    return f"{tens // 100:,}.{tens % 100:02d}"


def _pct(part: int, whole: int, places: int = 1) -> str:
    """100 * ``part`` / ``whole`` with ``places`` decimals, a tie up, as us() rounds; "-" for a
    ``whole`` of 0 (a share of nothing). In integers: through a float a tie went either way by
    the float's binary error (773 of 2,000, 38.65 %, read 38.6; 1 of 16, 6.25 %, read 6.2)."""
    if not whole:
        return "-"
    scale = 10 ** places
    n = (200 * scale * part + whole) // (2 * whole)
    return f"{n // scale}.{n % scale:0{places}d}"


def _header(doc: dict[str, Any]) -> list[str]:
    limit = []
    if doc["seconds"] is not None:
        limit.append(f"{seconds_text(doc['seconds'])} s")
    if doc["iterations"] is not None:
        limit.append(_count(doc["iterations"], "iteration"))
    host = doc["host"]
    # Every CPU killed in its start-up, or the run stopped before they were started: "ran 0.53 s"
    # (the start-up's time) read as a run of that length.
    none_ran = len(doc["not_started"]) == doc["cpus"]
    # A run of a few iterations takes well under 10 ms: "ran 0.00 s" beside a rate of 33,356/s
    # read as a run of no time at all; it gets milliseconds.
    elapsed = doc["elapsed_s"]
    ran = ("not run: the CPUs never started" if none_ran
           else f"ran {elapsed:.2f} s" if elapsed >= 0.01 else f"ran {elapsed * 1000:.2f} ms")
    # A platform's name is a lower-case identifier of any length: beside a seed near 2^64 a
    # 36-character one made this line 133 columns. It wraps as the counters do, between phrases
    # only (describe.held): on every space it parted "(limit 2" from "s)", or "seed" from the
    # seed, at one name length or another. "platform NAME:" is the only phrase that can be wider
    # than the line, and is cut (describe.wrapped): kept whole, a name of 150 characters made a
    # line of 155. The first line likewise: a workload file deep in a directory tree made it as
    # wide as its path.
    platform = (f"{held('platform ' + doc['platform'])}: {held(_count(doc['cpus'], 'CPU'))} on "
                f"{held(_count(host['cores'], 'host core'))}, {held('seed ' + str(doc['seed']))}, {held(ran)} "
                f"(limit\0{' or '.join(held(text) for text in limit) or 'none'})")
    lines = [*wrapped(f"{held('workload ' + shown_path(doc['workload']))} ({held(shown_path(doc['source']))})"),
             *wrapped(platform)]
    # total_calls counts every record of the latency tables: REC runs (each beside its
    # RMI_REC_ENTER) and host activity steps too. Labelled "calls", it read as RMI, RSI and
    # PSCI calls alone: 66,446 in a quickstart run that made 51,674 (docs/performance.md).
    # With pinning asked, the line runs past the width once the count and the rate have some
    # nine digits together (8,078 at 31,556/s: 119 columns; a 60 s run at 60,000/s: 123):
    # pinning then goes on a line of its own, indented as a wrapped line is, never a phrase cut
    # in two.
    latency = "latency recorded: " + (
        "no (--no-latency): calls not counted" if not doc["latency_recorded"]
        else "asked, but no CPU ran: no calls" if none_ran
        else f"yes ({doc['total_calls']:,} calls, REC runs and host steps, {doc['calls_per_second']:,.0f}/s)")
    pinning = f"pinning: {'asked (cores in the CPU process table)' if doc['pin_requested'] else 'off'}"
    if len(latency) + 2 + len(pinning) <= WIDTH:
        lines.append(f"{latency}; {pinning}")
    else:
        lines += [f"{latency};", f"    {pinning}"]
    facts = [f"{label}{host[k]}" for k, label in (("machine", ""), ("python", "Python "), ("date", "")) if k in host]
    if facts:
        lines.append("host: " + ", ".join(facts))
    # The averages are taken around the CPU processes' start-up and run; with every CPU killed in
    # its start-up, "as the CPUs started ... as they ended" told of CPUs that never started (the
    # JSON keeps the two figures, measured all the same).
    if "load_start" in host and "load_end" in host and not none_ran:
        def averages(key: str) -> str:
            return " ".join(f"{v:.2f}" for v in host[key])
        lines += _wrap(f"host load (1, 5, 15-minute averages): {averages('load_start')} as the CPUs "
                       f"started, {averages('load_end')} as they ended")
    if doc["interrupted"]:
        stopped_by = host.get("stopped_by", "")
        how = stopped_by[stopped_by.find("("):] if stopped_by.startswith("interrupted") else "(Ctrl-C)"
        # Every CPU killed in its start-up (never started) is no run cut short either.
        if stopped_by.startswith("interrupted before the run") or (
                stopped_by.startswith("interrupted (") and len(doc["not_started"]) == doc["cpus"]):
            lines.append(f"INTERRUPTED: stopped before the CPUs started {how}: see 'Not done' below")
        elif stopped_by.startswith("interrupted after the run") and not doc["not_done"]:
            # The signal came as the CPUs or the machine were ending: there is no "Not done".
            lines.append(f"INTERRUPTED: the run ended, then a signal came {how}; nothing was left undone")
        elif stopped_by.startswith("interrupted after the run"):
            lines.append(f"INTERRUPTED: the run ended, then the work after it was stopped {how}: see 'Not done' below")
        else:
            lines.append(f"INTERRUPTED: the run was stopped before its end {how}")
    # Wrapped as the counters are: a warning naming realms or CPUs runs to hundreds of columns.
    # Broken at spaces: a path or a name is cut only when wider than a line (_wrap).
    lines.extend(line for w in doc["warnings"] for line in _wrap(f"WARNING: {w}"))
    return lines


def _without_lone_totals(records: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Drop the "all" record of a group (same ``key``) that has only one CPU record: it repeats it."""
    per_group: dict[Any, int] = {}
    for r in records:
        if r["cpu"] != "all":
            per_group[r[key]] = per_group.get(r[key], 0) + 1
    return [r for r in records if r["cpu"] != "all" or per_group.get(r[key], 0) > 1]


def _latency(doc: dict[str, Any]) -> list[str]:
    if not doc["latency_recorded"]:
        return ["", "Latency was not recorded (--no-latency): no per-call figures and no time split."]
    records = _without_lone_totals(doc["latency"], "call")
    if not records:
        unread = _unread(doc, "latency")
        return _no_figures("Latency", unread) if unread else ["", "No calls were made."]
    out = ["", "Latency per call and CPU in us; percentiles are upper edges of histogram buckets "
               "(at most ~3 % above the true value)"]
    for kind, title in _KIND_TITLES.items():
        rows = [(r["call"], str(r["cpu"]), f"{r['count']:,}", f"{r['errors']:,}", us(r["p50"]), us(r["p90"]),
                 us(r["p99"]), us(r["p999"]), us(r["max"]), us(r["mean"])) for r in records if r["kind"] == kind]
        if rows:
            out += ["", title]
            out += table(("call", "cpu", "count", "errors", "p50", "p90", "p99", "p99.9", "max", "mean"), rows, 2,
                         narrow_first=True)
    return out


def _mean(part: int, calls: int) -> str:
    """A mean per call in us; "-" for no calls (a CPU without RMI calls has no mean, not 0.00)."""
    return us(part // calls) if calls else "-"


def _split_row(label: str, cpu: str, calls: int, total: int, el3: int, rmm: int, lock: int) -> tuple[str, ...]:
    return (label, cpu, f"{calls:,}", _mean(total, calls), _mean(el3, calls), _pct(el3, total), _mean(rmm, calls),
            _pct(rmm, total), _mean(lock, calls), _pct(lock, total))


def _time_split(doc: dict[str, Any]) -> list[str]:
    # A row per call and CPU, as in the latency tables (and the JSON and CSV records), so that a
    # call's split on one CPU can be read; an "all" row only where more than one CPU made the call.
    rmi = _without_lone_totals([r for r in doc["latency"] if r["kind"] == "RMI"], "call")
    rows = [_split_row(r["call"], str(r["cpu"]), r["count"], r["mean"] * r["count"], r["el3_mean"] * r["count"],
                       r["rmm_mean"] * r["count"], r["lock_wait_mean"] * r["count"]) for r in rmi]
    if not rows:
        return []
    # Per CPU and "all", or, when one CPU ran, its row alone (labelled with its number, as the rows
    # above and the lock table's total are): an "all" row would repeat it.
    per_cpu = [s for s in doc["time_split"] if s["cpu"] != "all"]
    totals = per_cpu if len(per_cpu) == 1 else doc["time_split"]
    rows += [_split_row("all RMI calls", str(s["cpu"]), s["calls"], s["total_ns"], s["el3_ns"], s["rmm_ns"],
                        s["lock_wait_ns"]) for s in totals]
    return ["", "Time split of RMI calls (mean per call in us, and % of the calls' time): EL3 world switch, "
                "RMM handler, lock wait",
            "(the EL3 / RMM split is measured on about 1 call in 16 and estimated for the others)",
            *table(("call", "cpu", "calls", "mean", "el3", "el3 %", "rmm", "rmm %", "lock", "lock %"), rows, 2,
                   narrow_first=True)]


def _unread(doc: dict[str, Any], figures: str) -> str:
    """Why the run's ``figures`` ("latency", "lock") were not read, if the report says so: an
    empty table then means nothing about the calls or locks. That is so too when every CPU was
    killed in its start-up (never started: no CPU had a figure to read), where the report used
    to say that no call was made and no lock taken."""
    skipped = next((n for n in doc["not_done"]
                    if n.startswith(f"{figures} figures not read") or n.startswith("the CPUs were not started")), "")
    if skipped or not doc["not_started"] or len(doc["not_started"]) < doc["cpus"]:
        return skipped
    return next((n for n in doc["not_done"] if n.startswith(f"{_cpus(doc['not_started'])} ")
                 and " never started: " in n), "")


def _no_figures(title: str, unread: str) -> list[str]:
    """"``title``: no figures (``unread``)." wrapped to the width (_wrap): the reason for CPUs
    never started alone is some 150 columns."""
    return ["", *_wrap(f"{title}: no figures ({unread}).")]


def _locks(doc: dict[str, Any]) -> list[str]:
    if not doc["locks"]:
        unread = _unread(doc, "lock")
        return _no_figures("Lock contention", unread) if unread else \
            ["", "Lock contention: no granule lock was taken."]
    rows = [("all classes" if r["class"] == "all" else r["class"], str(r["cpu"]), f"{r['acquired']:,}",
             f"{r['contended']:,}", _pct(r["contended"], r["acquired"], 2), us(r["wait_ns"]), us(r["max_wait_ns"]))
            for r in _without_lone_totals(doc["locks"], "class")]
    return ["", "Lock contention per granule class (class = state the lock was taken for; OTHER = NS copies; "
                "waits in us)",
            *table(("class", "cpu", "acquired", "contended", "share %", "total wait", "longest"), rows, 2)]


def _failed_without(doc: dict[str, Any], key: str) -> list[int]:
    """The failed CPUs that have no entry in ``doc[key]`` (a process killed measures and returns
    nothing): the table says so, rather than leave the reader to count its rows."""
    have = {entry["cpu"] for entry in doc[key]}
    return sorted({f["cpu"] for f in doc["failures"]} - have)


def _processes(doc: dict[str, Any]) -> list[str]:
    missing = _failed_without(doc, "processes")
    notes = [f"cpu {cpu}: no figures: its process failed before it measured itself (CPU failures below)"
             for cpu in missing]
    if not doc["processes"]:
        return ["", "CPU processes", *notes] if notes else []
    rows = [(str(p["cpu"]), f"{p['user_s']:.2f}", f"{p['system_s']:.2f}", f"{p['involuntary_switches']:,}",
             f"{p['voluntary_switches']:,}", f"{p['peak_rss_bytes'] / 2**20:,.1f}",
             f"{p['private_bytes'] / 2**20:,.1f}",
             "-" if p["pinned_core"] is None else str(p["pinned_core"])) for p in doc["processes"]]
    return ["", "CPU processes (CPU time in s; MiB: peak RSS with the shared memory it touched, private at the end; "
                "core if pinned)",
            *table(("cpu", "user s", "system s", "involuntary switches", "voluntary switches", "peak RSS", "private",
                    "core"), rows), *notes]


def _realms(doc: dict[str, Any]) -> list[str]:
    """Failed realms in full; realms that succeeded clipped to the width, at most MAX_OK_REALMS."""
    realms = doc["realms"]
    if not realms:
        return []
    failed = sum(r["instances"] for r in realms if not r["ok"])
    total = sum(r["instances"] for r in realms)
    # Rows of instances a CPU that returned no result tore down (exceptions unknown) are shown
    # even when ok: they say that only their number is known, which the count above relies on.
    shown = [r for r in realms if not r["ok"]] + [r for r in realms if r["ok"] and r["exceptions"] is None] \
        + [r for r in realms if r["ok"] and r["exceptions"] is not None][:MAX_OK_REALMS]
    # The detail (how the realm ended) comes before the counters, so that what an ok realm's
    # row leaves out is the tail of its counter list, not its outcome.
    out = ["", f"Realms: {total - failed:,} of {total:,} ok", *realm_table(shown, WIDTH)]
    if len(realms) > len(shown):
        hidden = sum(r["instances"] for r in realms) - sum(r["instances"] for r in shown)
        out += _wrap(f"... and {hidden:,} more realms, all ok (in the JSON report: one row each, but a CPU's "
                     f"lifecycle instances after its first {MAX_LISTED_PER_CPU} of each outcome share a row per realm)")
    # A guest that wrote nothing (no console byte, no LOG record) gets no block of its own: a
    # lifecycle run's silent guests gave up to 16 blocks per CPU, each an empty title. They
    # are named in one line instead, which still says that their output was looked at.
    silent = [r["name"] for r in shown if r["output"] is not None and _silent(r["output"])]
    for r in shown:
        if r["output"] is not None and not _silent(r["output"]):
            out += _guest_output(r["name"], r["output"])
    if silent:
        named = ", ".join(silent[:MAX_DROPPED_NAMED]) + (
            f" and {len(silent) - MAX_DROPPED_NAMED:,} more" if len(silent) > MAX_DROPPED_NAMED else "")
        out += ["", *_wrap(f"No guest output (no console byte, no LOG record) of {_count(len(silent), 'realm')}: "
                           f"{named}")]
    dropped = [r["name"] for r in realms if r["output_dropped"]]
    if dropped:
        named = ", ".join(dropped[:MAX_DROPPED_NAMED]) + (
            f" and {len(dropped) - MAX_DROPPED_NAMED:,} more" if len(dropped) > MAX_DROPPED_NAMED else "")
        count = sum(r["instances"] for r in realms if r["output_dropped"])
        out += ["", *_wrap(f"Guest output not kept of {_count(count, 'failed realm')} (a CPU keeps it for the first "
                           f"{MAX_OUTPUTS_PER_CPU} lifecycle instances that fail on it): {named}")]
    return out


def _silent(output: dict[str, Any]) -> bool:
    """The guest wrote nothing the report could show: no console byte and no LOG record."""
    return not output["console_bytes"] and not output["log_count"]


def _printable(c: str) -> str:
    """Character ``c`` of a guest's console as the report prints it: one that is not printable
    (a control character other than newline and tab, a bidi override, ...) escaped, so that a
    guest's bytes cannot move the terminal's cursor or change its colours. Escaped as Python
    writes it, by repr, which escapes exactly what str.isprintable refuses (``\\x1b``, ``\\r``,
    ``\\u202e``, ``\\U000e0001``: one beyond U+FFFF as ``\\u`` and five digits read as another
    character and a digit). A backslash is doubled, as Python writes it too: shown as it is, a
    guest printing the text ``\\x1b`` looked the same as one printing ESC."""
    if (c.isprintable() and c != "\\") or c in "\n\t":
        return c
    return repr(c)[1:-1]


CONSOLE_PREFIX, CONSOLE_MORE = "  | ", "  + "
"""Before each console line in a guest's output, and before each further piece of a line too
long for the report's width."""


_EMOJI_MODIFIERS = range(0x1F3FB, 0x1F400)
"""The skin-tone modifiers (Fitzpatrick types 1-2 to 6), which a terminal draws within the emoji before them."""


def _extends(c: str) -> int | None:
    """The columns ``c`` adds to the character before it when it extends that character rather
    than being one of its own (a combining mark, a variation selector, a skin-tone modifier);
    None when it is a character of its own. A spacing mark (Mc, as in Devanagari) takes a
    column of its own but belongs to its base all the same."""
    category = unicodedata.category(c)
    if category in ("Mn", "Me"):    # the variation selectors U+FE0F, U+E0100.. are Mn too
        return 0
    if category == "Mc":
        return 1
    return 0 if ord(c) in _EMOJI_MODIFIERS else None


def _console_units(line: str) -> list[tuple[str, int]]:
    """``line`` as the report shows it, in units never cut in two, each with the terminal
    columns it takes: a character with the marks that extend it ('e' + U+0301 is one unit of
    one column), a wide character (CJK, most emoji: east Asian width W or F) with two columns,
    an escape (``\\x1b``, a doubled backslash) with its length, a tab as the spaces, one column
    each, up to the next 8-column stop (counted in columns too: str.expandtabs counts
    characters, so a wide character or an accent before a tab moved the stop). A mark with
    nothing before it on its line to extend is a unit of one column (a terminal draws it on a
    dotted circle, or on the column before, which a cut must not take from it either way). A mark
    right after an escape is escaped too (``\\x07`` + U+0301 as ``\\x07\\u0301``), as drawn on the
    escape's last character it would read as part of the text."""
    units: list[tuple[str, int]] = []
    column = 0
    after_escape = False    # the last unit is an escape (``\x07``, a doubled backslash, an escaped mark)
    for c in line:
        if c == "\t":
            units += [(" ", 1)] * (8 - column % 8)
            column += 8 - column % 8
            after_escape = False
            continue
        shown = _printable(c)
        extra = _extends(c) if shown == c else None
        if extra is not None and after_escape:
            # Drawn as it is, the mark would sit on the escape's last character ('\x07' + U+0301
            # looked like an accented 7): escaped too, as \u0301 (its backslash cannot be the
            # guest's, which would show doubled), and so is a mark after that one.
            shown = f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
            units.append((shown, len(shown)))
            column += len(shown)
            continue
        if extra is not None and units:
            text, width = units[-1]
            units[-1] = (text + c, width + extra)
        elif shown == c:
            extra = max(1, char_columns(c))     # a mark with nothing to extend: one column
            units.append((c, extra))
        else:
            extra = len(shown)
            units.append((shown, extra))
        after_escape = shown != c
        column += extra
    return units


def _console_lines(console: str) -> list[str]:
    """A guest's console text as report lines: each of its lines after CONSOLE_PREFIX, its tabs
    expanded to 8-column stops, its control characters escaped and its backslashes doubled; a
    line wider than the report goes on in pieces after CONSOLE_MORE, cut only between units
    (_console_units: an escape such as ``\\x1b``, or a doubled backslash, is never cut, as the
    terminal would show a different byte; nor is a combining mark taken from its base), each
    counted in terminal columns (a wide character two, a combining mark none)."""
    room = WIDTH - len(CONSOLE_PREFIX)
    out: list[str] = []
    for line in console.split("\n")[:-1 if console.endswith("\n") else None] if console else []:
        pieces: list[str] = []
        piece: list[str] = []
        used = 0
        # Counted in columns, not characters: 114 CJK characters, counted as one each, ran to
        # 228 columns; and 'e' + U+0301 at the end of a piece left the accent to the next one.
        for shown, width in _console_units(line):
            if used + width > room and piece:
                pieces.append("".join(piece))
                piece, used = [], 0
            piece.append(shown)
            used += width
        pieces.append("".join(piece))
        out += [(CONSOLE_PREFIX if i == 0 else CONSOLE_MORE) + p for i, p in enumerate(pieces)]
    return out


def _guest_output(name: str, out: dict[str, Any]) -> list[str]:
    """A realm's console tail and last LOG records, each line indented under a title."""
    total = out["console_bytes"]
    title = (f"Guest output of {name}: console ({_count(total, 'byte')} written"
             # "up to": a character the ring cut at its start is left out (realms.guest_output)
             + (f", up to the last {CONSOLE_BYTES:,} shown" if total > CONSOLE_BYTES else "") + "), "
             + f"LOG ({_count(out['log_count'], 'record')}"
             + (f", the last {len(out['log'])} shown" if out["log_count"] > len(out["log"]) else "") + ")")
    # With both rings' "up to the last ... shown" the title alone is 118 columns and the name:
    # wrapped as a warning is (_wrap), so that the name (at most 32 characters) is never cut.
    lines = ["", *_wrap(title)]
    lines += _console_lines(out["console"])
    lines += [f"  LOG rec {entry['rec']}: " + " ".join(f"{v:#x}" for v in entry["values"]) for entry in out["log"]]
    return lines


def _cpu_counters(doc: dict[str, Any]) -> list[str]:
    out = []
    missing = _failed_without(doc, "counters")
    entries = sorted([*doc["counters"], *({"cpu": cpu, "values": None} for cpu in missing)], key=lambda e: e["cpu"])
    for entry in entries:
        if entry["values"] is None:
            out.append(f"cpu {entry['cpu']}: none: it returned no result (CPU failures below)")
        elif entry["values"]:
            # Broken between counters only, never inside "rtt-churn steps 352".
            out += paragraph((f"{k} {v:,}" for k, v in entry["values"].items()), f"cpu {entry['cpu']}: ")
    return ["", "Host activity counters per CPU", *out] if out else []


def _output(kind: str, path: str, report: RunReport) -> str:
    """``kind path`` and, for tokens, how many; the spaces of ``kind path`` held as NUL, so that
    _written breaks the line in the note or between files, never inside a name."""
    named = f"{kind} {shown_path(path)}".replace(" ", "\0")
    if kind != "tokens":
        return named
    # The directory is made even when no realm obtains a token: say so rather than "written".
    n = report.tokens_saved
    return f"{named} ({n:,} token{'s' if n != 1 else ''})" if n else \
        f"{named} (none: no realm running the attest guest obtained a token; only their tokens are read)"


def _written(report: RunReport, doc: dict[str, Any]) -> list[str]:
    """The "Written:" line, wrapped to the width as a warning is. The tokens note alone is 96
    columns, so beside a JSON file (or a directory path of more than 10 characters) the line
    ran past 118: 129 in `rmm-mp run quickstart --save-tokens /tmp/wt_tok --json /tmp/r.json`."""
    return wrapped("Written:\0" + ", ".join(_output(kind, path, report) for kind, path in doc["outputs"].items()))


def _entries(entries: Sequence[str]) -> list[str]:
    """The lines of a section's ``entries``, each wrapped to WIDTH as a warning is (_wrap),
    indented by 2 and its further lines by 4."""
    return [line for entry in entries for line in _wrap(entry, start="  ")]


_MAX_LEAD = WIDTH // 2
"""The widest indent a wrapped CPU failure line keeps (its further lines are 4 deeper)."""


def _failure(text: str) -> list[str]:
    """A CPU failure's lines (CpuFailure.describe: its line, then any traceback), indented by 2.
    A line wider than the report (a long "how", an exception's message, a deep path in a
    traceback) is wrapped as a warning is (_wrap: terminal columns, never inside an escape), its
    own indent kept and its further lines 4 deeper; textwrap.indent let it run on. A line that
    fits is kept as it is, blanks and all, so that a traceback's ^^^ marks stay under their code.
    An indent kept is at most _MAX_LEAD columns: one near the width (text an exception's message
    quotes, indented deep) left its wrapped lines no room for a character, and the wrap never ended.
    A line holding a character that is not printable (an ESC in an exception's message, which
    came from the CPU raw) is shown as a TOML basic string, as an error's notes are
    (cpu_outcome.error_text); a tab alone is read as a space by the wrap."""
    out: list[str] = []
    for line in text.split("\n"):
        line = shown_line(line)
        lead = "  " + line[:min(len(line) - len(line.lstrip(" ")), _MAX_LEAD - 2)]
        if 2 + columns(line) <= WIDTH:
            out.append(f"  {line}".rstrip())
        else:
            out += wrapped(line, lead + "    ", lead)
    return out


def _outcome(report: RunReport, doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if report.failures:
        # A CPU "did not stop ... of being asked": say why the parent asked (run.TimeUp's verdict).
        stopped_by = report.host.get("stopped_by", "")
        why = _wrap(f"the CPUs were asked to stop: {stopped_by}", start="  ") if stopped_by.startswith("time is up") \
            else []
        out += ["", "CPU failures", *why] + [line for f in report.failures for line in _failure(f.describe())]
    # Each entry wrapped as a warning is, broken at spaces (a path cut in two reads as two, so it
    # is cut only when wider than a line, outside its escapes): the
    # line naming CPUs never started alone is some 150 columns, and the problem naming the
    # shared memory files a failed close left (run.closed) some 400.
    if report.problems:
        out += ["", "Problems found by the workload's checks", *_entries(report.problems)]
    if report.output_errors:
        out += ["", "Report files not written", *_entries(report.output_errors)]
    if report.not_done:
        out += ["", "Not done (the run was interrupted)", *_entries(report.not_done)]
    skipped = next((n for n in report.not_done if n.startswith("invariants not checked: ")), "")
    out += ["", f"invariants: not checked: {skipped.removeprefix('invariants not checked: ')}" if skipped
            else "invariants: not checked (the run did not end cleanly)" if report.invariants is None
            else f"invariants: {report.invariants}"]
    if doc["outputs"]:
        out += ["", *_written(report, doc)]
    out += ["", *_verdict(report, doc)]
    return out


def _verdict(report: RunReport, doc: dict[str, Any]) -> list[str]:
    """The report's last line, `result: OK` or `result: FAILED: ` and its causes, which `tail -1`
    gives whole. With every cause at once it ran to 126 columns and more: causes that do not fit
    beside it are listed on the lines before it (`causes: ...`), and the verdict counts them and
    names their kinds, in a line that always fits."""
    if doc["ok"]:
        warned = len(doc["warnings"])
        return ["result: OK" + (f" ({_count(warned, 'warning')} above)" if warned else "")]
    why: list[tuple[str, str]] = []     # a cause, and its kind
    failed = sum(r.instances for r in report.realms if not r.ok)
    if failed:
        why.append((_count(failed, "realm") + " failed", "realms"))
    if report.failures:
        why.append((_count(len(report.failures), "CPU process", "CPU processes") + " failed", "CPU processes"))
    if report.problems:
        why.append((_count(len(report.problems), "problem"), "problems"))
    if report.invariants is None:
        why.append(("invariants not checked", "invariants"))
    elif not report.invariants.ok:
        why.append((_count(len(report.invariants.violations), "invariant violation"), "invariants"))
    if report.interrupted:
        why.append(("interrupted", "interrupted"))
    if report.output_errors:
        why.append((_count(len(report.output_errors), "report file") + " not written", "report files"))
    verdict = "result: FAILED: " + ", ".join(cause for cause, _ in why)
    if len(verdict) <= WIDTH:
        return [verdict]
    return [*paragraph((cause for cause, _ in why), "causes: "),
            f"result: FAILED: {len(why)} causes, listed above: " + ", ".join(kind for _, kind in why)]


def format_report(report: RunReport) -> str:
    """Everything printed at the end of a run (see the module docstring for the sections)."""
    doc = to_json(report)
    lines = [*_header(doc), *_latency(doc), *_time_split(doc), *_locks(doc),
             *_processes(doc), *_realms(doc), *_cpu_counters(doc), *_outcome(report, doc)]
    return "\n".join(lines)
