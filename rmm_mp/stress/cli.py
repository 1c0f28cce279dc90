"""`rmm-mp stress` (a click command; rmm_mp/cli.py registers it; `rmm-mp check` is in
stress.check_cli).

    rmm-mp stress [WORKLOAD] --cpus N --seconds S --seed S [--schedule free|random|pct]
                  [--steps N] [--inject BUG]... [--checkers LIST] [--replay FILE] [--shrink]
                  [--trace F.json] [--save-schedule F] [--json F] [--list-bugs]

Exit status: 0 no finding, 1 findings (or an interrupted or stopped run, a replay that did not reproduce
its recording, an output file that could not be written, a machine that could not be made or a
CPU process that could not be started), 2 bad usage. A replay of a recording
with findings exits 1 whether it reproduced them or not: its verdict is in the JSON
(``replay.verdict``). Standard output closed early (`| head -1`) changes neither
(outpaths.echo).

This module parses and prints; the work is in stress.runner, stress.shrink, stress.schedule.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from typing import Callable, Mapping

import click

from rmm_mp.clitypes import (BadInputFile, CatalogChoice, Choice, Command, FloatRange, IntRange, Option, StepsOrSeconds,
                             TypedFloat, refuse_beside_listing)
from rmm_mp.cpu_outcome import error_text
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.tomlsrc import ConfigError, shown_text
from rmm_mp.interrupts import Interrupts
from rmm_mp.machine import install_handlers
from rmm_mp.outpaths import check_output, check_outputs, echo, write_files, write_json
from rmm_mp.printable import abbreviated, shown_line, shown_path, start_of
from rmm_mp.stress import schedule as schedule_file
from rmm_mp.stress import timeline
from rmm_mp.stress.bugs import BUGS, catalog_text, inject_problem
from rmm_mp.stress.config import (
    CHECKERS, DEFAULT_CHECKERS, INTEGERS, SCHEDULES, StressConfig, pct_depth_problem, quiescent_every_problem,
)
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.ops import WORKLOADS
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.ending import cpus_ready
from rmm_mp.stress.runner import run
from rmm_mp.stress.shared import StressSegment
from rmm_mp.stress.shrink import shrink
from rmm_mp.workload.cli import announce
from rmm_mp.workload.spec import MIN_SECONDS

SCHEMA = "rmm-mp-stress-report/1"
"""The --json document's "schema" value; when its number changes: docs/latency.md, its JSON report section."""
DETERMINISTIC_SECONDS = 600.0
"""The safety limit of a deterministic run when --seconds is not given (its budget is in steps)."""


def _checkers(value: str | None, inject: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        wanted = set(DEFAULT_CHECKERS)
        wanted.update(BUGS[b].checker for b in inject if BUGS[b].checker in CHECKERS)
        return tuple(c for c in CHECKERS if c in wanted)
    named = [c.strip() for c in value.split(",")]
    if named == ["all"]:
        return CHECKERS
    if named == ["none"]:
        return ()
    expected = f"expected a comma-separated subset of {', '.join(CHECKERS)}, 'all' or 'none'"
    if not any(named):
        raise ValueError(f"--checkers = {shown_text(value)}: {expected}")
    # Refused, not skipped: "lockdep,,ownership" is a list with a name missing (a typo or an
    # empty shell variable), and the run would not check what was meant.
    if not all(named):
        raise ValueError(f"--checkers = {shown_text(value)}: {expected} (item {named.index('') + 1} is empty)")
    special = [c for c in named if c in ("all", "none")]
    if special:
        raise ValueError(f"--checkers = {shown_text(value)}: '{special[0]}' stands alone and cannot be combined "
                         f"with other names; {expected}")
    unknown = [c for c in named if c not in CHECKERS]
    if unknown:
        raise ValueError(f"--checkers = {shown_text(value)}: unknown "
                         f"{', '.join(abbreviated(shown_path(u)) for u in unknown)}; {expected}")
    return tuple(named)


_REPLAYED = (("workload", "WORKLOAD"), ("cpus", "--cpus"), ("seed", "--seed"), ("schedule", "--schedule"),
             ("steps", "--steps"), ("pct_depth", "--pct-depth"), ("inject", "--inject"), ("checkers", "--checkers"),
             ("quiescent_every", "--quiescent-every"))
"""What a schedule file fixes: given with --replay, they would be silently ignored."""


def _refuse_ignored_options(ctx: click.Context, schedule: str, replay: str | None) -> None:
    """Refuse an option typed on the command line that this run would not use, rather than
    run without it: what a replay takes from its file, --steps on a free-running run (its
    length is --seconds), --pct-depth on a schedule other than pct."""
    def typed(name: str) -> bool:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    if replay is not None:
        for name, shown in _REPLAYED:
            if typed(name):
                raise ValueError(f"{shown} cannot be combined with --replay: a replay runs the workload, CPUs, seed, "
                                 f"schedule, steps, bugs and checkers recorded in {replay}")
        return
    if typed("steps") and schedule == "free":
        raise ValueError("--steps is the budget of a deterministic run (--schedule random or pct); a free-running "
                         "run lasts --seconds")
    if typed("pct_depth") and schedule != "pct":
        raise ValueError(f"--pct-depth applies to --schedule pct only (this run's schedule is {schedule})")


@click.command(cls=Command)
@click.argument("workload", required=False, type=Choice(sorted(WORKLOADS)), metavar="[WORKLOAD]")
@click.option("--cpus", type=IntRange(*INTEGERS["cpus"][:2]), default=2, show_default=True, cls=Option,
              help="CPU processes.")
@click.option("--seconds", type=FloatRange(MIN_SECONDS, 86_400), default=None,
              help="Free-running: how long to run, from when every CPU process is ready (default 10). "
                   "Deterministic: a safety limit (default 600).")
@click.option("--seed", type=IntRange(*INTEGERS["seed"][:2]), default=0, show_default=True, cls=Option,
              help="Drives the operations and the schedule.")
@click.option("--schedule", "schedule", type=Choice([s for s in SCHEDULES if s != "replay"]), default="free",
              show_default=True, cls=Option, help="free: the OS schedules the CPUs; random or pct: one CPU at a time, "
                                      "replayable.")
@click.option("--steps", type=IntRange(*INTEGERS["steps"][:2]), default=20_000, show_default=True, cls=Option,
              help="Step budget of a deterministic run: once spent, no CPU starts another operation, "
                   "but the ones under way finish, so the run takes more steps (the summary says how many).")
@click.option("--pct-depth", type=IntRange(*INTEGERS["pct_depth"][:2]), default=3, show_default=True, cls=Option,
              help="PCT bug depth d: d - 1 priority change points among the steps (d <= --steps + 1).")
@click.option("--inject", multiple=True,
              type=CatalogChoice(sorted(BUGS), "BUG", "catalogued bug", "rmm-mp stress --list-bugs"),
              help="Switch a catalogued bug on (repeatable; not two that replace the same code, such as "
              "lock-two-unordered and lock-two-check-late). A run that never calls the code a bug "
              "replaces says so: its 'no findings' tests nothing of that bug.")
@click.option("--checkers", default=None,
              help=f"Comma-separated subset of {', '.join(CHECKERS)}, 'all' (the default) or 'none' (the "
                   "operations alone, e.g. to measure what the checkers cost).")
@click.option("--quiescent-every", type=StepsOrSeconds(min=0), default=None,
              help="Invariant checks at quiescent points every N steps (deterministic, default 2,000) or "
                   "seconds (free-running, default 2); 0 for none but the check at the end of the run. "
                   "Without the invariants checker in --checkers there is no check at all, not even at the "
                   "end, and a value above 0 is refused.")
@click.option("--replay", "replay", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Replay a schedule file and compare with its recorded findings, their text without line "
                   "numbers, the watchdog's times and pids, Python objects' addresses or where the run was made "
                   "(a traceback's directories, machine names, the recording's and the replay's segment "
                   "directories, other absolute paths): a file recorded before the "
                   "tool worded a finding otherwise diverges; --save-schedule records it again (--json: the "
                   "verdict under replay.verdict).")
@click.option("--shrink", "do_shrink", is_flag=True, help="Shrink a failing deterministic run's schedule.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), default=None,
              help="Write the (shrunk) failing interleaving as a Trace Event Format timeline (marked incomplete "
                   "when a CPU's process died: its calls, locks and switches are lost).")
@click.option("--save-schedule", type=click.Path(dir_okay=False), default=None,
              help="Where a deterministic run writes its schedule (default: "
                   "stress-WORKLOAD-SCHEDULE-SEED[-BUG+BUG...].schedule.json "
                   "when it found something; for --replay NAME.schedule.json --shrink, NAME-shrunk.schedule.json; "
                   "for --replay given this option, the replayed schedule with this rmm-mp's findings; "
                   "never the file replayed; never one that cannot replay the run: no step taken, or a dead CPU's "
                   "switches lost).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@click.option("--list-bugs", is_flag=True,
              help="List the bug-injection catalog and exit (given alone: no other option or WORKLOAD).")
def stress(workload: str | None, cpus: int, seconds: float | None, seed: int, schedule: str, steps: int,
           pct_depth: int, inject: tuple[str, ...], checkers: str | None, quiescent_every: float | None,
           replay: str | None, do_shrink: bool, trace_path: str | None, save_schedule: str | None,
           json_path: str | None, list_bugs: bool) -> None:
    """Lock-correctness stress test: CPUs race every RMI and RSI path on shared realms while the
    lock-order, ownership and invariant checkers and the watchdog look on (docs/stress.md).

    WORKLOAD is the mix of operations, one of lifecycle, mixed, realms, rtts, running and tables
    (docs/stress.md, "Workloads"): mixed by default, or with --inject the first injected bug's
    own workload (rmm-mp stress --list-bugs).

    Exit status: 0 no finding; 1 findings, an interrupted run (Ctrl-C or SIGTERM: the report of
    what ran is still printed) or one whose stop flag another process raised (ended: stopped),
    a replay that did not reproduce its recording (a replay of a recording with findings exits
    1 either way: --json gives the verdict), or a report file
    that could not be written; 1 also, with no report but an `Error:` line saying why, when the
    machine could not be made (RMM_MP_SHM_DIR no usable directory, not enough free space in it:
    MachineError) or a CPU process could not be started (CpuStartError); 2 bad usage, found
    before the run starts (an option the run would not use, an output path that cannot be
    written or names a machine's shared-memory segment, two --inject bugs that replace the same
    code, a --replay file that is no schedule file). A reader of the output that leaves early
    (`| head`) ends the printing quietly; the files are still written and the status stays the
    run's."""
    if list_bugs:
        refuse_beside_listing(click.get_current_context(), "--list-bugs")
        click.echo(catalog_text())
        return
    try:
        _refuse_ignored_options(click.get_current_context(), schedule, replay)
        if schedule == "free" and replay is None:
            # Refused before the run: a free-running run has no schedule to save, shrink or draw.
            for option, given in (("--trace", trace_path), ("--save-schedule", save_schedule), ("--shrink", do_shrink)):
                if given:
                    raise ValueError(f"{option} needs a deterministic run (--schedule random or pct, or --replay)")
        check_outputs((("--trace", trace_path), ("--save-schedule", save_schedule), ("--json", json_path)))
        config, recorded = _config(workload, cpus, seconds, seed, schedule, steps, pct_depth, inject, checkers,
                                   quiescent_every, replay, trace_path)
        _check_other_paths(config, replay, do_shrink, trace_path, save_schedule, json_path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    progress = _progress(config)
    # After the run Ctrl-C or SIGTERM gives what one during the files' writing gives, not a
    # traceback or a silent death (rmm_mp.interrupts, as `rmm-mp run`): it ends the step under
    # way, a shrinking not yet begun is skipped (once begun, shrink takes signals itself), the
    # report is marked interrupted, the files are still written and the exit status is 1. The
    # guard is held from before the run (run's own nests in it, and takes a signal noted before
    # it began), so that none lands between the run's guard and this one. The machine's
    # SIGTERM handler goes in first, for the guard to put back when it ends.
    install_handlers()
    with Interrupts(sigterm=True, continues=True) as stop:
        try:
            report = run(config, on_tick=progress, sigterm_stops=True, on_machine=announce)
        except MachineError as exc:
            # The machine could not be made (no usable shared-memory directory, not enough
            # space): nothing was created, so there is nothing to report but why. Said as click
            # says an error, but ended by the guard, as `rmm-mp run` ends a failed build: a
            # signal after the line must not change exit status 1.
            why = error_text(exc)    # with its notes: a clean-up error of run_cpus' after a CpuStartError
            stop.step(lambda: echo(f"Error: {why}", err=True), read=True)
            stop.decided(1)
        stop.by = "" if report.interrupted else stop.by   # the run's signal is in its report
        _after_run(stop, report, config, replay, recorded, progress is not None, do_shrink, trace_path,
                   save_schedule, json_path)


def _after_run(stop: Interrupts, report: StressReport, config: StressConfig, replay: str | None,
               recorded: tuple[Finding, ...] | None, progressed: bool, do_shrink: bool, trace_path: str | None,
               save_schedule: str | None, json_path: str | None) -> None:
    """Print the report, compare a replay with its recording, shrink, write the files, exit.
    Each piece is a ``stop`` step: a print ends at a signal and the next ones still come (so
    that the report is given), the shrinking is skipped after one; but the report's last line,
    the files when nothing but they follow it, and the lines after the files are written with
    signals held back (Interrupts.held), so that one sent as the output ends does not change
    the exit status."""
    # A reader that left (`| head -1`) ends the printing quietly (outpaths.echo): the files are
    # still written and the exit status is still the run's.
    def say(text: str, err: bool = False) -> bool:
        given, whole = stop.step(lambda: echo(text, err=err), read=True)
        return given and bool(whole)

    if progressed:
        say("", err=True)
    # The text is made in a step of its own: a signal as it is made ends the step, and the
    # report is printed in full further down, marked interrupted. Its last line is written with
    # the signals held back (Interrupts.held): one sent as it appears waits for what follows
    # (taken there, as during the printing) or, when nothing follows, is ignored at the exit
    # status. Inside the printing's step, it printed the report again marked interrupted and
    # gave exit status 1 after every line was out.
    shown, text = stop.step(report.text, read=True)
    if shown:
        shown = stop.give(text, echo)
    # A run cut short before its limit (a signal, or its stop flag raised from outside: ended
    # "stopped") is no pass of the run asked for, whatever it found by then.
    failed = not report.ok or report.cut_short
    verdict = None
    if replay is not None and recorded is not None:
        verdict = schedule_file.compare(replay, recorded, report)
        say(verdict.text())
        failed = failed or not verdict.reproduced
    searched: dict[str, object] | None = None
    limit = ""
    if do_shrink and report.first() is not None:
        report, searched, limit = _shrunk(stop, report, say)
    unreplayable = report.unreplayable() if config.deterministic else ""
    saved = bool(config.deterministic and (save_schedule or (report.first() is not None
                                                             and (recorded is None or do_shrink))))
    # Saved, a schedule that cannot replay replayed to "DIVERGED" (a CPU killed before its
    # first step, say); asked for by name, it is refused by schedule_file.write, named among
    # the files not written.
    unsaved = saved and not save_schedule and bool(unreplayable)
    # The verdict is out when the report's last line was written held back and nothing has
    # taken the signals since (no replay verdict, no shrinking, no signal noted before that
    # line, a run not interrupted): only the files follow, and they are written held back too,
    # up to the exit status, as `check --json` and `explore --json` write theirs after their
    # last line. A signal sent as that line appears (a script reacting to it) lands here, a few
    # milliseconds later; taken before the files, it marked the report and the JSON interrupted
    # and gave exit status 1 after the whole report was out. The files of an interrupted run
    # are still written as a step, which a signal ends.
    verdict_out = stop.holding and not stop.by and not report.interrupted

    def tell(text: str, err: bool = False) -> None:
        stop.held(lambda: echo(text, err=err))

    if (saved or trace_path or json_path) and not verdict_out:
        # More is given after the report: a signal held back since its last line is taken now,
        # as one during the printing (the report and the files say it came).
        stop.take()
    if stop.by:
        # As a signal during the run would have: the report says it was interrupted (the
        # JSON too), printed again in full if it was not printed before the signal.
        report = report.marked_interrupted(by=stop.by)
        say(f"interrupted ({stop.by}) after the run; ended: {report.ended}" if shown else report.text())
    # Written as `rmm-mp run` writes its files (outpaths.write_files): one that fails (disk full,
    # a directory removed during the run) or is interrupted (Ctrl-C, SIGTERM) is named with the
    # reason, the others are still written (none after a signal during the writing), and the
    # exit status is 1.
    files: list[tuple[str, str, Callable[[str], object]]] = []
    if unsaved:
        (tell if verdict_out else say)(f"schedule not saved: {unreplayable}")
    elif saved:
        files.append(("schedule", save_schedule or default_schedule_path(config, replay),
                      functools.partial(schedule_file.write, report)))
    if trace_path:
        files.append(("trace", trace_path, functools.partial(timeline.write, report)))
    written: dict[str, str] = {}
    errors: list[str] = []
    if json_path:
        extra = {"replay": verdict.to_json() if verdict is not None else None, "shrink": searched}
        files.append(("json", json_path, functools.partial(_write_json, report, extra, written, errors)))
    # Otherwise a step, so that Ctrl-C or SIGTERM ends the file being written (write_files
    # names it).
    if files and verdict_out:
        stop.held(lambda: write_files(files, written, errors))
    elif files:
        stop.step(lambda: write_files(files, written, errors), read=True)

    # The lines after the files are the last output: written with the signals held back up to
    # the exit status, as the report's last line is.
    if "schedule" in written:
        tell(f"schedule: {shown_path(written['schedule'])}\nreplay: {report.replay_command(written['schedule'])}")
        if limit:
            # The search's bounds stopped it with cuts left to try: a search of the saved
            # schedule goes on from where it stopped (its shrunk schedule saved beside it).
            tell(f"shrink further: {report.replay_command(written['schedule'])} --shrink (the search stopped at "
                 f"its limit of {limit})")
    if not config.deterministic and report.first() is not None and not report.interrupted:
        # No `replay:` line can follow a free-running finding: say why, and what run saves one.
        # A deterministic run interleaves the CPUs differently, and may reach the bug only past its default budget
        # (--inject map-unprotected-leaks-lock, seed 1: some 32,000 steps): say so, or a run that
        # found nothing read as the free-running finding being false.
        tell("not replayable (a free-running run keeps no schedule); a deterministic run saves one when it finds "
             f"something (a deterministic run interleaves the CPUs differently, so it may need more --steps than its "
             f"{StressConfig.steps:,}): {_deterministic_command(config)}")
    if "trace" in written:
        tell(f"timeline: {shown_path(written['trace'])} (Perfetto: ui.perfetto.dev)")
        # Written all the same: the calls and locks of the CPUs that returned are the run's.
        lost = timeline.incomplete(report)
        if lost:
            tell(f"timeline incomplete: {lost}")
    if errors:
        tell("\nReport files not written\n" + "\n".join(f"  {e}" for e in errors))
        for message in errors:
            tell(f"Error: {message}", err=True)
    stop.decided(1 if failed or errors or stop.by else 0)


def _deterministic_command(config: StressConfig) -> str:
    """The `rmm-mp stress` command that runs a free-running run's workload, CPUs, seed, bugs and
    checkers one CPU at a time (--schedule random), so that a finding gets a schedule file.
    Its --quiescent-every and --seconds are left out: they count seconds free-running, steps
    (and a safety limit) in a deterministic run."""
    words = ["rmm-mp", "stress", config.workload]
    if config.cpus != StressConfig.cpus:
        words += ["--cpus", str(config.cpus)]
    words += ["--seed", str(config.seed)]
    for name in config.inject:
        words += ["--inject", name]
    if set(config.checkers) != set(DEFAULT_CHECKERS):
        words += ["--checkers", ",".join(config.checkers) or "none"]
    return " ".join([*words, "--schedule", "random"])


def _shrunk(stop: Interrupts, report: StressReport,
            say: Callable[[str], object]) -> tuple[StressReport, dict[str, object] | None, str]:
    """--shrink of a run with a finding: the report to go on with, the shrunk run's, what the
    search did (for the JSON; None when none ran), and the limit that stopped a search with cuts
    left to try ("" if none did: ShrinkResult.limit). A search that did not run or did not
    finish leaves the report marked interrupted, with what was left undone in ``not_done``
    (the JSON's too: an interrupted search used to look like a finished one there)."""
    if report.interrupted:
        # Skipped, not begun: up to two minutes of replays after the user asked to stop.
        say("not shrunk: the run was interrupted")
        return report.marked_interrupted(("not shrunk: the run was interrupted",)), None, ""
    if not report.schedule or not report.steps:
        # A finding before the first step (a CPU process killed while it started up): there is
        # no schedule to replay, and shrink refused it with a traceback.
        say("not shrunk: the run took no step, so it has no schedule to shrink")
        return report, None, ""
    why = report.unreplayable()
    if why:
        # A CPU that died took its switches with it: every replay would follow another
        # interleaving, and the search would shrink nothing.
        say(f"not shrunk: {why}")
        return report, None, ""
    shrunk, result = stop.step(lambda: shrink(report, on_attempt=lambda n, r, verdict: echo(
        f"  shrink attempt {n}: {_brief(r)} ({verdict})", err=True), sigterm_stops=True))
    if not shrunk:
        undone = f"not shrunk: interrupted ({stop.by})"
        say(undone)
        return report.marked_interrupted((undone,), by=stop.by), None, ""
    say(result.describe())
    say(result.report.findings_text())
    if result.interrupted:
        return (result.report.marked_interrupted((result.unfinished(),), by=result.interrupted_by), result.to_json(),
                "")
    return result.report, result.to_json(), result.limit


def _write_json(report: StressReport, extra: Mapping[str, object], written: dict[str, str], errors: list[str],
                path: str) -> None:
    """The report as JSON, written last, with ``extra`` (what the command did beyond the run:
    ``replay``, the verdict of a replay, null for a run of its own; ``shrink``, what a shrinking
    did, null if none ran), after its ``schema`` (SCHEMA: every outcome has it, so a script
    can tell this document from another command's): ``outputs`` names the files
    written (this one included) and ``output_errors`` the ones that could not be, as
    `rmm-mp run`'s JSON does."""
    write_json({"schema": SCHEMA, **report.to_json(), **extra, "outputs": dict(written), "output_errors": list(errors)},
               path)


def default_schedule_path(config: StressConfig, replay: str | None = None) -> str:
    """Where a deterministic run that found something writes its schedule without --save-schedule:
    named by workload, schedule kind, seed and injected bugs, so that runs differing in any of
    them keep their own file (named by workload and seed alone, a pct run overwrote the random
    run's schedule, and one bug's run another's of the same workload and seed, silently).

    A replay (``replay``: its file) saves one only when it was shrunk: that schedule is named
    after the file replayed, ``NAME-shrunk.schedule.json`` for ``NAME.schedule.json`` (in the
    current directory, as the others). Named as above, every replay's kind was "replay": the
    shrinking of `--replay stress-tables-replay-1-BUG.schedule.json` (a shrunk schedule, saved
    so) wrote over the very file it replayed, and the shrunk schedules of a random and a pct
    run of one seed took the same name."""
    if replay is not None:
        return _shrunk_name(replay)
    bugs = "-" + "+".join(config.inject) if config.inject else ""
    name = f"stress-{config.workload}-{config.schedule}-{config.seed}{bugs}.schedule.json"
    if len(name.encode()) > _NAME_MAX:
        # Nine bugs or so (they may be combined) name a file longer than a file system allows
        # (255 bytes): the run was refused, "File name too long". Their count and a digest of
        # their names keep such runs apart, as the names do.
        digest = hashlib.sha256("+".join(config.inject).encode()).hexdigest()[:8]
        name = (f"stress-{config.workload}-{config.schedule}-{config.seed}-{len(config.inject)}-bugs-{digest}"
                ".schedule.json")
    return name


SHRUNK_SUFFIX = "-shrunk"
"""What the default name of a replay's shrunk schedule adds to the name of the file replayed."""


def _shrunk_name(replay: str) -> str:
    """The default file of the shrunk schedule of a replay of ``replay``: its name (directory
    left out, ``.schedule.json`` or ``.json`` taken off) with SHRUNK_SUFFIX, in the current
    directory; never ``replay`` itself, even through a link (the suffix is added again), and
    cut to a name a file system takes (a digest of the whole keeps long names apart).

    Lengths and the digest are of the name's bytes as the file system has them (os.fsencode): a
    name that is not UTF-8 (`--replay $'\\xff.schedule.json'`) reaches here with its bytes as
    lone surrogates, which str.encode refuses; the replay and shrink were refused with "'utf-8'
    codec can't encode character"."""
    stem = os.path.basename(replay)
    for ending in (".schedule.json", ".json"):
        if stem.endswith(ending) and len(stem) > len(ending):
            stem = stem[:-len(ending)]
            break
    while True:
        stem += SHRUNK_SUFFIX
        name = stem + ".schedule.json"
        if len(os.fsencode(name)) > _NAME_MAX:
            digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:8]
            # 100 bytes of the replayed file's name are enough to tell which it was; cut
            # between characters, so that a UTF-8 one is never left half.
            head = stem
            while len(os.fsencode(head)) > 100:
                head = head[:-1]
            name = f"{head}-{digest}{SHRUNK_SUFFIX}.schedule.json"
        if os.path.realpath(name) != os.path.realpath(replay):
            return name


_NAME_MAX = 255
"""The longest file name, in bytes, of the common Linux file systems (ext4, xfs, btrfs, tmpfs)."""


def _check_other_paths(config: StressConfig, replay: str | None, do_shrink: bool, trace_path: str | None,
                       save_schedule: str | None, json_path: str | None) -> None:
    """The paths check_outputs cannot see before the configuration is known: the default
    schedule file, written (in the current directory) when the run finds something, unless it
    replays without --shrink; and the --replay file, which --trace or --json would overwrite
    with something else (a --save-schedule of a replay may replace it: a shrunk schedule is
    written instead of the original)."""
    if replay is not None:
        for option, path in (("--trace", trace_path), ("--json", json_path)):
            if path is not None and os.path.realpath(path) == os.path.realpath(replay):
                raise ConfigError("command line", option, path, "a file of its own (it is the --replay file, "
                                                                "which the run reads)")
    if not config.deterministic or save_schedule is not None or (replay is not None and not do_shrink):
        return
    default = default_schedule_path(config, replay)
    for option, path in (("--trace", trace_path), ("--json", json_path)):
        if path is not None and os.path.realpath(path) == os.path.realpath(default):
            raise ConfigError("command line", option, path, "a file of its own (a run that finds something "
                                                            "writes its schedule there; name another with "
                                                            "--save-schedule)")
    try:
        check_output("the schedule file (--save-schedule's default)", default)
    except ConfigError as exc:
        raise ValueError(f"{exc}; name another with --save-schedule") from None


def _progress(config: StressConfig) -> "Callable[[float, StressSegment], None] | None":
    """A progress line on a terminal's stderr (nothing when it is not one), redrawn once a
    second: while the CPU processes start up (25 to 50 s at 64 CPUs on a 2-core host) how many
    are ready, redrawn too as that count moves, then the operations done."""
    if not sys.stderr.isatty():
        return None
    shown = [0, -1, 0]      # the second last drawn, the ready count drawn, the longest line drawn
    ready = [0]             # CPUs never stop being ready: once all are, they need no counting

    def tick(elapsed: float, seg: StressSegment) -> None:
        if ready[0] < config.cpus:
            ready[0] = cpus_ready(seg, config)
        if int(elapsed) <= shown[0] and ready[0] == shown[1]:
            return
        shown[0], shown[1] = int(elapsed), ready[0]
        ops = sum(seg.ops(c) for c in range(seg.cpus))
        line = progress_text(elapsed, config.cpus, ready[0], ops, seg.step if config.deterministic else None)
        # Padded to the longest line drawn: the start-up's line is longer than the first lines
        # of operations that replace it, and a carriage return overwrites only what is written.
        shown[2] = max(shown[2], len(line))
        click.echo("\r" + line.ljust(shown[2]), err=True, nl=False)
    return tick


def progress_text(elapsed: float, cpus: int, ready: int, ops: int, steps: int | None) -> str:
    """The progress line: how many CPU processes are ready until all are (the run's time counts
    from there), then the operations done (and, deterministic, the steps taken)."""
    if ready < cpus:
        return f"  {elapsed:4.0f} s: starting CPUs: {ready} of {cpus} ready   "
    step_text = f", {steps:,} steps" if steps is not None else ""
    return f"  {elapsed:4.0f} s: {ops:,} operations{step_text}   "


def _brief(report: StressReport) -> str:
    f = report.first()
    # Escaped as the report prints it (an ESC in a CPU's exception message), cut outside an escape.
    return _cut_at_word(shown_line(f.headline()), 100) if f is not None else "no finding"


def _cut_at_word(shown: str, end: int) -> str:
    """``shown``, or its words that fit in ``end`` characters with "..." (a long word, a path, cut outside
    an escape: start_of). Cut at the 100th, "RTT[L1] 0x8009" read as a whole address."""
    if len(shown) <= end:
        return shown
    head = start_of(shown, end - 3)
    space = head.rfind(" ")
    if shown[len(head)] != " " and space >= len(head) - 20:
        head = head[:space]
    return head.rstrip() + "..."


def _typed(number: float) -> str:
    """An option's number as typed: an integer (StepsOrSeconds keeps one exact) in full, as
    ``:g`` would show 2^64 as 1.84467e+19; a float as its text (StepsOrSeconds keeps it:
    ``1e999``, not the ``inf`` made of it), else as ``:g``."""
    if isinstance(number, TypedFloat):
        return number.text
    return str(number) if isinstance(number, int) else f"{number:g}"


def _config(workload: str | None, cpus: int, seconds: float | None, seed: int, schedule: str, steps: int,
            pct_depth: int, inject: tuple[str, ...], checkers: str | None, quiescent_every: float | None,
            replay: str | None, trace_path: str | None) -> tuple[StressConfig, tuple[Finding, ...] | None]:
    if replay is not None:
        # Every value of the file is checked here, before a machine exists (stress.schedule).
        try:
            recorded = schedule_file.read(replay)
        except ValueError as exc:
            # The invocation was right, the file's content was not: the error alone, without
            # click's usage block, as for a bad workload or platform file (exit status 2 too).
            raise BadInputFile(str(exc)) from None
        limit = seconds if seconds is not None else DETERMINISTIC_SECONDS
        return schedule_file.replay_config(recorded, seconds=limit, log_points=bool(trace_path)), recorded.findings
    if problem := inject_problem(inject):
        raise ValueError(f"--inject = {', '.join(inject)}: {problem[0]}; expected {problem[1]}")
    det = schedule != "free"
    chosen = _checkers(checkers, inject)
    if quiescent_every is None:
        quiescent_every = 2000 if det else 2.0
    elif every_problem := quiescent_every_problem(quiescent_every, det):
        raise ValueError(f"--quiescent-every = {_typed(quiescent_every)}: {every_problem}")
    elif quiescent_every and "invariants" not in chosen:
        # A quiescent point exists to run the invariant checker: without it the option does nothing.
        raise ValueError(f"--quiescent-every = {_typed(quiescent_every)}: quiescent points run the invariant checker, "
                         f"which this run's checkers ({', '.join(chosen) or 'none'}) leave out; add invariants "
                         "to --checkers, or leave --quiescent-every out")
    if not det or isinstance(quiescent_every, TypedFloat):
        # Seconds (an integer typed is read exactly, for steps); a plain float past the checks,
        # its text kept for their errors only.
        quiescent_every = float(quiescent_every)
    if schedule == "pct" and (depth_problem := pct_depth_problem(pct_depth, steps)):
        raise ValueError(f"--pct-depth = {pct_depth} with --steps = {steps}: {depth_problem}")
    return StressConfig(
        workload=workload or (BUGS[inject[0]].workload if inject else "mixed"), cpus=cpus,
        seconds=seconds if seconds is not None else (DETERMINISTIC_SECONDS if det else 10.0), seed=seed,
        schedule=schedule, steps=steps, pct_depth=pct_depth, inject=inject, checkers=chosen,
        quiescent_every=quiescent_every, log_points=bool(trace_path) and det), None
