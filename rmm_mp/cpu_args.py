"""How a CPU process gets its ``args``: pickled once by the parent and written down each
child's lifeline by a feeder thread, rather than with the process object.

``args`` do not travel with the process object: ``multiprocessing`` writes that to the child's
bootstrap pipe from ``Process.start``, which blocks until the child has read it when it is
larger than the pipe's buffer (64 KiB), i.e. until the child's interpreter has started and
imported its modules. A workload's plan with 54 realms is about 270 KB (a guest file alone may
be 1 MiB), so each start waited for the child before it and 64 CPU processes started one after
another (200 s on 2 cores), with Ctrl-C blocked meanwhile. So the parent pickles ``args`` once
and, after every process is started, a feeder thread per child writes them down its lifeline
(one per child: a child stuck before it reads, stopped or hung while it imports, holds up its
own feeder only); the child reads them there before it watches the lifeline. What in the
args only multiprocessing can pickle, as it starts a process, still goes with the process
object: pipe ends (the stress scheduler's plan holds every CPU's) and sockets, which reach a
spawned child only as file descriptors passed then, and multiprocessing's locks, events,
queues and shared values, whose reductions refuse to work at any other time (or copy the
value). The pickled args refer to them by position (pickle's persistent IDs).

A CPU's own args (run_cpus' ``own_args``: what only some CPUs need, such as the guest image of
a realm only they rebuild) follow the shared ones down its lifeline, each distinct object among
them pickled once for all the CPUs that get it (a bytes object goes as it is, and is the
message the child receives: one copy, not a pickled and an unpickled one), so that no CPU
process receives (and holds twice) what it never reads.

This module owns the pickling split and the feed. It must not start or watch processes
(rmm_mp.runtime does).
"""

from __future__ import annotations

import copyreg
import functools
import io
import multiprocessing.connection
import multiprocessing.reduction
import pickle
import types
from typing import Any


_PLAIN_REDUCTIONS = frozenset({types.MethodType, type(list.append), type(int.__add__), functools.partial})
"""Types multiprocessing registers a reduction for that plain pickle handles the same way (by
reference): they stay in the args that go down the lifeline."""


def _spawn_only_types() -> frozenset[type]:
    """The types multiprocessing's own pickler has a reduction for that plain pickle lacks: pipe
    ends and sockets (passed as file descriptors), the shared ctypes values of
    multiprocessing.sharedctypes (each registered as it is first created), and any registered
    with ForkingPickler.register."""
    table = multiprocessing.reduction.ForkingPickler(io.BytesIO()).dispatch_table
    return frozenset(t for t in table if t not in copyreg.dispatch_table and t not in _PLAIN_REDUCTIONS)


class _ArgsPickler(pickle.Pickler):
    """Pickles a target's args leaving out what only multiprocessing can pickle, while it starts
    a process, which it collects in ``by_spawn``: pipe ends and sockets (file descriptors),
    locks, events, queues and shared values (whose reductions refuse to work at any other
    time, or copy the value), manager proxies (whose authentication key goes with them then
    only)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.by_spawn: list[Any] = []
        self._spawn_only = _spawn_only_types()
        self._seen: dict[type, bool] = {}

    def _goes_by_spawn(self, cls: type) -> bool:
        known = self._seen.get(cls)
        if known is None:
            # The multiprocessing classes (and subclasses of them) of these objects check that
            # a process is being started when pickled, or carry what only then is passed on.
            known = cls in self._spawn_only or any(
                base.__module__.partition(".")[0] in ("multiprocessing", "_multiprocessing") for base in cls.__mro__)
            self._seen[cls] = known
        return known

    def persistent_id(self, obj: Any) -> int | None:
        if self._goes_by_spawn(type(obj)):
            self.by_spawn.append(obj)
            return len(self.by_spawn) - 1
        return None


def pickle_args(args: tuple[Any, ...]) -> tuple[bytes, tuple[Any, ...]]:
    """``args`` pickled for the lifeline, and what in them only multiprocessing can pickle (for
    the process object)."""
    buf = io.BytesIO()
    pickler = _ArgsPickler(buf)
    pickler.dump(args)
    return buf.getvalue(), tuple(pickler.by_spawn)


class _ArgsUnpickler(pickle.Unpickler):
    """Unpickles what _ArgsPickler wrote, taking the objects it left out from ``by_spawn``.
    A subclass, not an assignment to an Unpickler's persistent_load: that attribute is
    read-only on the C unpickler from Python 3.13."""

    def __init__(self, file: io.BytesIO, by_spawn: tuple[Any, ...]) -> None:
        super().__init__(file)
        self.by_spawn = by_spawn

    def persistent_load(self, pid: Any) -> Any:
        return self.by_spawn[pid]


def unpickle_args(pickled: bytes, by_spawn: tuple[Any, ...]) -> tuple[Any, ...]:
    result: tuple[Any, ...] = _ArgsUnpickler(io.BytesIO(pickled), by_spawn).load()
    return result


RAW = b"r"
"""An own arg that is a bytes object goes down the lifeline as it is: the child's received
message is the object, where a pickled one would be unpickled into a second copy (a 144 MiB
guest image held twice)."""
PICKLED = b"p"


def pickle_own(obj: Any) -> tuple[bytes, bytes]:
    """One of a CPU's own args (run_cpus' ``own_args``) made ready for the lifeline: (RAW, the
    object) for a bytes object, (PICKLED, it pickled) for anything else. They go down the
    lifeline only, so what only multiprocessing can pickle (pickle_args' ``by_spawn``) is
    refused."""
    if type(obj) is bytes:
        return RAW, obj
    buf = io.BytesIO()
    pickler = _ArgsPickler(buf)
    pickler.dump(obj)
    if pickler.by_spawn:
        raise ValueError(f"own_args: {type(pickler.by_spawn[0]).__name__} in a CPU's own args can only reach a "
                         f"CPU process with the process object: expected it in the shared args")
    return PICKLED, buf.getvalue()


def unpickle_own(kind: bytes, data: bytes) -> Any:
    """In the CPU process: one own arg from what pickle_own made of it (its kind and data, as
    receive read them): a RAW one is the received bytes object itself."""
    return data if kind == RAW else pickle.loads(data)


def feed(payload: bytes, life_writer: multiprocessing.connection.Connection,
         own: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Write the pickled shared ``args``, then the kinds of the CPU's own args (one byte each,
    RAW or PICKLED) and each of them (pickle_own), down one child's lifeline (a feeder thread
    of the parent: a write of more than a pipe's buffer waits for the child to read it)."""
    try:
        life_writer.send_bytes(payload)
        life_writer.send_bytes(b"".join(kind for kind, _ in own))
        for _, data in own:
            life_writer.send_bytes(data)
    except OSError:     # the child died before it read them (EPIPE): the supervisor reports it
        pass


def receive(lifeline: multiprocessing.connection.Connection) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
    """What feed wrote: the pickled shared args and the CPU's own args as (kind, data), for
    unpickle_own. EOFError or OSError: the lifeline ended first (the parent died)."""
    payload = lifeline.recv_bytes()
    kinds = lifeline.recv_bytes()
    return payload, tuple((kinds[n:n + 1], lifeline.recv_bytes()) for n in range(len(kinds)))
