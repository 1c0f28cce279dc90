"""Schedule files: everything needed to replay a deterministic stress run exactly.

A schedule file is JSON:

    {"format": "rmm-mp-schedule", "version": 3,
     "config": {"workload": ..., "cpus": ..., "seed": ..., "strategy": ..., "steps": ...,
                "pct_depth": ..., "inject": [...], "checkers": [...], "time_slice": ...,
                "quiescent_every": ..., "guests": ..., "population": ...},
     "switches": [[step, cpu], ...],
     "result": {"steps": ..., "preemptions": ..., "findings": [...], "shm_dir": ...}}

``switches`` lists every context switch of the run: after schedule point ``step`` CPU ``cpu``
runs (step 0: the first CPU). The seed still matters on replay: it drives the operations each
CPU draws, and so does the population the run was built on: ``population`` names it
(stress.population.POPULATION). A file of version 1 has no ``population``: it was written when
the population was the same four guests at any CPU count (population 1), which its replay
builds, so that it replays as it ran. ``result`` is the recorded outcome a replay is compared
with; ``shm_dir`` (version 3) the recording run's segment directory as its messages name it, which
a replay leaves out of the recorded findings' text as it leaves out its own (without_run_place):
a file of version 1 or 2 has none (a directory with a space in it, or a relative one, then made a
replay under another one diverge). ``steps`` in ``config`` is the budget a replay runs to: for a
run stopped early (Ctrl-C, SIGTERM, its time limit) the step at which it stopped, so that its
replay stops there too.

``compare`` says whether a replay reproduced the recorded findings (``ReplayVerdict``: what
`rmm-mp stress --replay` prints and writes under ``replay`` in its JSON).

Loading checks the whole file before anything runs (``parse``): every key the writer writes
must be there and no other, each value of its type and in its range, and the switches must
name CPUs of the run. What is wrong is a ConfigError naming the file, the key, the value and
what was expected (the CLI's usage error, exit 2), never a traceback from deeper down.

This module owns the format. It must not run anything.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections import Counter, deque
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmm_mp.hw import segment
from rmm_mp.hw.tomlsrc import MISSING, ConfigError, choice_list, suggestion
from rmm_mp.inputfile import TooLarge, read_at_most
from rmm_mp.outpaths import write_json
from rmm_mp.printable import shown_path
from rmm_mp.stress.bugs import BUGS, inject_problem
from rmm_mp.stress.config import (
    CHECKERS, INTEGERS, SCHEDULES, StressConfig, quiescent_every_problem,
)
from rmm_mp.stress.findings import CHECKERS as FINDING_CHECKERS
from rmm_mp.stress.findings import NUMBER, Finding, decimal_value, scaled, without_lines, without_run_values
from rmm_mp.stress.ops import WORKLOADS
from rmm_mp.stress.population import POPULATIONS
from rmm_mp.stress.report import StressReport
from rmm_mp.workload.fields import Fields, is_finite_number, is_int

FORMAT = "rmm-mp-schedule"
VERSION = 3
VERSIONS = (1, 2, 3)
"""The versions read: version 1's config has no ``population`` key (population 1), and versions 1
and 2 have no ``result.shm_dir``."""
_KEYS = ("workload", "cpus", "seed", "steps", "pct_depth", "time_slice", "quiescent_every", "guests", "population")
_CONFIG_KEYS = _KEYS + ("strategy", "inject", "checkers")
_V1_CONFIG_KEYS = tuple(k for k in _CONFIG_KEYS if k != "population")
_TOP_KEYS = ("format", "version", "config", "switches", "result")
_V2_RESULT_KEYS = ("steps", "preemptions", "findings")
_RESULT_KEYS = _V2_RESULT_KEYS + ("shm_dir",)
_FINDING_KEYS = ("checker", "rule", "message", "cpu", "call", "site", "details", "step")
STRATEGIES = tuple(s for s in SCHEDULES if s != "free")
"""What a recorded run's schedule may have been: a replay follows a deterministic one ("replay":
the file of a shrunk run, or of a replay)."""
_U64 = (1 << 64) - 1
MAX_FILE = 64 << 20
"""Most bytes a schedule file may hold, read or written. A switch takes some 24 bytes, so this is
about 2.8 million switches: 7.6 to 15 million steps of a random-schedule run (4.5 to 8.8 bytes a
step, docs/stress.md), several minutes of a deterministic run; JSON parsing keeps
every switch as a Python list, so a larger file (up to the 100,000,000-step budget's GBs) would
take seconds and GBs before its first check. write() refuses what read() would."""
_SHOWN = 80
"""Characters of a list or object an error message shows (a whole switch list would flood it)."""


@dataclass(frozen=True)
class Schedule:
    """A checked schedule file.

    Attributes:
        config: the configuration that replays it (schedule "replay", the recorded switches).
        strategy: the schedule the recorded run followed (random, pct or replay).
        steps, preemptions: what the recorded run did.
        findings: the recorded findings a replay is compared with.
    """

    config: StressConfig
    strategy: str
    steps: int
    preemptions: int
    findings: tuple[Finding, ...]


def to_json(report: StressReport) -> dict[str, Any]:
    cfg = report.config
    config = {k: getattr(cfg, k) for k in _KEYS}
    if report.stopped_at is not None:
        # Stopped early by a signal or the time limit: the replay's budget is the step where
        # the first CPU saw the stop between operations, so it stops at the same points (with
        # the original budget it would run on past them, and its "reproduced" would be a lie).
        config["steps"] = min(cfg.steps, report.stopped_at)
    config.update(strategy=cfg.schedule, inject=list(cfg.inject), checkers=list(cfg.checkers))
    return {"format": FORMAT, "version": VERSION, "config": config,
            "switches": [list(s) for s in report.schedule],
            "result": {"steps": report.steps, "preemptions": report.preemptions,
                       "findings": [f.to_json() for f in report.findings], "shm_dir": segment.shown_shm_dir()}}


def write(report: StressReport, path: "str | Path") -> Path:
    """Write ``report``'s schedule (a deterministic run's) to ``path``."""
    if not report.config.deterministic:
        raise ValueError("only a deterministic run (--schedule random or pct) has a schedule to write")
    why = report.unreplayable()
    if why:
        raise ValueError(f"not written: {why}")
    document = to_json(report)
    size = len(json.dumps(document, indent=1)) + 1   # as write_json writes it (ASCII: bytes)
    if size > MAX_FILE:
        raise ValueError(f"not written: {size:,} bytes, more than the {MAX_FILE:,} (64 MiB) a replay reads")
    write_json(document, str(path))
    return Path(path)


def read(path: "str | Path") -> Schedule:
    """Load and check a schedule file; ValueError (a ConfigError for a bad value) naming what is
    wrong."""
    try:
        data = json.loads(read_at_most(path, MAX_FILE).decode("utf-8"))
    except TooLarge as exc:     # before ValueError, which it is
        raise ConfigError(str(path), "(file)", f"more than {exc.limit:,} bytes",
                          f"a schedule file of at most {exc.limit:,} bytes (64 MiB)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: JSON syntax, and an integer of more digits than Python converts.
        raise ValueError(f"{shown_path(path)}: not a readable schedule file ({exc})") from None
    return parse(data, str(path))


def parse(data: object, source: str) -> Schedule:
    """Check a loaded schedule file (``source`` names it in errors) and return what it holds."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{source}: not an {FORMAT} file")
    f = _Checks("", source)
    if not is_int(data.get("version")) or data["version"] not in VERSIONS:     # true == 1 in Python, but is no version
        # Named with its value: a file of a later version (a newer rmm-mp's) was refused as "not
        # an rmm-mp-schedule file of version 1 or 2", which named no value.
        raise f.fail("version", data.get("version", MISSING),
                     f"{', '.join(map(str, VERSIONS[:-1]))} or {VERSIONS[-1]}, the versions of the {FORMAT} format "
                     "this rmm-mp reads "
                     "(a later one is a newer rmm-mp's file)")
    f.record(data, "", _TOP_KEYS)
    c = f.record(data["config"], "config", _V1_CONFIG_KEYS if data["version"] == 1 else _CONFIG_KEYS)
    ints = {k: f.integer(c[k], f"config.{k}", lo, hi, what) for k, (lo, hi, what) in INTEGERS.items()}
    strategy = f.choice(c["strategy"], "config.strategy", STRATEGIES,
                        "a replay follows the switches of a deterministic run")
    workload = f.choice(c["workload"], "config.workload", tuple(WORKLOADS))
    quiescent_every = f.steps_interval(c["quiescent_every"], "config.quiescent_every")
    guests = f.boolean(c["guests"], "config.guests")
    # Version 1 predates the key: its runs were built on population 1.
    population = 1 if data["version"] == 1 else f.integer(
        c["population"], "config.population", POPULATIONS[0], POPULATIONS[-1],
        "the stress population the run was built on (1: four guest realms at any CPU count; 2: two per CPU "
        "beyond 4)")
    inject = f.names(c["inject"], "config.inject", tuple(BUGS), "bug names",
                     "a catalogued bug (`rmm-mp stress --list-bugs` lists them)")
    if problem := inject_problem(inject):
        raise f.fail("config.inject", c["inject"], f"{problem[1]} ({problem[0]})")
    checkers = f.names(c["checkers"], "config.checkers", CHECKERS, "checker names",
                       f"a checker: one of {choice_list(CHECKERS)}")
    switches = f.switches(data["switches"], "switches", ints["cpus"])
    r = f.record(data["result"], "result", _V2_RESULT_KEYS if data["version"] < 3 else _RESULT_KEYS)
    steps = f.integer(r["steps"], "result.steps", 0, _U64, "the steps the run took")
    preemptions = f.integer(r["preemptions"], "result.preemptions", 0, _U64, "the preemptions the run made")
    findings = f.findings(r["findings"], "result.findings", ints["cpus"])
    if data["version"] >= 3:
        shm_dir = f.string(r["shm_dir"], "result.shm_dir", "the recording run's segment directory, as a string")
        findings = tuple(dataclasses.replace(finding, shm_dir=shm_dir) for finding in findings)
    try:
        config = StressConfig(workload=workload, cpus=ints["cpus"], seed=ints["seed"], schedule="replay",
                              steps=ints["steps"], pct_depth=ints["pct_depth"], inject=inject, checkers=checkers,
                              switches=switches, quiescent_every=quiescent_every, time_slice=ints["time_slice"],
                              guests=guests, population=population)
    except ValueError as exc:
        # Unreachable while the checks above cover StressConfig's; kept so that a check added
        # there alone still names the file.
        raise ValueError(f"{source}: config: {exc}") from None
    return Schedule(config, strategy, steps, preemptions, findings)


def replay_config(schedule: "Schedule | dict[str, Any]", **overrides: Any) -> StressConfig:
    """The StressConfig that replays a schedule (read from a file, or ``to_json``'s dict, which
    is checked as a file would be)."""
    if not isinstance(schedule, Schedule):
        schedule = parse(schedule, "schedule")
    return schedule.config.replace(**overrides)


@dataclass(frozen=True)
class ReplayVerdict:
    """How a replay's findings compare with the ones its schedule file recorded.

    Attributes:
        file: the schedule file replayed, as named on the command line.
        verdict: "reproduced" (the same findings, in any order), "diverged" (others), "interrupted" (Ctrl-C or
            SIGTERM stopped the replay before it gave the recorded findings: it neither
            reproduced nor contradicted them; also when none were recorded and it found none),
            "timeout" (the same, its time limit stopped it), "stopped" (the same, its stop flag
            raised from outside the run stopped it: StressReport.ended "stopped").
        recorded: the findings the file recorded.
        seen: the replay's own findings.
        moved: reproduced, but some at other source lines than recorded (the code was edited
            since: findings are compared without line numbers).
        reworded: diverged, but each finding has a recorded one's (in any order of the
            findings) checker, rule, CPU, step and site (its file and function), and its text
            the same numbers in the same order (the granule addresses, with or without 0x,
            indexes, CPU numbers and counts it names): only the wording differs, as after the
            tool changed how it words a finding. Still a divergence (the text names the granules
            and calls, which a replay must match too); the printed verdict says so and how to
            record the file again.
    """

    file: str
    verdict: str
    recorded: tuple[Finding, ...]
    seen: tuple[Finding, ...]
    moved: bool = False
    reworded: bool = False

    @property
    def reproduced(self) -> bool:
        return self.verdict == "reproduced"

    def text(self) -> str:
        """The line `rmm-mp stress --replay` prints, with the recorded findings when it did not
        reproduce them."""
        if self.reproduced:
            return "replay reproduced the recorded findings" + (
                " (some at other source lines: the code has changed since they were recorded)" if self.moved else "")
        head = {"interrupted": "replay interrupted before it reproduced the recorded findings:",
                "timeout": "replay stopped by its time limit (--seconds) before it reproduced the recorded findings:",
                "stopped": "replay stopped by its stop flag (raised from outside the run) before it reproduced the "
                           "recorded findings:",
                }.get(self.verdict, "replay DIVERGED from the recorded findings:")
        lines = [head] + ([f.text() for f in self.recorded] or ["(no findings recorded)"])
        if self.reworded:
            lines.append("(the same checkers, rules, CPUs, steps, sites and numbers as recorded: only their text "
                         "differs, as when the tool words a finding otherwise than when the file was saved; "
                         f"`rmm-mp stress --replay {shlex.quote(self.file)} --save-schedule NEW` records it again "
                         "with the text of this rmm-mp)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "verdict": self.verdict, "moved_lines": self.moved, "reworded": self.reworded,
                "recorded": [f.to_json() for f in self.recorded], "seen": [f.to_json() for f in self.seen]}


def compare(file: str, recorded: tuple[Finding, ...], report: StressReport) -> ReplayVerdict:
    """The verdict on ``report``, the replay of the schedule file ``file`` that recorded
    ``recorded``. Findings are compared without source line numbers (Finding.replay_text): any
    edit that moves a line would otherwise make every schedule file recorded before it diverge,
    though it found the same problem in the same function. Nor with the values only one run has
    (the CPU time of a stuck call, a grace time, a host's pid, and where the run was made: a
    traceback's directories, a machine's name: without_run_values), which no replay of such a
    finding could match, or none made from another checkout. Nor in their order: the report sorts findings by step
    and CPU, and those at the same step and CPU (or none: a cycle, a violation at the run's end)
    come in the order the checkers made them, which the tool may change as it may change a
    wording; the same findings in another order are the same findings."""
    # The replay's findings are left without the recording's segment directory too, as the
    # recorded ones are left without the replay's: masked on one side only, a directory named as
    # a word (RMM_MP_SHM_DIR=run) made '?' of that word in the recorded findings alone, and the
    # replay diverged.
    recorded_dir = next((f.shm_dir for f in recorded if f.shm_dir), "")
    seen = [dataclasses.replace(f, shm_dir=recorded_dir) for f in report.findings]
    same = Counter(f.replay_text() for f in recorded) == Counter(f.replay_text() for f in seen)
    # A finding stops a run, so an interrupted replay that made the recorded ones got that far;
    # one of a run that found nothing stopped before it could tell (an empty list is no proof).
    # So did one its time limit stopped: a recorded run stopped early saved its budget as the
    # step it stopped at, so a replay that ends "timeout" stopped short of the recorded run.
    # Likewise one stopped by its stop flag from outside the run (ended "stopped").
    stopped_early = report.interrupted or report.ended in ("timeout", "stopped")
    if same and (recorded or not stopped_early):
        verdict = "reproduced"
    elif report.interrupted:
        verdict = "interrupted"
    elif report.ended == "timeout":
        # Stopped part-way as an interrupted one is: a slow host is no divergence.
        verdict = "timeout"
    elif report.ended == "stopped":
        verdict = "stopped"
    else:
        verdict = "diverged"
    # Times, pids and paths differ between runs: only another line number is "moved".
    moved = verdict == "reproduced" and Counter(f.run_free_text() for f in recorded) != Counter(
        f.run_free_text() for f in seen)
    reworded = verdict == "diverged" and bool(recorded) and _pair_up([_identity(f) for f in recorded],
                                                                     [_identity(f) for f in seen])
    return ReplayVerdict(file, verdict, recorded, report.findings, moved, reworded)


@dataclass(frozen=True)
class _Number:
    """A number a finding's text names: the values it may be, and, for a bare run of hex digits
    (no 0x), its value read as hex."""

    values: frozenset[int | Fraction | tuple[object, ...]]
    """Exact values; a tuple for one whose exponent is past findings.EXPONENT_CAP (findings.scaled)."""
    bare: int | None = None

    def may_be(self, other: "_Number") -> bool:
        """Whether the two may be one number. Two bare runs are in one notation, so they are
        read alike: one number only if their digits are (12345678 read as hex is 305419896, but
        a replay's 305419896 is that decimal, not 0x12345678 written without its 0x)."""
        if self.bare is not None and other.bare is not None:
            return self.bare == other.bare
        return bool(self.values & other.values)


def _numbers(text: str) -> tuple[_Number, ...]:
    """The numbers ``text`` names, in order, each as the values it may be: 0x10 and 16 are the
    same number, -2 and 2 are not, 1.25 and 2.5e-05 are one each (findings.NUMBER); a bare run
    of 8 or more digits may be decimal or an address written without its 0x (82000000 is 82,000,000 or 0x82000000),
    one with a letter is hex (8008f000); two bare runs are read alike (_Number.may_be)."""
    out = []
    for m in NUMBER.finditer(text):
        sign = -1 if m["sign"] else 1
        hexed, fraction, grouped, bare, plain = m["hex"], m["fraction"], m["grouped"], m["bare"], m["plain"]
        bare_value = None
        values: set[int | Fraction | tuple[object, ...]]
        if hexed is not None:
            values = {int(hexed, 16)}
        elif fraction is not None:
            values = {scaled(decimal_value(fraction), m["exponent"])}
        elif grouped is not None:
            values = {decimal_value(grouped.replace(",", ""))}
        elif bare is not None:
            bare_value = sign * int(bare, 16)
            values = {int(bare, 16), *((decimal_value(bare),) if bare.isdigit() else ())}
        else:
            values = {decimal_value(plain)}
        out.append(_Number(frozenset((sign, *v) if isinstance(v, tuple) else sign * v for v in values), bare_value))
    return tuple(out)


_Identity = tuple[tuple[object, ...], tuple[_Number, ...]]


def _identity(finding: Finding) -> _Identity:
    """What a finding is apart from its wording: checker, rule, CPU, step and site without line
    numbers, and the numbers its message, call and details name (ReplayVerdict.reworded). A
    finding at the same step naming another granule or address is another finding, not a
    rewording of the recorded one; source line numbers (in a traceback) and the values only one
    run has (times, pids, paths) are left out, as a replay leaves them out."""
    text = without_run_values(without_lines("\n".join((finding.message, finding.call, *finding.details))),
                              finding.shm_dirs())
    return ((finding.checker, finding.rule, finding.cpu, finding.step, without_lines(finding.site)),
            _numbers(text))


def _same_identity(a: _Identity, b: _Identity) -> bool:
    """Two findings that may be one worded twice: the same checker, rule, CPU, step and site,
    and numbers that may be the same values, one by one in order."""
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(x.may_be(y) for x, y in zip(a[1], b[1]))


_Kinds = Counter[tuple[_Number, ...]]
"""Findings of one group (_pair_up) by their numbers: how many name each."""


def _pair_up(recorded: list[_Identity], seen: list[_Identity]) -> bool:
    """Whether each recorded finding can be paired with a seen one of its identity, each seen
    one used once (in any order: a bipartite matching). A number read both ways may match more
    than one finding, so the first that fits is not always right. Only findings of one checker,
    rule, CPU, step, site and count of numbers can pair, so each such group is matched alone,
    and in it the findings of the same numbers as one kind with their count (_fills): augmenting
    paths over every finding (up to 50 a CPU, 64 CPUs) took seconds for a few thousand, and
    recursed past Python's limit for a thousand alike."""
    if len(recorded) != len(seen):
        return False
    groups: dict[tuple[object, ...], tuple[_Kinds, _Kinds]] = {}
    for side, identities in enumerate((recorded, seen)):
        for head, numbers in identities:
            groups.setdefault((head, len(numbers)), (Counter(), Counter()))[side][numbers] += 1
    return all(_fills(left, right) for left, right in groups.values())


def _fills(left: _Kinds, right: _Kinds) -> bool:
    """Whether the findings of ``left`` pair up one to one with those of ``right``, numbers that
    may be the same values: a flow in which each kind carries its count, found greedily, then
    completed by augmenting paths, breadth first."""
    if sum(left.values()) != sum(right.values()):
        return False
    lefts, rights = list(left), list(right)

    def firsts(numbers: tuple[_Number, ...]) -> frozenset[int | Fraction | tuple[object, ...]]:
        return numbers[0].values if numbers else frozenset((0,))

    # Numbers that may be one share a value of their first number (two bare runs that are one
    # share their value read as hex): an index by it finds the few kinds one may pair with.
    by_value: dict[int | Fraction | tuple[object, ...], list[int]] = {}
    for j, numbers in enumerate(rights):
        for value in firsts(numbers):
            by_value.setdefault(value, []).append(j)
    edges = [[j for j in sorted({j for v in firsts(numbers) for j in by_value.get(v, ())})
              if all(x.may_be(y) for x, y in zip(numbers, rights[j]))] for numbers in lefts]
    into: list[list[int]] = [[] for _ in rights]    # the left kinds with an edge to each right one
    for i, js in enumerate(edges):
        for j in js:
            into[j].append(i)
    spare_l, spare_r = [left[n] for n in lefts], [right[n] for n in rights]
    flow: dict[tuple[int, int], int] = {}
    for i, js in enumerate(edges):
        for j in js:
            if n := min(spare_l[i], spare_r[j]):
                flow[i, j] = n
                spare_l[i] -= n
                spare_r[j] -= n
    for start in range(len(lefts)):
        while spare_l[start]:
            # From ``start`` to a right kind by any edge, from a right kind back to a left kind
            # by an edge that carries flow, until a right kind with room. None: no pairing of
            # all (a kind that no path leaves now, no augmentation elsewhere gives one).
            came: dict[int, int] = {}       # a right kind: the left kind it was reached from
            back: dict[int, int] = {start: -1}     # a left kind: the right kind it was reached from
            queue, end = deque([start]), -1
            while queue and end < 0:
                i = queue.popleft()
                for j in edges[i]:
                    if j not in came:
                        came[j] = i
                        if spare_r[j]:
                            end = j
                            break
                        for k in into[j]:
                            if k not in back and flow.get((k, j), 0):
                                back[k] = j
                                queue.append(k)
            if end < 0:
                return False
            path, j = [], end      # (left, right) pairs whose flow grows; then one that shrinks
            while True:
                i = came[j]
                path.append((i, j))
                if back[i] < 0:
                    break
                j = back[i]
            n = min([spare_l[start], spare_r[end]] + [flow[i, back[i]] for i, _ in path if back[i] >= 0])
            for i, j in path:
                flow[i, j] = flow.get((i, j), 0) + n
                if back[i] >= 0:
                    flow[i, back[i]] -= n
            spare_l[start] -= n
            spare_r[end] -= n
    return True


def recorded_findings(schedule: "Schedule | dict[str, Any]") -> tuple[Finding, ...]:
    if not isinstance(schedule, Schedule):
        schedule = parse(schedule, "schedule")
    return schedule.findings


class _Shown:
    """A value as an error message shows it (ConfigError shows the repr)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _Checks(Fields):
    """The checks of one schedule file, one per kind of value: Fields' (integer, boolean, keys)
    and the kinds only a schedule file has. Each returns the value or raises ConfigError."""

    def fail(self, key: str, value: object, expected: str) -> ConfigError:
        if value is None:
            value = _Shown("null")          # as the file spells it
        elif isinstance(value, (list, dict)) and len(repr(value)) > _SHOWN:
            value = _Shown(repr(value)[:_SHOWN - 4] + " ...")
        return super().fail(key, value, expected)

    def record(self, value: object, key: str, keys: tuple[str, ...]) -> dict[str, Any]:
        """A JSON object with exactly ``keys``: a missing one is an error (not a default: a file
        without its seed used to replay seed 0), and so is an unknown one (it would be ignored)."""
        if not isinstance(value, dict):
            raise self.fail(key, value, f"a JSON object with the keys {', '.join(keys)}")
        self.keys(value, key, keys, keys)
        return value

    def steps_interval(self, value: object, key: str) -> int:
        """Quiescent checks every N steps: a replay is deterministic, so a whole number >= 0."""
        expected = "a whole number of steps >= 0 between quiescent invariant checks (0 for none)"
        if not is_finite_number(value) or value < 0 or quiescent_every_problem(value, True):
            raise self.fail(key, value, expected)
        return int(value)

    def names(self, value: object, key: str, known: tuple[str, ...], what: str, each: str) -> tuple[str, ...]:
        """A list of names, each one of ``known`` (a string alone is not a list of one: it used
        to be taken letter by letter)."""
        if not isinstance(value, list):
            example = [value if isinstance(value, str) else known[0]]
            raise self.fail(key, value, f"a list of {what}, such as {json.dumps(example)}")
        for i, name in enumerate(value):
            if not isinstance(name, str) or name not in known:
                hint = suggestion(name, known) if isinstance(name, str) else ""
                raise self.fail(f"{key}[{i}]", name, f"{each}{hint}")
        return tuple(value)

    def switches(self, value: object, key: str, cpus: int) -> tuple[tuple[int, int], ...]:
        """[step, cpu] pairs: steps in increasing order (a replay keys on the step, so a step
        given twice would lose one), CPUs of the run's ``cpus`` (a CPU it does not have would
        never run)."""
        if not isinstance(value, list) or not value:
            raise self.fail(key, value, "a non-empty list of [step, cpu] pairs, the first [0, the CPU that ran first]")
        out: list[tuple[int, int]] = []
        last = -1
        for i, pair in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(where, pair, "a [step, cpu] pair")
            step, cpu = pair
            if not is_int(step) or not last < step <= _U64:
                after = f"greater than the previous pair's ({last})" if last >= 0 else "an integer >= 0"
                raise self.fail(where, pair, f"a [step, cpu] pair whose step is {after}")
            if not is_int(cpu) or not 0 <= cpu < cpus:
                raise self.fail(where, pair, f"a [step, cpu] pair whose cpu is one of the run's: an integer in "
                                             f"0..{cpus - 1} (config.cpus = {cpus})")
            out.append((step, cpu))
            last = step
        return tuple(out)

    def findings(self, value: object, key: str, cpus: int) -> tuple[Finding, ...]:
        if not isinstance(value, list):
            raise self.fail(key, value, "a list of findings (JSON objects)")
        return tuple(self.finding(item, f"{key}[{i}]", cpus) for i, item in enumerate(value))

    def finding(self, value: object, key: str, cpus: int) -> Finding:
        """One recorded finding, as Finding.to_json writes it."""
        d = self.record(value, key, _FINDING_KEYS)
        self.choice(d["checker"], f"{key}.checker", FINDING_CHECKERS)
        for name in ("rule", "message", "call", "site"):
            self.string(d[name], f"{key}.{name}")
        self.optional_integer(d["cpu"], f"{key}.cpu", 0, cpus - 1, "the CPU it was seen on")
        self.optional_integer(d["step"], f"{key}.step", 0, _U64, "the step it was seen at")
        details = d["details"]
        if not isinstance(details, list) or not all(isinstance(line, str) for line in details):
            raise self.fail(f"{key}.details", details, "a list of strings")
        return Finding.from_json(d)

    def optional_integer(self, value: object, key: str, lo: int, hi: int, what: str) -> int | None:
        if value is None:
            return None
        return self.integer(value, key, lo, hi, f"{what} (or null)")
