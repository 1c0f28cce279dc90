"""The go a CPU process waits for before it binds to the machine, and what the parent does with
the CPU processes still waiting for theirs when a Ctrl-C or SIGTERM stops the run.

A CPU process's start-up (the interpreter, the simulator's imports, reading its args) takes a
second or more, and 16 of them on a loaded 2-core host took 5 to 17 s all told. A Ctrl-C in
that time used to reach each of them only once it had attached the machine and bound its CPU
(Machine.attach, machine.cpu): every CPU already spawned first finished its start-up, then saw
the stop flag, so `rmm-mp run` or `rmm-mp stress` with 16 CPUs took 6 to 17 s to end. So a CPU
process, once up and before it touches the machine, says so (``UP``, on its result pipe) and
waits for the parent's go (``GO``, down its lifeline; ``await_go``). The parent gives it at
once (StartGate.up) until a Ctrl-C or SIGTERM stops the run; then it kills each CPU process
that has not had its go (SIGKILL: it holds no lock, has mapped no shared memory and marked
nothing, so there is nothing to stop cleanly) and reports it as never started
(RunResult.not_started), instead of asking it to stop and waiting up to the grace time for it
(StartGate.kill_waiting). A CPU that had its go is stopped as before, through the stop flag;
so is every CPU when the run was stopped otherwise first (its time up, a CPU's death), the
interrupt coming in the grace time after: a CPU stuck in its start-up stays the stuck CPU that
stop reports.

This module owns that handshake. It must not touch a machine; rmm_mp.runtime starts, watches
and reaps the processes.
"""

from __future__ import annotations

import multiprocessing.connection
import signal
import threading
from typing import Any

UP = b"up"
"""What a CPU process sends on its result pipe once it is up, before anything else: raw bytes,
not a pickle, so that the parent reads it without unpickling anything."""
GO = b"go"
"""What the parent writes down a CPU process's lifeline, after its args, to let it bind."""


def await_go(conn: multiprocessing.connection.Connection, lifeline: multiprocessing.connection.Connection) -> bool:
    """In a CPU process that has read its args: tell the parent it is up and wait for its go.
    False when the parent is gone (end-of-file, a broken pipe): the process then ends without
    a word, as when its lifeline watcher sees the parent's end."""
    try:
        conn.send_bytes(UP)
        lifeline.recv_bytes()
    except (EOFError, OSError):
        return False
    return True


class StartGate:
    """The parent's side: which CPUs have had their go, and the CPUs killed before they had it.

    ``lifelines`` and ``feeders``, per CPU: the parent's end of the CPU process's lifeline and
    the thread writing its args down it (cpu_args.feed). A CPU is up only once it has read every
    byte of its args, so its feeder has written its last and the go cannot land among them;
    it is joined first all the same, as the one other writer of that pipe."""

    def __init__(self, lifelines: dict[int, multiprocessing.connection.Connection] | None = None,
                 feeders: dict[int, threading.Thread] | None = None) -> None:
        self.lifelines = lifelines or {}
        self.feeders = feeders or {}
        self.heard: set[int] = set()
        """The CPUs whose UP the parent has read (its first message; what follows is a result)."""
        self.given: set[int] = set()
        self.not_started: list[int] = []
        """The CPUs killed by kill_waiting, in the order of the run's CPUs."""
        self.closed = False
        """No more go is given: the run was interrupted."""

    def up(self, cpu: int) -> None:
        """CPU ``cpu`` says it is up: give it its go, unless the run was interrupted (it is then
        killed, or about to be: kill_waiting). The caller holds Ctrl-C and SIGTERM back (cpu_supervisor's
        _Supervisor._read): an interrupt between noting the go as given and writing it left the
        CPU waiting for it, neither killed here nor stopped by the flag."""
        if self.closed or cpu in self.given:
            return
        feeder = self.feeders.get(cpu)
        if feeder is not None:
            feeder.join()
        self.given.add(cpu)
        lifeline = self.lifelines.get(cpu)
        if lifeline is None:
            return
        try:
            lifeline.send_bytes(GO)
        except OSError:     # it died meanwhile (EPIPE): its end is reported as any other's
            pass

    def kill_waiting(self, live: dict[int, Any]) -> list[int]:
        """The run is interrupted: give no more go, kill every live CPU process that has not had
        its go and reap it. Those it killed are taken out of ``live`` and returned (also kept in
        ``not_started``); one that ended of its own accord meanwhile stays in ``live``, for the
        supervisor to report as it reports any end."""
        self.closed = True
        waiting = [cpu for cpu, proc in live.items() if cpu not in self.given and proc.exitcode is None]
        for cpu in waiting:
            live[cpu].kill()
        killed = []
        for cpu in waiting:
            proc = live[cpu]
            proc.join()
            if proc.exitcode == -signal.SIGKILL:
                del live[cpu]
                killed.append(cpu)
        self.not_started += killed
        return killed
