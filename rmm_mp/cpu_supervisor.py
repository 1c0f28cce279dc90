"""The parent's side of run_cpus while the CPUs run (rmm_mp.runtime): the supervisor.

``_Supervisor.wait`` watches the started CPU processes until every one is gone: it reads what
each sends on its result pipe (its start-up's UP, which it answers with the go: rmm_mp.cpu_start;
then its result, a warning or its error), calls ``on_tick``, stops the run (the control block's
stop flag) when time is up, when ``on_tick`` says so or when a CPU dies, kills those that do not
stop within the grace time, takes Ctrl-C and SIGTERM as they come (the first stops the run, a
second kills the CPUs; rmm_mp.interrupt_hold holds them while it handles one), tells the caller
the run is over (``end_run``: on_end) and builds the RunResult. ``_sigterm_taken`` is the
SIGTERM-as-Ctrl-C handler of run_cpus' ``sigterm_stops``, which run_cpus uses as well.

This module owns that wait and what it reports. It must not start CPU processes or make their
pipes, lifelines or argument feeders, nor reap or close what run_cpus made once the wait is over
(run_cpus' clean-up does, and ends a hold run_cpus began); of the machine it touches only the
control block's stop flag and, for a CPU that failed, the granule locks it still held (read).
"""

from __future__ import annotations

import multiprocessing.connection
import signal
import time
import traceback
from typing import Any, Callable

from rmm_mp import cpu_start
from rmm_mp.cpu_outcome import CpuFailure, ProcessUsage, RunResult
from rmm_mp.interrupt_hold import InterruptHold, interrupt_of
from rmm_mp.interrupts import repeated_signal
from rmm_mp.hw.granule import cpu_owner
from rmm_mp.machine import Machine


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    # The copy GNU timeout sends is ignored here, in the handler, wherever it lands (inside the
    # supervisor's own handling of the first, too), not taken as a second SIGTERM.
    if not repeated_signal(signum):
        raise KeyboardInterrupt("SIGTERM")


def _sigterm_taken() -> dict[int, Any]:
    """Take SIGTERM (`timeout`, a cancelled job, `kill`) as Ctrl-C from the CPUs' start to the
    supervisor's end (run_cpus's sigterm_stops): the CPUs stop where their target looks at the
    stop flag (a run between activity steps, a stress run between operations) and the caller
    gets its report, where the machine's own handler would free everything and end the process
    at once. The handler for InterruptHold.begin to run in place of SIGTERM's own, which it
    puts back at its end; a SIGTERM ignored when the run began stays ignored (the hold leaves
    it), as rmm_mp.interrupts leaves it before and after the run (`nohup`-style: whoever
    started the process asked for that)."""
    return {signal.SIGTERM: _sigterm_as_interrupt}


class _Supervisor:
    def __init__(self, machine: Machine, procs: dict[int, Any], pipes: dict[int, Any],
                 on_tick: Callable[[float], str | None] | None, tick_s: float, timeout_s: float | None,
                 grace_s: float, mask: set[int | signal.Signals] | None = None, sigterm_stops: bool = False,
                 on_end: Callable[[], None] | None = None, gate: cpu_start.StartGate | None = None,
                 hold: InterruptHold | None = None) -> None:
        self.machine = machine
        self.gate = cpu_start.StartGate() if gate is None else gate
        """Each CPU's go, and the CPUs killed on an interrupt before they had theirs."""
        self.hold = InterruptHold() if hold is None else hold
        """Ctrl-C and SIGTERM: raised as they come while the supervisor waits, noted while it
        handles one, and, begun by run_cpus, while the CPUs were started."""
        self.on_end = on_end
        self.sigterm_stops = sigterm_stops
        self.mask = mask
        """The signal mask to restore once waiting has begun (run_cpus blocked SIGINT and SIGTERM)."""
        self.procs = procs
        self.pipes = pipes
        self.on_tick = on_tick
        self.tick_s = tick_s
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.results: dict[int, Any] = {}
        self.usage: dict[int, ProcessUsage] = {}
        self.errors: dict[int, tuple[str, str]] = {}
        self.warnings: dict[int, str] = {}
        self.failures: list[CpuFailure] = []
        self.interrupted = False
        self.interrupted_by = ""
        self.stopped_by = ""
        self.stopped_by_cpu: int | None = None
        self.stop_at: float | None = None
        self.terminated: dict[int, str] = {}
        """CPU -> why it was killed (the grace time ran out, or a second Ctrl-C or SIGTERM)."""
        self.on_request: set[int] = set()
        """The CPUs killed by a second Ctrl-C or SIGTERM (CpuFailure.on_request)."""
        self.ended = False
        """on_end was called: once only, though it raised (a KeyboardInterrupt of its own is taken
        as an interrupt after the run, and the loop came back to the run's end and called it again)."""

    def end_run(self, error: Exception | None = None) -> None:
        """Tell the caller the CPUs' run is over (on_end), once, with the hold holding. A guard that
        takes both signals takes them from here: SIGTERM no longer as the runtime's Ctrl-C
        (sigterm_stops), which named a SIGTERM sent after a Ctrl-C the guard had noted as what
        came after the run. After ``error`` (run_cpus'), what on_end raises is a note of it: the
        error wins, over a KeyboardInterrupt too (one let through replaced it, as a Ctrl-C did)."""
        if self.on_end is not None and not self.ended:
            self.ended = True
            self.hold.own_handlers()
            try:
                self.on_end()
            except (Exception, KeyboardInterrupt) as exc:
                if error is None:
                    raise
                error.add_note(f"run_cpus: on_end raised too, dropped: {type(exc).__name__}: {exc}")

    def stop(self, why: str, cpu: int | None = None) -> None:
        """Stop the run for ``why`` (``cpu``: the CPU whose end it is), unless already stopped."""
        if self.stop_at is None:
            self.machine.control.request_stop()
            self.stopped_by = why
            self.stopped_by_cpu = cpu
            self.stop_at = time.monotonic()

    def wait(self) -> RunResult:
        start = time.monotonic()
        live = dict(self.procs)
        # Begun by run_cpus before the CPUs started (begin below wraps nothing more then, and
        # run_cpus owns it), or by begin below (this supervisor owns it). Known before the call:
        # a Ctrl-C that meets a handler still unwrapped raises out of begin once the hold stands,
        # and, begin's value never returned, the clean-up took the hold for run_cpus' and left
        # it standing, SIGINT wrapped for good.
        owned = not self.hold.standing
        try:
            self.hold.begin(_sigterm_taken() if self.sigterm_stops else None)
            while True:
                try:
                    if self.mask is not None:
                        # One held back meanwhile on this thread meets the hold's wrapper: noted.
                        mask, self.mask = self.mask, None
                        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                    if not live:
                        # Every CPU is gone: from here a signal must not raise (the results
                        # would be lost). The caller's handlers hear that the CPUs' run is over
                        # while the hold still stands (a signal meanwhile is noted), and only
                        # then are the handlers put back (SIGTERM's own too): a signal from then
                        # on meets a caller's handler that no longer raises (Interrupts'
                        # run_over). The interrupts noted up to there are taken here, oldest
                        # first, none raised: ``end`` raised the first, and a second signal
                        # landing in this except clause's first bytecodes, before it could hold
                        # again, met the caller's handler still raising, and escaped run_cpus
                        # with every result. The handlers are put back here only if this
                        # supervisor began the hold; one run_cpus began stands, holding, until
                        # run_cpus' clean-up is done, and run_cpus ends it then, raising one
                        # noted meanwhile. Put back here, a Ctrl-C between two of the clean-up's
                        # steps met Python's own handler and skipped the steps after it.
                        self.hold.begin()       # held again, if released before the last step
                        self.end_run()
                        if owned:
                            noted = self.hold.finish()
                        else:
                            noted = self.hold.noted
                            self.hold.noted = []
                        for what in noted:
                            self._interrupt(live, what)
                        break
                    self.hold.release()     # one noted is raised here; then each as it comes
                    self._step(live, start)
                except KeyboardInterrupt as exc:
                    # The hold's wrapper raised it holding already, so that one more signal
                    # from its first bytecode here is noted (it escaped run_cpus with every
                    # result), and taken below; begin holds for one raised otherwise.
                    self.hold.begin()
                    what = interrupt_of(exc)    # "" for a copy (the copy rule)
                    while what:
                        self._interrupt(live, what)
                        what = self.hold.next()
        except BaseException:
            # Left by an error, mostly while released (waiting: _step): held from here on, by
            # setting the flag, not by a call. CPython checks for signals as a function begins,
            # so a Ctrl-C landing from the raise to the first call of the clean-up below
            # (begin, or end) met the wrapper still raising, and replaced the error.
            self.hold.holding = True
            raise
        finally:
            # Left by an exception, or by the loop (every CPU gone). Only a hold this supervisor
            # began is ended here; one begun by run_cpus stands, held, for it to end once it
            # has killed and reaped the CPU processes left and closed what it made (its own end).
            if owned:
                self.hold.end(take=False)
            elif self.hold.standing:
                self.hold.begin()
        for pipe in self.pipes.values():
            pipe.close()
        elapsed = time.monotonic() - start
        codes = {cpu: proc.exitcode for cpu, proc in self.procs.items()}
        return RunResult(dict(self.results), tuple(self.failures), self.interrupted, elapsed, self.stopped_by, codes,
                         dict(self.usage), self.interrupted_by, dict(self.warnings), tuple(self.gate.not_started),
                         self.stopped_by_cpu)

    def _interrupt(self, live: dict[int, Any], what: str) -> None:
        """Take a Ctrl-C or SIGTERM (``what``): the first stops the run, a second kills the CPUs."""
        cut_short = bool(live)
        if not self.interrupted and self.stop_at is None:
            # Not yet bound to the machine: nothing to stop cleanly, and waiting for
            # its start-up to end took seconds (cpu_start). Only when the interrupt
            # is what stops the run: in the grace time after another stop (time is
            # up: a CPU stuck in its start-up), the CPUs are dealt with as that stop
            # has them, and one stuck is reported as such, not as never started.
            self.gate.kill_waiting(live)
        if self.interrupted:
            self._terminate(live, f"was killed by a second {what} before it had stopped", True)
        self.interrupted_by = self.interrupted_by or what
        self.interrupted = True
        # With every CPU gone already, the run was not cut short: only what follows it.
        self.stop(f"interrupted ({what})" if cut_short else f"interrupted after the run ({what})")

    def _step(self, live: dict[int, Any], start: float) -> None:
        waitables = [p.sentinel for p in live.values()] + [self.pipes[c] for c in live if not self.pipes[c].closed]
        multiprocessing.connection.wait(waitables, timeout=self.tick_s)
        for cpu, pipe in self.pipes.items():
            if cpu in live and not pipe.closed and pipe.poll():
                self._read(cpu, pipe)
        for cpu, proc in list(live.items()):
            if proc.exitcode is None:
                continue
            proc.join()
            pipe = self.pipes[cpu]
            while not pipe.closed and pipe.poll():
                self._read(cpu, pipe)
            del live[cpu]
            if proc.exitcode == 0 and cpu not in self.errors and cpu not in self.results:
                # Exited normally, yet neither a result nor an error arrived: cpu_main sends
                # its result before it exits 0, so it was lost on the way. A caller must not
                # read the missing result as a CPU that ran and had nothing to say.
                self.errors[cpu] = ("exited normally (status 0), but its result never reached the parent", "")
            # One this run killed (grace time, second Ctrl-C) after its result had arrived had
            # returned: only its process's exit (closing the machine, the interpreter's end)
            # was still under way, which takes longer than a short grace time on a loaded host.
            # It did stop when asked; reporting it as one that "did not stop" was wrong.
            returned = cpu in self.results and cpu not in self.errors and cpu in self.terminated
            if (proc.exitcode != 0 and not returned) or cpu in self.errors:
                self.failures.append(self._failure(cpu, proc.exitcode))
                self.stop(f"CPU {cpu} died" if proc.exitcode != 0 else f"CPU {cpu}'s result was lost", cpu)
        now = time.monotonic()
        if self.on_tick is not None:
            why = self.on_tick(now - start)
            if why:
                self.stop(why)
        if self.timeout_s is not None and now - start >= self.timeout_s:
            self.stop("time is up")
        if self.stop_at is not None and now - self.stop_at > self.grace_s:
            self._terminate(live, f"did not stop within {self.grace_s:g} s of being asked and was terminated")

    def _read(self, cpu: int, pipe: Any) -> None:
        """Take one message from CPU ``cpu``'s pipe: first its start-up's UP (cpu_start), raw
        bytes, then what it reports (_receive)."""
        if cpu in self.gate.heard:
            self._receive(cpu, pipe)
            return
        # Ctrl-C and SIGTERM noted, not raised, from taking the UP to writing the go, and
        # raised once both are done (interrupt_hold). Raised in between, the interrupt left the
        # CPU waiting for a go that never came: marked as given, so not killed as never started,
        # it was killed after the grace time as one that "did not stop" (or, its UP taken and
        # not yet marked, after a stop by time in whose grace time the interrupt came). Until
        # 2026-11 a signal mask held them back, for this thread only: with another thread alive
        # that does not block them (pytest-xdist's execnet thread, a queue's feeder) the kernel
        # gave one to that thread and CPython raised it here all the same.
        # An error on the way leaves the hold on: it wins over an interrupt noted meanwhile,
        # which the supervisor drops as the error ends the run (its end(take=False)). Ended by
        # ``release`` in a finally clause, the interrupt replaced the error, which the supervisor
        # then took for a plain Ctrl-C and lost.
        self.hold.begin()
        try:
            raw = pipe.recv_bytes()
        except (EOFError, OSError):
            pipe.close()
        else:
            self.gate.heard.add(cpu)
            if raw == cpu_start.UP:
                self.gate.up(cpu)
            else:   # not cpu_main's: it says UP before anything else
                self.errors[cpu] = (f"sent {raw[:16]!r} where its start-up's UP was due", "")
        self.hold.release()

    def _receive(self, cpu: int, pipe: Any) -> None:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            pipe.close()
            return
        except Exception as exc:
            # The message arrived whole (recv reads all its bytes before unpickling, so the
            # pipe stays in step) but could not be unpickled here: a class the parent cannot
            # import, a __reduce__ that raises. The CPU's failure to report, not the parent's:
            # it must not end the run with a traceback and lose the other CPUs' results.
            self.errors[cpu] = (f"sent a result that the parent could not read ({type(exc).__name__}: {exc})",
                                traceback.format_exc())
            return
        if message[0] == "ok":
            self.results[cpu] = message[1]
            self.usage[cpu] = message[2]
        elif message[0] == "warning":
            self.warnings[cpu] = message[1]
        else:
            self.errors[cpu] = (message[1], message[2])

    def _failure(self, cpu: int, code: int | None) -> CpuFailure:
        if cpu in self.errors:
            how, tb = self.errors[cpu]
        elif cpu in self.terminated:
            how, tb = self.terminated[cpu], ""
        elif code is not None and code < 0:
            how, tb = f"was killed by {signal.Signals(-code).name}", ""
        else:
            how, tb = f"exited with status {code}", ""
        table = self.machine.granule_table(cpu_owner(cpu))
        held = tuple(table.addr(idx) for idx in table.held_by(cpu_owner(cpu)))
        ours = cpu in self.terminated and cpu not in self.errors
        # cpu_main flushes a CPU's statistics before it sends a result, and closes its handle
        # (which flushes them) after it sends an error: a CPU with neither died first.
        unpublished = cpu not in self.errors and cpu not in self.results
        return CpuFailure(cpu, how, tb, held, ours and cpu in self.on_request, ours, unpublished,
                          code == 0 and cpu not in self.results)

    def _terminate(self, live: dict[int, Any], why: str, on_request: bool = False) -> None:
        # SIGKILL: the children ignore SIGTERM (see the module docstring).
        for cpu, proc in live.items():
            if proc.exitcode is None:
                if cpu not in self.terminated and on_request:
                    self.on_request.add(cpu)
                self.terminated.setdefault(cpu, why)
                proc.kill()
        for proc in live.values():
            proc.join()
