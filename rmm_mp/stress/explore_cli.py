"""`rmm-mp explore` (a click command; rmm_mp/cli.py registers it).

    rmm-mp explore [PAIR ...] [--list] [--inject BUG]... [--json FILE] [--timeout S]

Exit status: 0 every interleaving of every pair gave a reference outcome (a serial one, or for
a REC_ENTER one with the other call run while the REC runs); 1 some did not (or a reference run
did not complete or broke the pair's overlap rule, or a pair's setup failed, or a machine could
not be made (RMM_MP_SHM_DIR no usable directory, or full), or the run was interrupted, or the
JSON could not be written); 2 bad usage (an unknown pair, a pair named
twice, an unwritable --json path or one naming a machine's segment, two --inject bugs that
replace the same code).

This module parses and prints; the work is in stress.explore, the pairs in stress.explore_pairs.
"""

from __future__ import annotations

import shlex
import signal
import threading
from typing import Any

import click

from rmm_mp.clitypes import CatalogChoice, Command, FloatRange, Option, refuse_beside_listing
from rmm_mp.host.realm import describe_x0
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.tomlsrc import shown_text, suggestion
from rmm_mp.interrupts import Interrupts, repeated_signal
from rmm_mp.outpaths import check_outputs, echo, write_json
from rmm_mp.printable import shown_path
from rmm_mp.rmm.dispatch import COMMANDS
from rmm_mp.stress.bugs import BUGS, Counter, inject_problem
from rmm_mp.stress.explore import DEFAULT_TIMEOUT_S, Call, Outcome, PairReport, explore as explore_pair, in_pair_call
from rmm_mp.stress.explore_pairs import PAIRS
from rmm_mp.stress.explore_setup import SetupError
from rmm_mp.stress.findings import call_text
from rmm_mp.stress.probe import Patches

SCHEMA = "rmm-mp-explore-report/1"
"""The --json document's "schema" value; when its number changes: docs/latency.md, its JSON report section."""


@click.command(cls=Command)
@click.argument("pairs", nargs=-1, metavar="[PAIR]...")
@click.option("--list", "list_pairs", is_flag=True,
              help="List the catalog of pairs and exit (given alone: no other option or PAIR).")
@click.option("--inject", multiple=True,
              type=CatalogChoice(sorted(BUGS), "BUG", "catalogued bug", "rmm-mp stress --list-bugs"),
              help="Switch a catalogued bug on (repeatable, but not two that replace the same code; "
                   "`rmm-mp stress --list-bugs` lists them).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the results as JSON (also when a pair could not be set up or a machine not made: the "
                   "file's 'error' says why).")
@click.option("--timeout", type=FloatRange(0.1, 3600), default=DEFAULT_TIMEOUT_S, show_default=True, cls=Option,
              help="Seconds one call may run without finishing or waiting for a lock before the run is "
                   "abandoned (and reported).")
def explore(pairs: tuple[str, ...], list_pairs: bool, inject: tuple[str, ...], json_path: str | None,
            timeout: float) -> None:
    """Run each PAIR of RMI calls (a name from --list: a catalog of chosen pairs, not every pair of
    commands; default: the whole catalog, some 15 s) serially both ways and interleaved at every
    lock event of the first, and report each interleaving whose results or end state neither
    serial order gives (nor, where a call is a REC_ENTER, the other call run while the REC runs:
    docs/stress.md, "The interleaving explorer"). The lock events tried stop at 10,000: a pair
    whose first call has more says so ("stopped at the cap"), which does not fail it. Several
    pairs end with a summary line (naming those stopped at the cap), and, when some failed, the
    command that explores those alone (the same bugs and --timeout). An --inject bug whose code
    no pair's call reached (a setup's calls do not count: nothing races them) is named last
    ("injected BUG never ran"): the verdict says nothing of it.

    Exit status: 0 every interleaving of every pair gave a reference outcome; 1 one did not, a
    reference run did not complete or broke the pair's overlap rule, a pair's setup failed, a
    machine could not be made (its segment directory, /dev/shm or RMM_MP_SHM_DIR, missing, not
    a directory or full: an "Error: MachineError: ..." line, as `rmm-mp run` and `rmm-mp stress`
    say it, with the same status), the run was interrupted (Ctrl-C), or the JSON could not be
    written; 2 bad usage (an
    unknown pair, a pair named twice, an unwritable --json path or one naming a machine's
    shared-memory segment, two --inject bugs that replace the same code); SIGTERM ends it at once
    by the signal's default action (143 in a shell; no --json file written). A reader of the output that leaves early
    (`| head`) ends the printing quietly; the JSON is still written and the status stays the
    verdict."""
    if list_pairs:
        refuse_beside_listing(click.get_current_context(), "--list")
        width = max(len(n) for n in PAIRS)
        for pair in PAIRS.values():
            echo(f"{pair.name:<{width}}  {pair.summary}")
        return
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown:
        raise click.UsageError(f"unknown pair{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(shown_text(u) + _pair_hint(u) for u in unknown)}: "
                               "see `rmm-mp explore --list`")
    # Refused as --inject refuses a bug named twice: running it once silently hid that the
    # command line was not what it seemed (a script that meant another pair there).
    twice = [p for p in dict.fromkeys(pairs) if pairs.count(p) > 1]
    if twice:
        raise click.UsageError(f"PAIR = {' '.join(pairs)}: {', '.join(twice)} named more than once; "
                               "expected each pair at most once")
    if problem := inject_problem(inject):
        raise click.UsageError(f"--inject = {', '.join(inject)}: {problem[0]}; expected {problem[1]}")
    try:
        check_outputs((("--json", json_path),))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    names = pairs or tuple(PAIRS)
    calls: dict[str, int] = {}     # each injected bug's calls made by the pairs' calls (_pair_counter)
    # The command's guard (rmm_mp.interrupts), held from before the first pair to the exit
    # status: a Ctrl-C while the pairs run is _run's (it stops them); one after them is noted
    # (the command ends interrupted) and ends the JSON's writing if it lands there; one from
    # the output's last line (the summary, or a single pair's last line) on changes nothing
    # (held back, then ``decided``). The status used to be given by a bare SystemExit, and a
    # Ctrl-C after the last line (the copy `timeout -s INT` sends, landing as the process
    # ended) printed a traceback or made the process die of SIGINT.
    with Interrupts(sigterm=False) as stop:
        try:
            reports, interrupted = _run(names, inject, timeout, stop, calls)
        except _Stopped as exc:     # a pair that could not be set up, a machine not made
            message, done_before = exc.format_message(), exc.reports
            stop.step(lambda: echo(f"Error: {message}", err=True), read=True)
            if json_path:
                # Written all the same, with the pairs done and why the run stopped: a file left
                # by an earlier run stayed in place, for a script to read as this run's verdict.
                done, _ = stop.step(lambda: _write_json(json_path, done_before, inject, bool(stop.by), calls,
                                                        message), read=True)
                if not done:
                    stop.step(lambda: echo(f"Error: the json report was not written to {shown_path(json_path)}: "
                                           f"interrupted ({stop.by})", err=True), read=True)
            stop.decided(exc.exit_code)
        interrupted = interrupted or bool(stop.by)
        failed = interrupted or any(not r.ok for r in reports)
        if interrupted:
            stop.step(lambda: echo(f"interrupted (Ctrl-C) after {len(reports)} of {len(names)} pair(s)"
                                   + _failed_so_far(reports, inject, timeout)), read=True)
        if json_path:
            def write() -> bool:
                return _write_json(json_path, reports, inject, interrupted, calls)
            if stop.holding:
                # The output's last line was written held back (_run), nothing has taken the
                # signals since: the file, written after it, is held back too, up to the exit
                # status. A signal sent as that line appears (a script reacting to it) lands
                # here often, a few milliseconds later; as a step the file's write took it: a
                # Ctrl-C ended the file (exit status 1, "not written") and a SIGTERM the command
                # (143), after every pair's report was out.
                done, written = True, stop.held(write)
            else:
                done, written = stop.step(write, read=True)
            if not done:
                stop.step(lambda: echo(f"Error: the json report was not written to {shown_path(json_path)}: "
                                       f"interrupted ({stop.by})", err=True), read=True)
            failed = failed or not written
        stop.decided(1 if failed else 0)


def _pair_hint(name: str) -> str:
    """What a PAIR that is no pair was likely meant to be: a catalogued bug typed without its
    option, or a pair's name misspelt (the names are long: `rtt-create-vs-rtt-creat` said
    only "unknown pair", leaving the user to find the one letter in an 80-line listing)."""
    if name in BUGS:
        return f" (a bug of the catalogue: --inject {name})"
    return suggestion(name, PAIRS)


class _Stopped(click.ClickException):
    """What stopped the pairs before they were all explored (a pair that could not be set up, a
    machine not made), with the reports of the pairs done by then, for the JSON."""

    def __init__(self, message: str, reports: list[PairReport]) -> None:
        super().__init__(message)
        self.reports = reports


class _CtrlC:
    """SIGINT noted as well as raised: Python drops a KeyboardInterrupt raised inside a callback
    it runs itself (a finished thread's cleanup, "Exception ignored in ..."), and the command
    would then go on and exit 0; the note stops it after the pair under way. A SIGINT ignored
    when the command began (a background job of a script) stays ignored, and the copy of one
    that `timeout -s INT` sends to the process group is no second Ctrl-C (it cut short the
    clean-up of the pair under way: the abandoning of its calls, the joining of their threads,
    the closing of its machine), as in `rmm-mp run` and `rmm-mp stress` (rmm_mp.interrupts)."""

    def __init__(self) -> None:
        self.seen = False
        self.previous: Any = None

    def __enter__(self) -> "_CtrlC":
        # The signals taken before are the command's guard's (Interrupts, which forgot the
        # older ones as it began): a copy of one it took is still a copy here.
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handler(self, signum: int, frame: object) -> None:
        if repeated_signal(signum):
            return
        self.seen = True
        raise KeyboardInterrupt


def _run(names: tuple[str, ...], inject: tuple[str, ...], timeout: float,
         stop: Interrupts, calls: dict[str, int]) -> tuple[list[PairReport], bool]:
    """Explore each pair in turn with the bugs switched on; (reports, whether Ctrl-C cut it short).
    Every machine is closed by then (each run's own ``with``), and the bugs are switched off.
    The output's last line (the summary's, or a single pair's own) is written with Ctrl-C and
    SIGTERM held back (``stop.held``): the command's output may end there, and a signal sent as
    it appeared reached the command while its write was returning: "interrupted (Ctrl-C) after
    N of N pair(s)" with exit status 1, or death by SIGTERM, after every pair's report was out.
    One held back is ignored at the verdict; the --json file after that line is written with
    them still held back. Each bug's calls made by a pair's two calls are counted in ``calls``
    (pair_counter), by name."""
    patches = Patches()
    reports: list[PairReport] = []
    with _CtrlC() as ctrl_c:
        try:
            count = pair_counter(calls)
            for name in inject:
                BUGS[name].install(patches, count)
            for name in names:
                report = explore_pair(PAIRS[name], timeout=timeout)
                if ctrl_c.seen:
                    break       # a Ctrl-C Python swallowed during the pair: its report may be cut short
                reports.append(report)
                text = report_text(report)
                if name != names[-1]:
                    echo(text)
                    continue
                if len(names) > 1:
                    echo(text)
                    text = summary_text(reports, inject, timeout)
                text += "".join(f"\n{line}" for line in never_ran_lines(inject, calls))
                head, _, last = text.rpartition("\n")
                if head:
                    echo(head)
                stop.held(lambda: echo(last))
        except KeyboardInterrupt:
            return reports, True
        except SetupError as exc:
            raise _Stopped(f"pair {name!r} could not be set up: {exc}", reports) from None
        except MachineError as exc:
            raise _Stopped(f"{type(exc).__name__}: {exc}", reports) from None
        finally:
            patches.restore()
    return reports, ctrl_c.seen


def _again(failed: list[str], inject: tuple[str, ...], timeout: float) -> str:
    """The command that explores the pairs ``failed`` alone, with the same bugs and --timeout."""
    options = [arg for bug in inject for arg in ("--inject", bug)]
    if timeout != DEFAULT_TIMEOUT_S:
        options += ["--timeout", repr(timeout)]
    return shlex.join(["rmm-mp", "explore", *failed, *options])


def _failed_so_far(reports: list[PairReport], inject: tuple[str, ...], timeout: float) -> str:
    """What an interrupted run adds to its last line: the pairs that had failed before the
    Ctrl-C, and the command that explores them alone (a user who stops the whole catalogue on
    seeing NON-SERIAL scroll past got only "interrupted ... after N of M pair(s)")."""
    failed = [r.pair for r in reports if not r.ok]
    if not failed:
        return ""
    return f"; {len(failed)} FAILED before it ({', '.join(failed)}): {_again(failed, inject, timeout)}"


def pair_counter(calls: dict[str, int]) -> Counter:
    """The Counter of each injected bug's calls in ``calls``, counting only those a pair's two
    calls make: a setup's (an RTT_CREATE building the tables the calls use) runs before anything
    races it, and counted, it hid the line saying the bug was never explored. A pair's two calls
    run in two threads: a count is a read and a write, under a lock so that neither is lost."""
    lock = threading.Lock()

    def count(name: str) -> None:
        if in_pair_call():
            with lock:
                calls[name] = calls.get(name, 0) + 1
    return count


def never_ran_lines(inject: tuple[str, ...], calls: dict[str, int]) -> list[str]:
    """A line for each injected bug whose code no call of the pairs explored reached (their
    setups' calls are not counted: nothing races them): "every one serial" under exit status 0
    then said nothing of the bug, and read as the bug being tested and not found (`rmm-mp
    stress` says the same of its runs)."""
    return [f"injected {name} never ran: no pair's call explored here reached {BUGS[name].target_text()} "
            "(a setup's calls are not explored), so this tested nothing of the bug"
            for name in inject if not calls.get(name)]


def summary_text(reports: list[PairReport], inject: tuple[str, ...], timeout: float) -> str:
    """The end of a run of several pairs: how many, and the ones that failed with the command
    that explores them alone (the same bugs and --timeout: each run is a function of those, so it
    gives the same reports). Without it the output of the whole catalogue (nearly 600 lines)
    ended with the last pair's own line, often `every one serial`, under an exit status of 1,
    and the pairs that failed had to be searched for."""
    failed = [r.pair for r in reports if not r.ok]
    # A pair stopped at the cap passes on the interleavings tried: the summary says which
    # pairs those were. It said "every one gave a reference outcome" with the cap line
    # hundreds of lines up, inside the pair's block.
    capped = [r for r in reports if r.capped]
    cap = ""
    if capped:
        caps = sorted({r.capped for r in capped})
        cap = (f"{len(capped)} stopped at the cap of {' or '.join(f'{c:,}' for c in caps)} lock events "
               f"({', '.join(r.pair for r in capped)}): B was not inserted at A's later ones")
    if not failed:
        if cap:
            return (f"{len(reports)} pairs explored: every interleaving tried gave a reference outcome, "
                    f"but {cap}")
        return f"{len(reports)} pairs explored: every one gave a reference outcome"
    return (f"{len(reports)} pairs explored: {len(failed)} FAILED ({', '.join(failed)})"
            + (f"; {cap}" if cap else "") + "\n"
            f"explore {'it' if len(failed) == 1 else 'them'} alone: {_again(failed, inject, timeout)}")


def result_text(result: "tuple[int, ...] | str") -> str:
    """``RMI_SUCCESS (0x80007000, 0x200000)``: X0 by name, then X1..X4 up to the last non-zero one."""
    if isinstance(result, str):
        return result
    outputs = list(result[1:])
    while outputs and outputs[-1] == 0:
        outputs.pop()
    shown = f" ({', '.join(f'{v:#x}' for v in outputs)})" if outputs else ""
    return f"{describe_x0(result[0])}{shown}"


def _call_text(call: Call) -> str:
    cmd = COMMANDS.get(call[0] & 0xFFFF_FFFF)
    return call_text(call[0], call[1:], cmd.inputs if cmd else None)


def _seen_text(seen: tuple[tuple[str, str], ...]) -> str:
    return "".join(f"; {name}: {value}" for name, value in seen)


def _outcome_text(outcome: Outcome) -> str:
    text = f"A -> {result_text(outcome.a)}; B -> {result_text(outcome.b)}{_seen_text(outcome.seen)}"
    return f"{text}; {outcome.trouble}" if outcome.trouble else text


def report_text(report: PairReport) -> str:
    lines = [f"{report.pair}:",
             f"  A = {_call_text(report.a)} on CPU 0; B = {_call_text(report.b)} on CPU 1"]
    lines += [f"  serial {order}: {_outcome_text(o)}" for order, o in report.serial.items()]
    lines += [f"  {label}: {_outcome_text(o)}" for label, o in report.during.items()]
    lines += [f"  reference run did not complete: {t}" for t in report.serial_trouble]
    lines += [f"  overlap rule broken: {t}" for t in report.broken_rules]
    bad = len(report.non_serial)
    good = "every one serial" + (" or at a run point" if report.during else "")
    if report.tried == 0 and not report.during:
        # "0 tried: every one serial" would be a verdict about nothing (a pair kept for a
        # catalogued bug whose A the unmodified RMM refuses before any lock).
        good = "A took no lock, so there was no lock event to insert B at: the two serial orders only"
    if not bad and (report.serial_trouble or report.broken_rules):
        # "every one serial" under a reference that did not complete, or a broken overlap
        # rule, read as a pass on the line a user looks at, while the pair failed (exit 1).
        why = "a reference run did not complete" if report.serial_trouble else "an overlap rule was broken"
        good = f"FAILED: {why} (above), so matching it proves nothing"
    lines.append(f"  {report.tried} interleaving(s) tried in {report.seconds:.2f} s: "
                 + (f"{bad} NON-SERIAL" if bad else good))
    if report.capped:
        # Said, not failed: the interleavings tried stand, but "every one serial" is of a part.
        lines.append(f"  stopped at the cap of {report.capped:,} lock events: A has more, and B was not "
                     "inserted at any of them")
    for n in report.non_serial:
        lines.append(f"    lock event {n.event} ({n.where}): A -> {result_text(n.a)}; B -> {result_text(n.b)}"
                     f"{_seen_text(n.seen)}: {n.why}")
    return "\n".join(lines)


def _outcome_json(outcome: Outcome) -> dict[str, object]:
    return {"a": _result_json(outcome.a), "b": _result_json(outcome.b),
            "seen": dict(outcome.seen), "trouble": outcome.trouble}


def _result_json(result: "tuple[int, ...] | str") -> "list[int] | str":
    """X0..X4 as a list, or what ended the call instead."""
    return list(result) if isinstance(result, tuple) else result


def report_json(report: PairReport) -> dict[str, object]:
    return {"pair": report.pair, "ok": report.ok, "a": _call_text(report.a), "b": _call_text(report.b),
            "serial": {order: _outcome_json(o) for order, o in report.serial.items()},
            "during": {label: _outcome_json(o) for label, o in report.during.items()},
            "serial_trouble": list(report.serial_trouble), "broken_rules": list(report.broken_rules),
            "tried": report.tried, "capped": report.capped or None,
            "seconds": round(report.seconds, 3),
            "non_serial": [{"event": n.event, "where": n.where, "why": n.why, "seen": dict(n.seen),
                            "a": _result_json(n.a), "b": _result_json(n.b)} for n in report.non_serial]}


def _write_json(path: str, reports: list[PairReport], inject: tuple[str, ...], interrupted: bool,
                calls: dict[str, int], error: str | None = None) -> bool:
    """The JSON report; ``error`` is what stopped the pairs before they were all explored."""
    document = {"schema": SCHEMA, "ok": not interrupted and error is None and all(r.ok for r in reports),
                "inject": list(inject),
                "bug_calls": {name: calls.get(name, 0) for name in inject},
                "interrupted": interrupted, "error": error, "pairs": [report_json(r) for r in reports]}
    try:
        write_json(document, path)
    except OSError as exc:
        echo(f"Error: could not write the json report to {shown_path(path)}: {exc.strerror or exc}", err=True)
        return False
    return True
