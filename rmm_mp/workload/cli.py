"""The `rmm-mp run` command and the `rmm-mp workloads` group (click).

Both parse, call spec/resolve/run/render and print; rmm_mp/cli.py registers them. A bad
workload file or option is a usage error (exit 2) with the message spec and resolve produce
(file:line, key, value, expected); nothing is created for it.

This module owns the command-line surface of workloads. The logic lives in the modules it calls.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import click

from rmm_mp.clitypes import Command, Group, Int, TypedFloatParam, typed_word, usage_error
from rmm_mp.cpu_outcome import error_text
from rmm_mp.host import AllocatorError, HostError, RunQueueError
from rmm_mp.host.runqueue import MAX_CPUS
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.interrupts import Interrupts
from rmm_mp.machine import Machine, install_handlers
from rmm_mp.outpaths import check_outputs, echo, write_files
from rmm_mp.printable import shown_path
from rmm_mp.words import count as _count
from rmm_mp.workload import render, spec
from rmm_mp.workload.describe import describe, length, summary
from rmm_mp.workload.resolve import Workload, resolve, shortest_phase
from rmm_mp.workload.report import RunReport
from rmm_mp.workload.run import RunOptions, interrupted_after_run, run_workload
from rmm_mp.workload.fields import U64
from rmm_mp.workload.spec import MAX_ITERATIONS, MAX_SECONDS, MIN_SECONDS

_PATH = click.Path(dir_okay=False)


def _phases_refuse(ctx: click.Context | None, seconds: float) -> str | None:
    """Why `--seconds` of ``seconds`` is refused for the workload named on the command line
    although in its range, or None: a phase it leaves less than a nanosecond (resolve's
    check). For the hint of `--seconds 2e-9s`, which said "write 0.000000002" where the file's 4
    phases refuse it. WORKLOAD is read as typed (typed_word), wherever it is typed: click converts
    it after the options; a file that cannot be read gets no such reason here (its own error
    follows once the option is right)."""
    name = typed_word(ctx, "workload")
    if name is None:
        return None
    try:
        phases = spec.load(name).phases
    except ConfigError:
        return None
    short = shortest_phase(phases, seconds)
    if short is None:
        return None
    phase, sec = short
    return (f"too short for the file's {len(phases)} phases: {phase.key} {phase.name!r} would last {sec:.3g} s, "
            "less than 0.000000001 s")


_SECONDS = TypedFloatParam(MIN_SECONDS, MAX_SECONDS, _phases_refuse)
"""`run` and `workloads show` --seconds: a unit's hint names no number the workload refuses."""


def _write_outputs(report: RunReport, files: Sequence[tuple[str, str, Callable[[RunReport, str], None]]]) -> None:
    """Write the report's extra files (outpaths.write_files), the JSON last, so that its
    ``outputs`` names only the files that were written and its ``ok`` and ``output_errors``
    count the others (checked before the run, a path can still fail: disk full, a directory
    removed meanwhile; and a plot has nothing to draw when the run was stopped before any call:
    ValueError). A failure goes to report.output_errors: the text report shows it and the run
    exits 1. Ctrl-C or SIGTERM ends the file being written and skips the rest, each then "not
    written: interrupted"; the report is still printed."""
    write_files([(key, path, functools.partial(write, report))
                 for key, path, write in sorted(files, key=lambda f: f[0] == "json")],
                report.outputs, report.output_errors)


def announce(machine: Machine) -> None:
    """Name the machine on stderr before it runs, so that `rmm-mp check` can attach to it."""
    click.echo(f"machine {machine.name} (inspect it while it runs: rmm-mp check {machine.name})", err=True)


def _resolve(workload: str, **options: object) -> Workload:
    try:
        return resolve(spec.load(workload), **options)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise usage_error(exc) from None


@click.command(cls=Command)
@click.argument("workload", metavar="WORKLOAD")
@click.option("--platform", "platform_name", default=None,
              help="Platform: a bundled name (rmm-mp platform list) or a path to a platform TOML file "
                   "[default: the workload's, else host].")
@click.option("--cpus", type=Int(1, MAX_CPUS), default=None,
              help="CPU processes, one per simulated CPU [default: the workload's, else all of the "
                   "platform's, at most 64].")
@click.option("--seconds", type=_SECONDS, default=None,
              help="Run for this long instead of the workload's length (phases keep their proportions).")
@click.option("--iterations", type=Int(1, MAX_ITERATIONS), default=None,
              help="Run this many activity steps per CPU instead (phases keep their proportions).")
@click.option("--seed", type=Int(0, U64), default=None,
              help="Seed of every CPU's plan and choices [default: the workload's, else 0].")
@click.option("--json", "json_path", type=_PATH, default=None,
              help="Also write the report as JSON (docs/report-schema.json); a regular FILE is written whole or "
                   "not at all (a temporary file renamed over it). Not written when the run ends with an `Error:` "
                   "line and no report (the machine could not be made, the realms not built: exit status 1): a "
                   "FILE already there is then left as it was.")
@click.option("--csv", "csv_path", type=_PATH, default=None,
              help="Also write the latency records as CSV: the JSON's latency list, one row per call "
                   "and CPU (and \"all\"), header first, times in ns, their columns named with the unit (p50_ns, ...; "
                   "docs/latency.md).")
@click.option("--plot", "plot_path", type=_PATH, default=None,
              help="Also draw latency distributions as a PNG (needs matplotlib: pip install 'rmm-mp[plot]').")
@click.option("--trace", "trace_path", type=_PATH, default=None,
              help="Also write a Trace Event Format timeline (Perfetto, chrome://tracing): one track per CPU with "
                   "its newest 65,536 calls, REC runs and lock waits.")
@click.option("--no-latency", is_flag=True, help="Do not record latency (measures what recording costs).")
@click.option("--pin", is_flag=True, help="Pin CPU process i to the i-th host core this process may use (wrapping "
                                         "round; the report shows each process's core).")
@click.option("--save-tokens", "tokens_dir", type=click.Path(file_okay=False), default=None,
              help="Save every attestation token a realm running the attest guest obtained to this directory "
                   "(CBOR, one file each: "
                   "REALM-INSTANCE-GENERATION.cbor).")
@click.option("--console", is_flag=True,
              help="Show every realm's guest output (the last 1 KiB of its console and its last 8 LOG records), "
                   "not only that of the realms that failed (a lifecycle instance torn down during the run: only "
                   "when it failed).")
@click.option("--progress/--no-progress", default=None,
              help="Show the progress bar [default: when stderr is a terminal].")
def run(workload: str, platform_name: str | None, cpus: int | None, seconds: float | None, iterations: int | None,
        seed: int | None, json_path: str | None, csv_path: str | None, plot_path: str | None, trace_path: str | None,
        no_latency: bool, pin: bool, tokens_dir: str | None, console: bool, progress: bool | None) -> None:
    """Run WORKLOAD on a fresh machine and report per-CPU, per-call latency.

    WORKLOAD is a bundled workload (rmm-mp workloads list) or a path to a workload TOML file
    (docs/workloads.md). The file is checked completely before anything is created; the options
    override its values and are checked the same way.

    The report gives, per CPU and call (RMI, RSI, PSCI, REC exit by reason, host activity step),
    count, errors (failing calls, counted in the other figures too), p50, p90, p99, p99.9, max
    and mean; the time split into EL3 world switch, RMM handler and lock wait; lock
    contention per granule class and per CPU; each CPU process's CPU time, context switches and
    peak RSS; what every realm did; and the invariant check (docs/latency.md).

    Exit status: 0 when every CPU finished, every realm is fine, every check passed and the
    invariants hold; 1 when the machine could not be made (its segment directory, /dev/shm or
    RMM_MP_SHM_DIR, missing or full) or the file's realms could not be built, a CPU failed, a
    realm failed, a check or invariant broke, the run was interrupted, or a report file could
    not be written; 2 for a bad workload file or bad
    options (an output path that cannot be written is one: in a directory that does not exist,
    or in one that is not writable unless the file is there already and writable; and so is one
    file named by two options, an output path naming a file the run reads, or a machine's
    shared-memory segment). A reader of the output that leaves early (`| head`) ends the
    printing quietly; the status stays the run's.
    """
    w = _resolve(workload, platform=platform_name, cpus=cpus, seconds=seconds, iterations=iterations, seed=seed)
    # Every check that creates nothing comes first: the output probes below create directories.
    if plot_path:
        if no_latency:
            raise click.UsageError(str(ConfigError("command line", "--plot", plot_path,
                                                   "no --plot with --no-latency (the plot draws latency, which "
                                                   "--no-latency does not record)")))
        try:
            render.check_plot()
        except render.PlotUnavailable as exc:
            raise click.UsageError(str(exc)) from None
    try:
        check_outputs((("--json", json_path), ("--csv", csv_path), ("--plot", plot_path), ("--trace", trace_path)),
                      directories=(("--save-tokens", tokens_dir),), inputs=w.inputs())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    options = RunOptions(progress=progress, recording=not no_latency, pin=pin, trace_path=trace_path,
                         tokens_dir=tokens_dir, console=console, sigterm_stops=True)
    files = [(key, path, write) for key, path, write in (("json", json_path, render.write_json),
                                                          ("csv", csv_path, render.write_csv),
                                                          ("plot", plot_path, render.write_plot)) if path]
    # Ctrl-C or SIGTERM while the files are written or the report printed: the piece under way
    # ends (write_files names a file it stopped; the text is cut where it was), the rest is
    # still given, and the exit status is 1, as for a signal during the run: never a traceback
    # or click's bare "Aborted!". The
    # guard is held from before the run (run_workload's own nests in it, and takes a signal
    # noted before it began), so that none lands between the run's guard and this one. The
    # machine's SIGTERM handler goes in first, for the guard to put back when it ends.
    install_handlers()
    with Interrupts(sigterm=True, continues=True) as stop:
        try:
            report = run_workload(w, options, on_machine=announce)
        except (MachineError, AllocatorError, RunQueueError, HostError) as exc:
            # Building the file's realms failed before the CPUs started (the machine is gone
            # again). Said as click says an error, but ended by the guard: raised to click, the
            # error was printed after the guard had put the handlers back, and a signal then
            # turned exit status 1 into 143 (SIGTERM) or a KeyboardInterrupt traceback.
            why = error_text(exc)    # with its notes: a clean-up error of run_cpus' after a CpuStartError
            stop.step(lambda: echo(f"Error: {why}", err=True), read=True)
            stop.decided(1)
        # A signal noted after the run's guard (as the machine closed): the report says so, as
        # run_workload's own does for one noted before its guard ended.
        report, stop.by = interrupted_after_run(report, stop.by), ""
        stop.step(lambda: _write_outputs(report, files), read=True)
        # The text is made between two steps, where a signal is only noted: made inside the
        # printing's step, one signal (a second Ctrl-C after one that cut the teardown short)
        # lost the whole report. Only its printing is a step, which a signal cuts short.
        text = render.format_report(report)
        # A reader that left (`| head -1`) ends the printing quietly (outpaths.echo): the run's
        # verdict still gives the exit status. The last line (`result: ...`) and the notes
        # after it are written with signals held back up to the exit status (Interrupts.held):
        # one sent as that line appears is then too late to change it. Inside the printing's
        # step, it cut the printing short (exit status 1) after every line was out.
        printed = stop.give(text, echo)
        for message in report.output_errors:
            stop.held(functools.partial(echo, f"Error: {message}", err=True))
        if stop.by:
            said = "the report above is complete" if printed else "the report above is cut short"
            stop.held(lambda: echo(f"interrupted ({stop.by}) while the report was given: {said}", err=True))
        stop.decided(0 if report.ok and not stop.by else 1)


@click.group(name="workloads", cls=Group)
def workloads_group() -> None:
    """List, show and check workload files (docs/workloads.md)."""


@workloads_group.command(name="list")
def workloads_list() -> None:
    """List the bundled workloads with their descriptions."""
    for name in spec.bundled():
        click.echo(summary(spec.load(name)))


@workloads_group.command(name="show")
@click.argument("workload", metavar="WORKLOAD")
@click.option("--platform", "platform_name", default=None, help="Show it resolved for this platform.")
@click.option("--cpus", type=Int(1, MAX_CPUS), default=None, help="Show it resolved for this many CPUs.")
@click.option("--seconds", type=_SECONDS, default=None,
              help="Show it resolved for this length.")
@click.option("--iterations", type=Int(1, MAX_ITERATIONS), default=None,
              help="Show it resolved for this many steps per CPU.")
@click.option("--seed", type=Int(0, U64), default=None, help="Show it resolved with this seed.")
def workloads_show(workload: str, platform_name: str | None, cpus: int | None, seconds: float | None,
                   iterations: int | None, seed: int | None) -> None:
    """Check WORKLOAD (a bundled name or a path to a workload TOML file) and show it fully
    resolved: every realm with every value, each phase's activity weights per CPU and the owner
    of every lifecycle realm (--platform, --cpus, --seconds, --iterations and --seed mean what
    they mean to `rmm-mp run`).

    Exit status: 0 when WORKLOAD and the options are valid (shown); 2 when WORKLOAD is no bundled
    name and no file, the file is no valid workload or an option is bad (the first error is
    printed), as for `rmm-mp run`."""
    click.echo(describe(_resolve(workload, platform=platform_name, cpus=cpus, seconds=seconds,
                                 iterations=iterations, seed=seed)))


@workloads_group.command(name="validate")
# WORKLOAD, as the errors name it (spec.load) and as `run` and `show` call it: the usage
# line said FILE... (and show's NAME|FILE) while a bad one was "command line: WORKLOAD = ...".
@click.argument("files", metavar="WORKLOAD...", nargs=-1, required=True)
def workloads_validate(files: tuple[str, ...]) -> None:
    """Check each WORKLOAD (a bundled name or a file) completely, as `rmm-mp run` would before it starts
    anything: exit 0 if all are valid, 2 after printing the first error of each bad one. A
    reader of the output that leaves early (`| head -1`) ends the printing quietly; the status
    stays the verdict."""
    bad = 0
    # Each file's line is printed once the next file is checked: the last one is written below,
    # with Ctrl-C and SIGTERM held back up to the verdict. Written as the others, a signal sent
    # as it appeared reached the command while its write was returning: "Aborted!" with exit
    # status 1, or death by SIGTERM, after every line was out. One while the files are checked
    # still ends the command so.
    line: tuple[str, bool] | None = None
    for name in files:
        if line is not None:
            echo(*line)
        try:
            w = resolve(spec.load(name))
        except ConfigError as exc:
            bad += 1
            line = (str(exc), True)
            continue
        line = (f"{shown_path(name)}: valid ({_count(len(w.realms), 'realm kind')}, {_count(w.cpus, 'CPU')}, "
                f"{_count(len(w.phases), 'phase')}, {length(w.seconds, w.iterations)})", False)
    # The verdict, as `rmm-mp check` gives its own: a closed pipe (outpaths.echo) or a signal
    # after the last line (decided) no longer turns it into 1, 130 or 143.
    with Interrupts(sigterm=True) as stop:
        if line is not None:
            last = line
            stop.held(lambda: echo(*last))
        stop.decided(2 if bad else 0)
