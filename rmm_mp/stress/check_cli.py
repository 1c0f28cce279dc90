"""`rmm-mp check` (a click command; rmm_mp/cli.py registers it): attach to a live machine,
park its CPUs at a quiescent point (hw.quiesce) and run the invariant checker on it.

    rmm-mp check MACHINE_NAME [--json F] [--wait S] [--no-pause]

Exit status: 0 the invariants hold, 1 they do not (on a quiescent machine, or one where nothing
takes part in pauses), 3 violations on a machine that was not quiescent, 4 they hold on a
machine that is not live (an orphan, or its RMM dead), 2 no such machine or a --json file that
could not be written, 130 Ctrl-C. Standard output closed early (`| head -1`) changes neither
(outpaths.echo).

This module parses and prints; the checking is rmm_mp.check's, the pausing hw.quiesce's, and
the per-CPU lines stress.watchdog's snapshots. It must not change the machine it looks at.
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

import click

from rmm_mp.check import invariants
from rmm_mp.clitypes import Command, FloatRange, Option
from rmm_mp.hw import orphans, segment
from rmm_mp.hw.cpuarea import binding_ended
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.quiesce import Pause, QuiesceError, census
from rmm_mp.interrupts import Interrupts, decided
from rmm_mp.outpaths import check_output, echo, write_files, write_json
from rmm_mp.words import count

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

SCHEMA = "rmm-mp-check-report/1"
"""The --json document's "schema" value; when its number changes: docs/latency.md, its JSON report section."""
_UNSETTLED = ("a violation may be a call in progress, or a change made while the check read the machine "
              "(the scan is not atomic)")


@click.command(cls=Command)
@click.argument("machine_name")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the result as JSON, with a verdict (exit status 0, 1, 3 or 4) only: with 2 or 130 none "
                   "is written, and a FILE already there is left as it was.")
@click.option("--wait", "wait_s", type=FloatRange(min=0), default=5.0, show_default=True, cls=Option,
              help="Seconds to wait for every CPU to park at a quiescent point before checking anyway "
                   "(inf: no limit; Ctrl-C still ends the wait).")
@click.option("--no-pause", is_flag=True, help="Check without parking the CPUs (a running machine's violations may "
                                               "then be calls in progress; not with --wait).")
def check(machine_name: str, json_path: str | None, wait_s: float, no_pause: bool) -> None:
    """Attach to a live machine and run the invariant checker on it.

    The invariants hold on a quiescent machine, with no CPU inside a call. So the check first
    asks every CPU of the machine to park at its next quiescent point, between two calls
    (`rmm-mp run` CPUs park between activity steps, free-running `rmm-mp stress` CPUs between
    operations). It checks once all are parked, then lets them go on. A CPU that is not parked
    within --wait seconds (a deterministic stress run has no such points) makes the check run
    anyway, saying so: a violation may then be a call in progress, or a change made while the
    check read the machine (the scan is not atomic). CPUs inside calls or holding locks are
    listed, with their call: only `rmm-mp stress` CPUs publish theirs, so a `rmm-mp run`
    CPU holding a lock reads "call not known".

    A participant whose process died without leaving (SIGKILL) is not waited for: a line
    names it (dead, not waited for: CPU n (pid P) ...), and its CPU's line, if listed, says
    "CPU n (its process is dead)", as does, on an orphan, the line of each CPU that no live
    process is bound to (its process died with the creator).

    Exit status: 0 the invariants hold; 1 they do not, on a quiescent machine or on one where
    nothing takes part in pauses ("nothing to pause": no run's CPU is at work, so it is
    checked as it is, its JSON quiescent false); 3 violations were seen on a machine that
    was not quiescent (not parked in time, or --no-pause), so they may be calls in progress
    or changes made during the scan (or, on an orphan whose creator was killed, or with a
    dead participant, calls cut off); 4 the invariants hold but the machine is not live: an
    orphan (nothing runs on it any more: the run that made it was killed with its reaper,
    before the check or during it, as the first line says), which a loop `while rmm-mp check
    NAME` would otherwise watch for ever, or one whose RMM is dead (every SMC fails: a run
    still live on it ends, so such a loop would get exit 2 soon after anyway); 2 no such
    machine (or no segment directory to look in: RMM_MP_SHM_DIR missing or not a directory),
    one that cannot be attached (still being made, a segment that cannot be mapped or is
    shorter than the machine needs), a bad option, every pause slot taken, or the --json file
    could not be written (or names a machine's shared-memory segment); 130 interrupted by
    Ctrl-C (no verdict: any pause it held is released and the CPUs go on); SIGTERM before
    the verdict ends it by the signal's default action (143 in a shell; a pause it held
    lapses within its 2 s lease). A reader of the output that leaves early (`rmm-mp check
    NAME | head -1`) ends the printing quietly; the status is still the verdict.
    """
    if no_pause and click.get_current_context().get_parameter_source("wait_s") \
            == click.core.ParameterSource.COMMANDLINE:
        # Silently ignored, it read as a wait that had taken place.
        raise click.UsageError(f"--wait = {wait_s:g}: there is nothing to wait for with --no-pause; "
                               "expected one of the two")
    try:
        _check(machine_name, json_path, wait_s, no_pause)
    except KeyboardInterrupt:
        # click would say "Aborted!" with exit status 1, the status of "the invariants do not hold".
        echo("interrupted (Ctrl-C): no verdict; any pause this check held is released", err=True)
        decided(130)


def _check(machine_name: str, json_path: str | None, wait_s: float, no_pause: bool) -> None:
    """The body of ``check`` (below click's handling of Ctrl-C)."""
    from rmm_mp.hw.segment import check_shm_dir
    from rmm_mp.machine import Machine
    from rmm_mp.stress.watchdog import DEAD, snapshots
    try:
        check_output("--json", json_path)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        machine = Machine.attach(machine_name)
    except ValueError as exc:
        # attach refuses a word that is no machine name (of another form than `rmm-mp clean` lists,
        # or a segment's file name) as "name = ...: expected ...", its API's wording: the argument
        # was wrong, so said as run's WORKLOAD or platform show's NAME is.
        if str(exc).startswith("name = "):
            raise click.UsageError(f"command line: MACHINE_NAME = {str(exc).removeprefix('name = ')}") from None
        # attach words every other refusal as a MachineError (the branch below): a ValueError not
        # about the name is none of its known refusals, and is printed as they are, its type named.
        echo(f"Error: {type(exc).__name__}: {exc}", err=True)
        decided(2)
    except MachineError as exc:
        # Every refusal is printed as clean, run and explore print theirs: "Error: " and its type
        # ("MachineError: ..."); no such machine read "Error: no machine named ..." alone.
        # A segment directory that is missing or no directory is named as `rmm-mp clean` names
        # it: attach said "no machine named NAME in DIR (it was closed, or never existed)".
        shown = exc
        try:
            check_shm_dir(create=False)
        except MachineError as unusable:
            shown = unusable
        # Each error below that ends the check is its last output: decided, so that a signal
        # after it does not turn exit status 2 into 130 or 143 (as after a verdict).
        echo(f"Error: {type(shown).__name__}: {shown}", err=True)
        decided(2)
    # A machine whose creator was killed (SIGKILL) and whose segments its reaper did not unlink
    # (killed too, say: hw.reaper) is an orphan: nothing runs on it (its CPUs died with it), so
    # nothing is paused, and the report says why.
    creator = _dead_creator(machine_name)
    with machine, ExitStack() as stack:
        quiescent = lapsed = stopped = False
        participants = parked = 0
        parent: tuple[int, int, int] | None = None
        dead: tuple[int, ...] = ()
        paused_at = time.monotonic()
        if not no_pause and creator is None:
            try:
                pause = stack.enter_context(Pause(machine.control))
            except QuiesceError as exc:
                # In the form of attach's refusals above, which exit 2 too.
                echo(f"Error: {type(exc).__name__}: {exc}", err=True)
                decided(2)      # detached as the SystemExit leaves the block, as after a verdict
            quiescent = pause.wait(wait_s)
            found = pause.census()
            participants, parked, dead = found.participants, found.parked, found.dead
            parent = _parent(machine, found.live)
        elif creator is None:
            dead = census(machine.control).dead
        report = invariants(machine)
        # Decided again once the machine is scanned (a directory listing and one /proc look): a
        # creator killed with its reaper during the pause or the scan left an orphan that the
        # first look did not see, and the check said "quiescent" (exit 0) of a machine nothing
        # runs on any more. An orphan stays one, so a later check sees it too.
        late = creator is None and (creator := _dead_creator(machine_name)) is not None
        died = _dead_participants(machine, dead)
        # A dead CPU's line says so: "(running)" read as if its call and locks were in use. On
        # an orphan no participant is counted (nothing was paused), but its CPUs' processes died
        # with the creator: each CPU that no live process is bound to is dead too.
        gone = {cpu for _, cpu in died if cpu is not None} | (_unbound_cpus(machine) if creator is not None else set())
        # Only a stress run's CPUs publish their calls, and a stress run has its segment.
        published = os.path.exists(segment.segment_path(machine_name, segment.STRESS_PART))
        snaps = snapshots(machine, dead=gone, published=published)
        if late:
            quiescent = False   # its CPUs died with the creator, during the check
        elif not no_pause and creator is None:
            # A stop (the run ended) lets parked CPUs leave: then the check may have seen calls.
            # So does a lapsed lease (this process stopped or starved for longer than it): the
            # CPUs went on meanwhile, and may have parked again by now.
            lapsed = not pause.held()
            stopped = machine.control.stop_requested
            quiescent = quiescent and not lapsed and not stopped and pause.quiescent()
        # Its run may have ended and closed the machine meanwhile: the mapping stays readable.
        closed = not os.path.exists(segment.segment_path(machine_name, "ctl"))
        stack.close()
        paused_ms = (time.monotonic() - paused_at) * 1000
        if late:
            state = (f"orphaned during this check: its creator (pid {creator}) ended while the machine was checked "
                     "(killed with its reaper?), so nothing runs on it any more; this is the machine as its CPUs "
                     "left it, and a violation may be a call cut off when they died (`rmm-mp clean` removes it)")
        elif creator is not None:
            state = (f"orphaned: its creator (pid {creator}) is gone, so nothing runs on it and nothing was paused; "
                     "this is the machine as it was left, and a violation may be a call cut off when its CPUs "
                     "died (`rmm-mp clean` removes it)")
        elif no_pause:
            state = f"not paused (--no-pause): {_UNSETTLED}"
        elif not participants:
            state = ("nothing to pause: no CPU of a workload or stress run is at work, so the machine is checked "
                     "as it is")
            quiescent = False
        elif lapsed:
            state = (f"NOT quiescent: the pause lapsed (this check was held up for longer than its "
                     f"{pause.lease_ns / 1e9:g} s lease), so the CPUs went on meanwhile; {_UNSETTLED}")
        elif stopped:
            state = ("NOT quiescent: the run was stopping (its stop flag is set), so its CPUs did not stay parked; "
                     f"{_UNSETTLED}")
        elif quiescent:
            state = (f"quiescent: {_parked_text(parked, participants, parent, 'between calls')} "
                     f"(paused for {paused_ms:.0f} ms)")
        else:
            state = (f"NOT quiescent: {_parked_text(parked, participants, parent, f'after {wait_s:g} s')}; "
                     f"{_UNSETTLED}")
        busy = [s for s in snaps if s.call or s.held]
        said = [state]
        if died:
            # Not awaited by the pause; the machine is not quiescent where they died.
            names = ", ".join(f"CPU {cpu} (pid {pid})" if cpu is not None else f"a process (pid {pid})"
                              for pid, cpu in died)
            said.append(f"dead, not waited for: {names}: ended without leaving the machine (killed?); a call "
                        "in progress there was cut off where it died, and its locks stay held")
        said.append(str(report))
        # Read once: the line, the JSON and the exit status must agree. Read for each, an RMM
        # that crashed between them (a live run's) gave exit 4 under output that said nothing
        # of it.
        rmm_dead = machine.dead
        if closed:
            said.append("the machine was closed while it was checked (its run ended): this is what it held then")
        if rmm_dead:
            said.append(f"the machine is dead: {machine.dead_reason}")
        said.extend(s.describe() for s in busy)
        # All but the last line as before: Ctrl-C there is "no verdict" (130). The last line is
        # written below with the signals held back up to the exit status.
        head, _, last = "\n".join(said).rpartition("\n")
        if head:
            echo(head)
        document = {
            "schema": SCHEMA, "machine": machine_name, "ok": report.ok, "quiescent": quiescent,
            "participants": participants,
            "parked": parked, "parent_participant": parent[0] if parent else None,
            "dead_participants": [{"pid": pid, "cpu": cpu} for pid, cpu in died],
            "granules": report.granules,
            "state_counts": report.state_counts, "dead": rmm_dead, "closed": closed, "orphan": creator is not None,
            "violations": [{"rule": v.rule, "pa": v.pa, "detail": v.detail} for v in report.violations],
            "calls_published": published,
            "cpus": [{"cpu": s.cpu, "call": s.call, "held": list(s.held), "host_held": list(s.host_held),
                      "dead": s.status == DEAD} for s in snaps]}
        settled = quiescent and not died
        # Not live: nothing will run on it again (an orphan), or every SMC fails (its RMM died).
        # Exit 0 said only "the invariants hold", and a script watching a run that was killed
        # with its reaper (`while rmm-mp check NAME`) went on watching the corpse for ever.
        live = creator is None and not rmm_dead
        status = (0 if live else 4) if report.ok \
            else 1 if settled or not (no_pause or participants or died or creator is not None) else 3
        # Still attached: the machine is closed as decided's SystemExit leaves the block, by
        # then with Ctrl-C and SIGTERM ignored (ends_with_command). Decided after the close, a
        # signal as it detached said "no verdict" (130) or killed the process (143) after the
        # verdict was printed.
        with Interrupts(sigterm=True) as stop:
            # The last line with Ctrl-C and SIGTERM held back (Interrupts.held): one sent as it
            # appears waits, and is ignored at the verdict. Written as a plain line, it reached
            # rmm-mp while the write was still returning: "no verdict" (130) or death by SIGTERM
            # (143) after the verdict was out.
            stop.held(lambda: echo(last))
            if json_path:
                errors: list[str] = []
                # Held back too, up to the verdict: the file is written after the last line, so
                # a signal sent as that line appears (a script reacting to it) often lands here,
                # a few milliseconds later. Written as a step, it ended the file: "could not
                # write the json report ...: interrupted", exit status 2, after the verdict was
                # out. The file is small (a line per CPU in a call, per violation).
                stop.held(lambda: write_files((("json", json_path, functools.partial(write_json, document)),),
                                              {}, errors))
                if errors:
                    # checked before attaching; a disk can still fill up meanwhile
                    stop.held(lambda: echo(f"Error: {errors[0]}", err=True))
                    stop.decided(2)
            # The verdict is given: a signal from here on must not turn it into 130 (Ctrl-C) or 143.
            stop.decided(status)


def _parent(machine: "Machine", live: tuple[tuple[int, bool], ...]) -> tuple[int, int, int] | None:
    """(pid, entries, parked entries) of the machine's creator if it is a live participant: a
    run's parent, while it builds the stress population or builds and tears down `rmm-mp run`'s
    realm instances (hw.quiesce); None if it is not one. A process may take part through several
    entries (a library caller's threads, each a Participant): all of them are the creator's, and
    counting only the first called the second "1 other"."""
    creator_pid = machine.control.creator[0]
    mine = [parked for word, parked in live if word & 0xFFFF_FFFF == creator_pid]
    if not mine:
        return None
    return creator_pid, len(mine), sum(mine)


def _parked_text(parked: int, participants: int, parent: tuple[int, int, int] | None, when: str) -> str:
    """"K of N CPUs parked WHEN", or, when the run's parent is among the participants, "K of N
    participants parked WHEN: the machine's creator (pid P ...": "1 of 1 CPUs parked" was
    said of the stress parent building its population, with no CPU process at work. The
    creator's entries are all counted as its own; the others are the participants left."""
    if parent is None:
        return f"{parked} of {participants} CPUs parked {when}"
    pid, entries, parent_parked = parent
    others = participants - entries
    if entries == 1:
        how = "" if parent_parked else ", not parked"
    else:
        how = f", {entries} participant entries" + (f", {entries - parent_parked} of them not parked"
                                                   if parent_parked < entries else "")
    who = (f"the machine's creator (pid {pid}{how}: a run's parent process, "
           "which builds and tears down its realms)")
    rest = f", and {count(others, 'other')}" if others else "; no CPU process takes part"
    return f"{parked} of {count(participants, 'participant')} parked {when}: {who}{rest}"


def _dead_participants(machine: "Machine", words: tuple[int, ...]) -> list[tuple[int, int | None]]:
    """(pid, CPU bound to that process or None) of each dead participant's process word (a
    process may have held several entries: named once)."""
    cpus: dict[int, int] = {}
    for cpu in range(machine.cpus):
        area = machine.cpu_area(cpu)
        try:
            cpus[area.binding()] = cpu
        finally:
            area.release()
    return [(word & 0xFFFF_FFFF, cpus.get(word)) for word in dict.fromkeys(words)]


def _unbound_cpus(machine: "Machine") -> set[int]:
    """The CPUs no live process is bound to: a free binding, or one naming a process that has
    ended (its pid gone, or now another process's). A CPU that holds a lock or is in a call is
    bound while its process lives (hw.memory says the same of a lock's holder)."""
    out: set[int] = set()
    for cpu in range(machine.cpus):
        area = machine.cpu_area(cpu)
        try:
            word = area.binding()
        finally:
            area.release()
        if binding_ended(word):
            out.add(cpu)
    return out


def _dead_creator(name: str) -> int | None:
    """The pid of machine ``name``'s creator if that process is gone (an orphan), else None."""
    for found in segment.list_machines():
        if found.prefix == name and orphans.is_orphan(found):
            return found.creator_pid
    return None
