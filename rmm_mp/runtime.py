"""CPU processes: one OS process per simulated CPU, each running a callable on its bound CPU.

``run_cpus`` starts the processes from an explicit ``spawn`` or ``forkserver`` context (never the
platform default, which changes between Python versions). Each child, once up, waits for the
parent's go (rmm_mp.cpu_start), then attaches the machine by name, binds its CPU, runs
``target(cpu, *args)`` and sends back its return value. The parent waits, calls ``on_tick``
for progress, asks every CPU to stop (the control block's stop flag) when time is up, when
``on_tick`` says so, on Ctrl-C, or when one CPU dies, and then collects a report. A Ctrl-C or
SIGTERM kills the CPU processes that have not had their go yet, still starting up and holding
nothing of the machine, and reports them as never started (RunResult.not_started), rather than
waiting for each start-up to end before it sees the stop.

When a CPU dies (an exception, a non-zero exit, a signal such as SIGKILL), or exits normally
but its result does not reach the parent (lost, or one that cannot be unpickled there:
CpuFailure.result_lost),
the run reports which CPU, how, the traceback if there is one, and the granules whose locks that
CPU still held, then ends cleanly: the others are stopped (terminated after a grace period) and the machine is left
to its creator, which unlinks it as usual. A CPU process that cannot be started at all (an
OSError from ``Process.start``: EAGAIN, ENOMEM) raises CpuStartError, naming the CPU and the
cause, once the processes already started are killed and reaped and every pipe end is closed.

This sits beside machine.py rather than in hw/: a CPU process runs the whole stack (host, EL3,
RMM), so its runtime must be able to attach a Machine. What one child does, from its start to
its exit, is rmm_mp.cpu_main's; how the parent watches them while they run (the
supervisor: their messages, the stop, interrupts, on_end, the report) is rmm_mp.cpu_supervisor's.

Children die with the process that started them: each holds the read end of a lifeline pipe
whose only writer is the parent, and a watcher thread blocked on it ends the child when it sees
end-of-file (the parent died, whatever the signal). This works for forkserver children too,
whose OS parent is the forkserver; spawn children also get PR_SET_PDEATHSIG.

``args`` do not travel with the process object but down each child's lifeline, so that 64
processes with a large plan start at once (rmm_mp.cpu_args says why and how).

Children ignore SIGINT and SIGTERM, which a terminal's Ctrl-C, `timeout` or a cancelled job
send to the whole process group: the parent handles them and stops the children where their
target looks at the stop flag (a run's CPUs between activity steps, a stress run's between
operations), so no handler is interrupted half-way (with ``sigterm_stops``, which the command-line
tools ask for, the parent takes SIGTERM as it takes Ctrl-C while it waits). Children start
with both blocked: one sent while a child is still importing waits, and is discarded once the
child ignores them. Children end once their result is sent (with os._exit, after the atexit
handlers and a flush of the standard streams: cpu_exit.end_process); one that does not stop within
the grace time is killed (SIGKILL, since it ignores SIGTERM); one whose result has already
arrived, killed while its process was still ending, is no failure (it did return), nor is
one whose closing of the machine failed after its result was sent (a warning:
RunResult.warnings; cpu_exit.close_machine says why the machine is not damaged by it).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.resource_tracker
import signal
import threading
from typing import Any, Callable, Mapping, Sequence

import psutil

from rmm_mp import cpu_args, cpu_main, cpu_start
from rmm_mp.cpu_main import STOP_SIGNALS
from rmm_mp.cpu_outcome import CpuStartError, RunResult
from rmm_mp.cpu_supervisor import _Supervisor, _sigterm_taken
from rmm_mp.interrupt_hold import InterruptHold
from rmm_mp.interrupts import forget_signals
from rmm_mp.machine import Machine

CONTEXTS = ("spawn", "forkserver")


def host_cores() -> list[int]:
    """The host cores this process may run on."""
    try:
        return sorted(psutil.Process().cpu_affinity() or [])
    except (AttributeError, psutil.Error):  # no affinity support on this OS
        return list(range(psutil.cpu_count(logical=True) or 1))


STARTUP_S = 60.0
"""How long CPU processes that wait for each other at a start barrier (`rmm-mp run`'s CPUs,
rmm_mp.host.run_realms's loops) get to all reach it, times oversubscription(), before they are
asked to stop: one stopped (SIGSTOP) or stuck while it started up holds the others there for
ever. The start-up (interpreter, imports, attaching the machine) takes a second or more on a
loaded 2-core host; a minute is far beyond that."""

SLACK_CAP = 6.0
"""The most oversubscription() stretches a wall-clock allowance."""


def oversubscription(cpus: int) -> float:
    """Simulated CPUs per host core this process may use, between 1 and SLACK_CAP: the factor by
    which a wall-clock allowance for a CPU's step (stopping after a timed run's end, the grace
    time before a kill) grows, since a step takes that much longer when the CPU processes share
    the cores (64 CPUs on 2 cores: a churn step of 3 s was measured). Capped (SLACK_CAP), so that
    a stuck CPU is still dealt with in bounded time: a grace time of 2 to 10 s grows to a minute
    at most, and a start-up allowance (STARTUP_S, and the stress tool's free-running one, the
    same) to 6 minutes."""
    return min(SLACK_CAP, max(1.0, cpus / max(1, len(host_cores()))))


def run_cpus(machine: Machine, target: Callable[..., Any], cpus: Sequence[int] | None = None,
             args: tuple[Any, ...] = (), *, context: str = "spawn",
             on_tick: Callable[[float], str | None] | None = None, tick_s: float = 0.1,
             timeout_s: float | None = None, grace_s: float = 10.0, pin: bool = False,
             tracing: bool = False, sigterm_stops: bool = False,
             on_end: Callable[[], None] | None = None,
             own_args: Mapping[int, tuple[Any, ...]] | None = None) -> RunResult:
    """Run ``target(cpu, *args, *own_args[cpu])`` on one process per CPU and wait for all of them.

    Args:
        machine: a machine this process created or attached.
        target: a picklable top-level callable; it should return when the control block's stop
            flag is set (``cpu.machine.control.stop_requested``).
        cpus: CPU ids to use (default: all of the machine's).
        args: picklable; they may hold multiprocessing's pipe ends, locks, events, queues and
            shared values (of ``context``), which reach the CPUs as with a Process's args.
            Pickled once for all the CPUs.
        own_args: per CPU id, args only that CPU gets, after ``args`` (none for a CPU not in
            it): what would cost every other CPU process memory for nothing (a realm's guest
            image only its owners rebuild). Each distinct object among them (by identity) is
            pickled once however many CPUs get it, a bytes object not at all (it arrives as
            the message that carried it: one copy in the CPU process, not two); they cannot
            hold what only multiprocessing can pickle (ValueError naming the type and the
            CPU), nor name a CPU not run (ValueError).
        context: "spawn" or "forkserver".
        on_tick: called about every tick_s seconds with the elapsed time, for progress; it may
            return a reason to stop the CPUs (a run that times itself from a point only the
            caller knows, such as a start barrier), which then get the grace time as after
            timeout_s. None: go on.
        timeout_s: request a stop after this many seconds.
        grace_s: how long stopped CPUs get to return before they are terminated.
        pin: pin CPU process i to the i-th host core this process may use (wrapping round);
            a process that cannot be pinned runs unpinned (its usage says pinned_core None).
        tracing: switch every CPU's trace ring on (the machine needs trace_capacity > 0).
        sigterm_stops: while starting the CPUs and waiting, take SIGTERM as Ctrl-C (stop the
            CPUs, return a result marked interrupted) instead of letting it end the process (the
            machine's handler): what a command-line tool wants, so that it can still report
            what ran. A SIGTERM ignored when the run began stays ignored. Up to on_end, if given,
            when the caller's SIGTERM handler is its SIGINT one (a guard that takes both): from
            there SIGTERM meets that handler (noted, as a Ctrl-C then is, if it raises).
        on_end: called once every CPU process is gone, before the results are gathered and
            while Ctrl-C and SIGTERM are still held (noted, taken after it as interrupts after
            the run): a caller whose Ctrl-C handler raises while the CPUs run (rmm_mp.interrupts'
            passthrough) turns that off here, so that a signal from then on cannot take the
            results with it (a KeyboardInterrupt that escaped run_cpus after its CPUs had ended
            lost them all). The handlers are put back only once run_cpus' clean-up is done (a
            signal there is noted, and raised after it: Raises). From just before on_end, a
            SIGTERM whose handler is SIGINT's too goes to it as SIGINT does, no longer taken as
            Ctrl-C by the runtime (sigterm_stops): a guard that takes both then names the first
            of two that land there (InterruptHold.own_handlers). Another SIGTERM handler (the
            machine's, which ends the process) is still stood in for up to the hold's end.

    Raises:
        CpuStartError: a CPU's pipes or process could not be made (an OSError: ``Process.start``
            raised, e.g. fork or spawn failing with EAGAIN or ENOMEM, or EMFILE); it names the
            CPU and the cause. Any other exception there propagates as it is.
            The processes already started are killed and reaped and every pipe end is closed
            before it is raised; a Ctrl-C (or, with ``sigterm_stops``, a SIGTERM) that came while
            the CPUs were being started is raised instead once that is done, as a
            KeyboardInterrupt, the CpuStartError its context. It is held back meanwhile by its
            handler (rmm_mp.interrupt_hold) as well as by the signal mask, which holds the
            calling thread only: in a process with another thread that does not block it (a
            pytest-xdist worker's execnet thread), one the kernel gave to that thread was raised
            on the main thread at once, in the middle of the start or of that cleanup. One
            raised as the start began (a signal already come that met a handler as it was
            wrapped) leaves as it is, and one that comes during the cleanup is then dropped.
        Any other error while the CPUs run (the supervisor's) is raised as it is, once the CPU
        processes are killed and reaped, with Ctrl-C and SIGTERM held back meanwhile and then
        dropped: the error wins over them. on_end is called then too (once, while they are
        still held), so that a caller's handler that raises up to it no longer does once put
        back: a Ctrl-C just after the hold's end replaced the error, and the caller took CPUs
        that had run for CPUs never started. An exception or KeyboardInterrupt of on_end's
        there is dropped, the error winning, and named in a note of the error's (add_note); so
        is an error of run_cpus' own clean-up (below), on_end still called after it.
        An error of run_cpus' own clean-up (killing and reaping the CPU processes, joining their
        args' feeders, closing the pipe ends and processes) leaves nothing open (but a CPU
        process that its kill did not end: waited for a while, then left): its other steps are
        still done. Where something else leaves run_cpus (CpuStartError, a KeyboardInterrupt,
        the supervisor's error) that wins, each of the clean-up's errors named in a note of it,
        in the order they came; otherwise (the run had ended) the clean-up's first error is
        raised, the run's result lost with it, and any later one named in a note of it.
        A Ctrl-C (or, with ``sigterm_stops``, a SIGTERM) during the clean-up after a run that had
        ended is held, and raised once every step is done (KeyboardInterrupt), the result lost,
        each of the clean-up's errors named in a note of it; one held as the CPUs were started and
        raised in place of a CpuStartError (or another error of the start's) names that error, then
        the clean-up's, in notes of its own. A clean-up error that loses a run interrupted (its
        CPUs killed in their start-up, mostly) says so in a note, before those of the later errors.
        A request to exit (SystemExit: a SIGTERM handler's sys.exit) is never a note: one that
        leaves run_cpus wins over a clean-up's error, and one raised during the clean-up leaves
        in place of what else was leaving, once on_end is told (after an error) and the
        interrupts held meanwhile are dropped, the clean-up's other errors named in notes of it.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context = {context!r}: expected one of {CONTEXTS}")
    ids = list(range(machine.cpus)) if cpus is None else list(cpus)
    for cpu_id in ids:
        if isinstance(cpu_id, bool) or not isinstance(cpu_id, int) or not 0 <= cpu_id < machine.cpus:
            raise ValueError(f"cpus: {cpu_id!r} is not a CPU id in 0..{machine.cpus - 1}")
    if tracing and not machine.trace_capacity:
        raise ValueError("tracing = True: the machine has no trace rings (Machine.create(trace_capacity=...))")
    cores = host_cores() if pin else None
    ctx = multiprocessing.get_context(context)
    control = machine.control
    control.clear_stop()
    procs: dict[int, multiprocessing.process.BaseProcess] = {}
    pipes: dict[int, multiprocessing.connection.Connection] = {}
    lifelines: list[multiprocessing.connection.Connection] = []
    # A CPU process can only ignore these once its interpreter has started: until then they are
    # blocked, which it inherits (and the parent gets any that came meanwhile once the
    # supervisor unblocks them, inside its Ctrl-C handling). The resource tracker is started
    # first: multiprocessing starts it at the first spawn and then unblocks these two signals
    # outright, not restoring the mask it found.
    multiprocessing.resource_tracker.ensure_running()
    payload, by_spawn = cpu_args.pickle_args(tuple(args))
    # Each distinct object of the CPUs' own args pickled once, however many CPUs get it.
    pickled_own: dict[int, tuple[bytes, bytes]] = {}
    for cpu_id in own_args or {}:
        if cpu_id not in ids:   # its args would reach no CPU, and the target not miss them
            raise ValueError(f"own_args: {cpu_id!r} is not one of the CPUs run ({', '.join(map(str, ids))})")
    for cpu_id in ids:
        for obj in (own_args or {}).get(cpu_id, ()):
            if id(obj) not in pickled_own:
                try:
                    pickled_own[id(obj)] = cpu_args.pickle_own(obj)
                except ValueError as exc:
                    raise ValueError(f"{exc} (it was in CPU {cpu_id}'s own args)") from None
    own_payloads = {cpu_id: tuple(pickled_own[id(obj)] for obj in (own_args or {}).get(cpu_id, ())) for cpu_id in ids}
    feeders: list[threading.Thread] = []
    hold = InterruptHold()
    supervisor: _Supervisor | None = None
    error: Exception | None = None  # the supervisor's, which wins over an interrupt
    interrupted = False
    leaving: BaseException | None = None    # what leaves run_cpus: it wins over an error of the clean-up's
    failures: list[BaseException] = []      # the clean-up's errors, first the one raised or named first
    result: RunResult | None = None
    forget_signals()    # a new run: no signal taken before it is repeated by one that comes now
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        # Held by their handlers too, from here to the supervisor's first wait: the mask holds
        # this thread only, and a process-directed signal given to another thread that does not
        # block it (a pytest-xdist worker's execnet thread) had CPython raise it here, in the
        # middle of the start, all the same. Noted, it is taken as one that comes as the CPUs
        # start: the supervisor kills those that have not had their go.
        hold.begin(_sigterm_taken() if sigterm_stops else None)
        for cpu_id in ids:
            ends: list[multiprocessing.connection.Connection] = []
            try:
                reader, writer = ctx.Pipe(duplex=False)
                ends += (reader, writer)
                life_reader, life_writer = ctx.Pipe(duplex=False)
                ends += (life_reader, life_writer)
                # typeshed's BaseContext (get_context of a str) lacks Process; every context has it.
                proc = ctx.Process(target=cpu_main.cpu_main, name=f"rmm-mp-cpu{cpu_id}",  # type: ignore[attr-defined]
                                   args=(machine.name, cpu_id, target, by_spawn, writer, life_reader, cores, tracing),
                                   daemon=True)
                proc.start()
            except BaseException as exc:
                # This CPU's pipe ends are closed now, not left to the garbage collector; the
                # finally below kills and reaps the processes already started and closes theirs.
                for end in ends:
                    end.close()
                if isinstance(exc, OSError):    # the host's refusal (EMFILE; fork/spawn: EAGAIN, ENOMEM)
                    raise CpuStartError(cpu_id, exc, list(procs)) from exc
                raise   # a bug (args multiprocessing cannot pickle) or a Ctrl-C: as it is
            # Registered as soon as it started, before anything else may fail: the clean-up then
            # kills, reaps and closes it with its ends. Registered after the closes below, a
            # failing close left it unkilled, unreaped and open until the garbage collector came.
            procs[cpu_id], pipes[cpu_id] = proc, reader
            lifelines.append(life_writer)
            try:    # the child's ends: it has its own copies now
                writer.close()
            finally:
                life_reader.close()
        # Started with STOP_SIGNALS blocked, as the main thread has them: they never take them.
        # One per child, so that a child that does not read holds up no other's args.
        # Listed once started: the cleanup joins each, and joining one that never started raises.
        for cpu_id, life_writer in zip(ids, lifelines):
            feeder = threading.Thread(target=cpu_args.feed, args=(payload, life_writer, own_payloads[cpu_id]),
                                      name=f"rmm-mp-args{cpu_id}", daemon=True)
            feeder.start()
            feeders.append(feeder)
        gate = cpu_start.StartGate(dict(zip(ids, lifelines)), dict(zip(ids, feeders)))
        supervisor = _Supervisor(machine, procs, pipes, on_tick, tick_s, timeout_s, grace_s, mask, sigterm_stops,
                                 on_end, gate, hold)
        result = supervisor.wait()
        return result
    except KeyboardInterrupt as exc:
        # One that met a handler not yet wrapped (begin: signal.signal runs the handler of a
        # signal already come first) leaves as it is: one noted during the clean-up below is a
        # second interrupt with no CPU left to stop, dropped. Raised by the hold's end, it
        # replaced the first, and the caller named the run's interrupt after the second.
        interrupted, leaving = True, exc
        raise
    except Exception as exc:
        leaving = exc
        if supervisor is not None:
            # The supervisor failed (an error, not an interrupt): it left this function's hold
            # standing and holding (it ends only a hold it began itself), so the CPU processes
            # it left are killed and reaped below with Ctrl-C and SIGTERM held, and one that
            # came meanwhile is dropped at the end, the error winning as it does over one that
            # came while a CPU was given its go. Not held, the Ctrl-C was raised from the first
            # join, left the other CPU processes running, and hid the error; ended by the
            # supervisor and begun again here, a Ctrl-C between the two did the same.
            error = exc
            if not hold.standing:   # ended as every CPU was gone (finish), and then an error
                hold.begin(_sigterm_taken() if sigterm_stops else None)
        raise
    except BaseException as exc:    # a request to exit (SystemExit): it leaves as it is
        leaving = exc
        raise
    finally:
        exit_request = leaving if _asks_to_exit(leaving) else None
        try:
            failures = _clean_up(procs, feeders, lifelines, pipes)
            if failures:
                failed, later = failures[0], failures[1:]
                if leaving is None:     # the run's result is lost to it, but nothing is left open
                    if result is not None and result.interrupted:
                        # Else an interrupted run (its CPUs killed in their start-up, mostly)
                        # became an error that did not say the run had been interrupted at all.
                        failed.add_note(_lost_to_it(result))
                    _note_dropped(failed, later)
                    raise failed
                if exit_request is None and _asks_to_exit(failed):
                    # A signal handler's sys.exit (reached through the machine's SIGTERM handler,
                    # which has closed every machine by then): raised below, once on_end is
                    # told, never a note. A note, it let the process go on, its machines closed.
                    exit_request = failed
                    _note_dropped(failed, later)
                else:
                    # What leaves wins (a CpuStartError, a Ctrl-C, the supervisor's error), as
                    # over on_end's (end_run): the clean-up's errors are not lost, but named.
                    _note_dropped(leaving, failures)
            if error is not None and supervisor is not None:
                supervisor.end_run(error)   # told while held (see the docstring, Raises)
            if exit_request is not None and exit_request is not leaving:
                raise exit_request
        finally:
            # Last: the supervisor restored the mask and ended the hold already, unless the
            # start failed before it ran; then a Ctrl-C held back meanwhile (pending on this
            # thread, noted by the hold) is raised here, once nothing is left open, not from
            # the first line of this clause, which left the started CPUs and their pipes.
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            finally:
                if interrupted:
                    hold.finish()   # raises nothing: the one under way stays the one raised
                else:
                    try:
                        hold.end(take=error is None and exit_request is None)
                    except KeyboardInterrupt as exc:
                        # Noted as the CPUs started or as the clean-up ran, it leaves in place of
                        # what else was to (the result, a CpuStartError, the clean-up's error):
                        # that, and each error of the clean-up, named in notes of it, as they are
                        # of any other that leaves. Its context alone, they went unsaid by a
                        # command that reports an interrupt's CPUs as not started.
                        _note_interrupted(exc, leaving, failures)
                        raise


def _note_dropped(leaving: BaseException, dropped: Sequence[BaseException]) -> None:
    """Name each of ``dropped`` (errors of run_cpus' clean-up) in a note of ``leaving``'s, in order."""
    for exc in dropped:
        leaving.add_note(f"run_cpus: its clean-up raised too, dropped: {type(exc).__name__}: {exc}")


def _lost_to_it(result: RunResult) -> str:
    """A note for the clean-up's error that an interrupted run's ``result`` is lost to."""
    unstarted = f"; CPUs never started: {', '.join(map(str, result.not_started))}" if result.not_started else ""
    return (f"run_cpus: the run had been interrupted ({result.interrupted_by}){unstarted}; "
            "its result is lost to this error")


def _note_interrupted(interrupt: KeyboardInterrupt, leaving: BaseException | None,
                      failures: Sequence[BaseException]) -> None:
    """Name in notes of ``interrupt`` (a Ctrl-C or SIGTERM held while the CPUs started or run_cpus
    cleaned up, raised once that was done) the error it replaces, if any, then the clean-up's."""
    if leaving is not None:
        interrupt.add_note(f"run_cpus: dropped for this interrupt: {type(leaving).__name__}: {leaving}")
    _note_dropped(interrupt, failures)


def _asks_to_exit(exc: BaseException | None) -> bool:
    """``exc`` is neither an error nor an interrupt (SystemExit, mostly): it must leave run_cpus."""
    return exc is not None and not isinstance(exc, (Exception, KeyboardInterrupt))


KILL_FAILED_WAIT_S = 1.0
"""How long run_cpus' clean-up waits for a CPU process whose kill raised to end anyway."""


def _clean_up(procs: dict[int, multiprocessing.process.BaseProcess], feeders: list[threading.Thread],
              lifelines: list[multiprocessing.connection.Connection],
              pipes: dict[int, multiprocessing.connection.Connection]) -> list[BaseException]:
    """Kill and reap the CPU processes left, join the args feeders, close every pipe end and
    process: each step tried whatever an earlier one raised, every exception returned, not
    raised: first the one run_cpus raises or names first (the first, but a request to exit
    before it), then the others in the order they came (only the first was kept, and a later
    step's error was lost without a word). Raised at once, it left the steps after it undone
    (CPU processes unreaped, pipes open until the garbage collector came) and came before
    run_cpus told on_end after an error. A
    process whose kill raised is waited for KILL_FAILED_WAIT_S only, and, still running then,
    left unclosed (closing it could only fail)."""
    failed: list[BaseException] = []

    def attempt(step: Callable[..., object], *args: Any) -> None:
        try:
            step(*args)
        except BaseException as exc:    # a KeyboardInterrupt too: the rest must still be done
            failed.append(exc)

    def reap(proc: multiprocessing.process.BaseProcess) -> None:
        if proc.exitcode is None:
            try:
                proc.kill()
            except BaseException:
                # Its kill's error is the one recorded; it is still waited for, for a while (the
                # signal may have gone through), so as to be reaped and closed below. Not waited
                # for, its close failed too ("still running"), a second error, and it was left
                # unreaped. Bounded: a process that was not killed may never end by itself.
                proc.join(KILL_FAILED_WAIT_S)
                raise
            # No timeout: SIGKILL can be neither caught, blocked nor ignored (a stopped process
            # ends too), so the join returns once the kernel has ended the process. Only a
            # process stuck in an uninterruptible kernel wait (D state) or a frozen cgroup
            # could hold it, and then no wait would reap it, nor multiprocessing's at exit.
            proc.join()

    def close(proc: multiprocessing.process.BaseProcess) -> None:
        if proc.exitcode is not None:   # one still running (its kill failed) cannot be closed
            proc.close()

    for proc in procs.values():
        attempt(reap, proc)
    for feeder in feeders:  # every child is gone: a write one waited in has failed (EPIPE)
        attempt(feeder.join)
    for life_writer in lifelines:
        attempt(life_writer.close)
    for reader in pipes.values():   # the supervisor closed them, unless it never ran
        attempt(reader.close)
    for proc in procs.values():     # each is reaped: free its sentinel now, not at GC
        attempt(close, proc)
    # A request to exit first (a SIGTERM handler's sys.exit as a step ran): it must not be a note.
    first = next((exc for exc in failed if _asks_to_exit(exc)), failed[0]) if failed else None
    return [first, *(exc for exc in failed if exc is not first)] if first is not None else []
