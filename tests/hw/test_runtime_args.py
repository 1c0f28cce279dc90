"""How run_cpus hands ``args`` to its CPU processes: not with the process object, which
multiprocessing writes to a child's bootstrap pipe from Process.start (a write that waits for
the child to read it once it is larger than the pipe's buffer, so CPUs started one after the
other), but once every process is started, down each child's lifeline."""

from __future__ import annotations

import hashlib
import os
import multiprocessing
import multiprocessing.connection
import pickle
import signal
from typing import Any

import pytest
from children import cpu_children

from rmm_mp import Machine
from rmm_mp.runtime import run_cpus

BIG = bytes(range(256)) * 4096     # 1 MiB: 16 times a Linux pipe's buffer


class _Started(Exception):
    """Raised by _Recorder.start: the test has what it wanted, the run goes no further."""


def _digest(cpu, payload: bytes) -> tuple[int, int, str]:  # type: ignore[no-untyped-def]
    """The CPU's id and what it received."""
    return int(cpu.id), len(payload), hashlib.sha256(payload).hexdigest()


def test_the_process_object_does_not_carry_the_args(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_cpus with 1 MiB of args on 2 CPUs, its context's Process replaced by a recorder that
    keeps what it was given and stops the run at the first start. What a process object carries
    (its arguments less the pipe ends, which travel as file descriptors) pickles to less than a
    pipe's 64 KiB, so Process.start never waits for a child. Before, it carried the 1 MiB, and
    64 CPU processes of a 54-realm workload (a 270 KB plan) started one after the other: 200 s."""
    given: list[tuple[Any, ...]] = []

    class _Recorder:
        def __init__(self, *, target: Any, name: str, args: tuple[Any, ...], daemon: bool) -> None:
            given.append(args)

        def start(self) -> None:
            raise _Started

    monkeypatch.setattr(multiprocessing.get_context("spawn"), "Process", _Recorder)
    with Machine.create("host", cpus=2) as m:
        with pytest.raises(_Started):
            run_cpus(m, _digest, args=(BIG,), timeout_s=30)
    assert len(given) == 1
    plain = [a for a in given[0] if not isinstance(a, multiprocessing.connection.Connection)]
    assert len(pickle.dumps(plain)) < 64 * 1024, [type(a).__name__ for a in plain]


@pytest.mark.multiprocess
def test_every_cpu_gets_args_larger_than_a_pipe() -> None:
    """2 CPU processes, each given 1 MiB: each returns its id with the length and SHA-256 of
    what it received, which are those of the 1 MiB (the feeder's writes, each waiting for its
    child to read, reach every child)."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, _digest, args=(BIG,), timeout_s=60)
    want = (len(BIG), hashlib.sha256(BIG).hexdigest())
    assert result.ok and result.results == {0: (0, *want), 1: (1, *want)}, result


def _write_id(cpu, payload: bytes, pipes: dict[str, multiprocessing.connection.Connection]) -> int:  # type: ignore[no-untyped-def]
    """Write this CPU's id and the length of ``payload`` down the pipe end it was given."""
    pipes["out"].send((int(cpu.id), len(payload)))
    return int(cpu.id)


@pytest.mark.multiprocess
def test_a_pipe_end_among_the_args_works_in_the_cpu() -> None:
    """The args hold a pipe's write end (inside a dict, beside 1 MiB), as the stress scheduler's
    plan holds every CPU's pipe ends: each of 2 CPUs writes its id down it and the parent reads
    both. The pipe end must travel as a file descriptor with the process object; pickled with
    the args it arrived as a bare number, and `rmm-mp stress --schedule random` failed every CPU
    with EBADF."""
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    try:
        with Machine.create("host", cpus=2) as m:
            result = run_cpus(m, _write_id, args=(BIG, {"out": writer}), timeout_s=60)
        assert result.ok and result.results == {0: 0, 1: 1}, result
        got = sorted(reader.recv() for _ in range(2))
        assert got == [(0, len(BIG)), (1, len(BIG))]
    finally:
        reader.close()
        writer.close()


def _use_the_shared(cpu, ev, queue, counter, raw) -> int:  # type: ignore[no-untyped-def]
    """Set the event, put this CPU's id on the queue, add 1 to the shared counter and write 7
    to the raw shared value."""
    ev.set()
    queue.put(int(cpu.id))
    with counter.get_lock():
        counter.value += 1
    raw.value = 7
    return int(cpu.id)


@pytest.mark.multiprocess
@pytest.mark.parametrize("context", ["spawn", "forkserver"])
def test_multiprocessing_objects_among_the_args_are_shared_with_the_cpu(context: str) -> None:
    """The args hold a multiprocessing Event, Queue, Value and RawValue, which multiprocessing
    pickles only while it starts a process (plain pickle refuses the first three, "should only
    be shared between processes through inheritance", and copies the RawValue's number): CPU 0
    sets the event, puts its id on the queue, adds 1 to the Value and writes 7 to the RawValue,
    and the parent sees all four. When the args first went down the lifeline, plain-pickled,
    run_cpus raised RuntimeError for them before starting any CPU."""
    ctx = multiprocessing.get_context(context)
    ev, queue, counter, raw = ctx.Event(), ctx.Queue(), ctx.Value("i", 0), ctx.RawValue("i", 0)
    with Machine.create("host", cpus=1) as m:
        result = run_cpus(m, _use_the_shared, args=(ev, queue, counter, raw), context=context, timeout_s=60)
    assert result.ok and result.results == {0: 0}, result
    assert ev.is_set() and queue.get(timeout=10) == 0 and counter.value == 1 and raw.value == 7
    queue.close()


@pytest.mark.multiprocess
@pytest.mark.parametrize("sent", [b"", (1 << 20).to_bytes(4, "big") + b"0123456789"])
def test_a_cpu_whose_parent_died_before_its_args_came_exits_quietly(sent: bytes) -> None:
    """cpu_main.cpu_main started as run_cpus starts it, but its lifeline ends before the args
    came down it (nothing, or a header announcing 1 MiB and 10 bytes of it): the parent died
    while the process started. It exits with LIFELINE_EXIT, sends nothing and attaches no
    machine (its name names none), rather than reporting a failure of its own."""
    from rmm_mp.cpu_main import LIFELINE_EXIT, cpu_main
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    life_reader, life_writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=cpu_main,
                       args=("rmm-mp-1-00000000", 0, _digest, (), writer, life_reader, None, False))
    try:
        proc.start()
        writer.close()
        life_reader.close()
        with open(os.dup(life_writer.fileno()), "wb") as raw:
            raw.write(sent)
        life_writer.close()
        proc.join(60)
        assert proc.exitcode == LIFELINE_EXIT
        with pytest.raises(EOFError):   # nothing was sent before the process's end closed it
            reader.recv()
    finally:
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        reader.close()


def _count_and_return(cpu, payload: bytes, done) -> int:  # type: ignore[no-untyped-def]
    """Add 1 to ``done`` (a shared Value) and return this CPU's id."""
    with done.get_lock():
        done.value += 1
    return int(cpu.id)


class _StoppedCpu0(multiprocessing.get_context("spawn").Process):  # type: ignore[misc,name-defined]
    """A spawn Process that SIGSTOPs CPU 0's process as soon as it is started: a CPU process
    stuck while it starts up (a stopped job, a debugger), before it reads its args."""

    def start(self) -> None:
        super().start()
        if self.name == "rmm-mp-cpu0":
            assert self.pid is not None
            os.kill(self.pid, signal.SIGSTOP)


@pytest.mark.multiprocess
def test_a_cpu_stuck_before_it_reads_its_args_does_not_hold_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 CPUs given 1 MiB each, CPU 0's process stopped (SIGSTOP) as soon as it is started:
    CPUs 1 and 2 get their args and return (the run is stopped once both have), and only
    CPU 0 is terminated when the grace time is over. The args went down the lifelines one
    after another, each write waiting for its child to read: CPUs 1 and 2 waited behind
    CPU 0 for ever and were reported as CPUs that "did not stop within 0.5 s of being asked".
    The run is stopped once CPUs 1 and 2 have ended, not once they have counted: a process
    that has returned still takes a while to exit (more than the 0.5 s grace on a loaded host,
    and it was then terminated too)."""
    monkeypatch.setattr(multiprocessing.get_context("spawn"), "Process", _StoppedCpu0)
    done = multiprocessing.get_context("spawn").Value("i", 0)

    def on_tick(elapsed: float) -> str | None:
        # CPU 0's process is the only one left (the others have exited: a zombie has no
        # command line, and the supervisor reaps it before it calls on_tick).
        return "both ran" if done.value == 2 and len(cpu_children()) == 1 else None

    with Machine.create("host", cpus=3) as m:
        result = run_cpus(m, _count_and_return, args=(BIG, done), timeout_s=30, grace_s=0.5, on_tick=on_tick)
    assert result.results == {1: 1, 2: 2}, result
    assert [(f.cpu, f.terminated) for f in result.failures] == [(0, True)], result.failures


def _own_digests(cpu, payload: bytes, *own: bytes) -> tuple[int, int, list[tuple[int, str]]]:  # type: ignore[no-untyped-def]
    """The CPU's id, the length of the shared args and the length and SHA-256 of each own arg."""
    return int(cpu.id), len(payload), [(len(o), hashlib.sha256(o).hexdigest()) for o in own]


@pytest.mark.multiprocess
def test_own_args_reach_only_their_cpu_and_a_shared_one_is_pickled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_cpus on 3 CPUs with shared args of 3 bytes and own_args giving CPUs 0 and 2 the same
    1 MiB object and CPU 1 nothing: CPUs 0 and 2 get the shared args then the 1 MiB, CPU 1 the
    shared args only, and the 1 MiB was pickled once for both (what keeps a guest image several
    CPUs own from costing the parent one pickled copy per CPU)."""
    import rmm_mp.cpu_args as cpu_args
    pickled: list[int] = []
    real = cpu_args.pickle_own

    def counting(obj: Any) -> bytes:
        pickled.append(len(obj))
        return real(obj)

    monkeypatch.setattr(cpu_args, "pickle_own", counting)
    with Machine.create("host", cpus=3) as m:
        result = run_cpus(m, _own_digests, args=(b"abc",), own_args={0: (BIG,), 2: (BIG,)}, timeout_s=60)
    big = (len(BIG), hashlib.sha256(BIG).hexdigest())
    assert result.ok and result.results == {0: (0, 3, [big]), 1: (1, 3, []), 2: (2, 3, [big])}, result
    assert pickled == [len(BIG)]


def test_own_args_refuse_what_only_a_process_start_can_pickle() -> None:
    """An event in a CPU's own args (which go down the lifeline only, not with the process
    object) is refused with a ValueError naming its type, where it belongs and the CPU it was
    given to, before any CPU process is started."""
    ev = multiprocessing.get_context("spawn").Event()
    with Machine.create("host", cpus=1) as m:
        with pytest.raises(ValueError, match=r"own_args: Event .* expected it in the shared args "
                                             r"\(it was in CPU 0's own args\)"):
            run_cpus(m, _own_digests, args=(b"",), own_args={0: (ev,)}, timeout_s=30)


def test_own_args_for_a_cpu_not_run_are_refused() -> None:
    """own_args naming CPU 3 in a run of CPUs 0 and 1: a ValueError naming it and the CPUs run,
    before any CPU process is started (they were dropped, and a caller that meant them for a
    CPU it forgot to run was not told)."""
    with Machine.create("host", cpus=4) as m:
        with pytest.raises(ValueError, match=r"own_args: 3 is not one of the CPUs run \(0, 1\)"):
            run_cpus(m, _own_digests, [0, 1], args=(b"",), own_args={0: (b"x",), 3: (b"y",)}, timeout_s=30)
