"""How run_cpus treats a CPU whose result does not reach the parent although its process
exited normally: the result was lost on the way, or the parent could not unpickle it. Either
is a named CPU failure (CpuFailure.result_lost), never a CPU that silently had nothing to say,
and never a traceback that loses the other CPUs' results."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from rmm_mp import Machine, cpu_supervisor
from rmm_mp.runtime import run_cpus


def _refuse_to_load() -> None:
    """What unpickling an _Unreadable calls in the parent."""
    raise pickle.UnpicklingError("this result cannot be read here")


class _Unreadable:
    """Pickles in the CPU process; unpickling it (in the parent) raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse_to_load, ())


def _unreadable_on_cpu1(cpu) -> object:  # type: ignore[no-untyped-def]
    """CPU 1 returns a result the parent cannot unpickle; the others return their id."""
    return _Unreadable() if cpu.id == 1 else cpu.id


def _its_id(cpu) -> int:  # type: ignore[no-untyped-def]
    """Return at once: the CPU's id."""
    return int(cpu.id)


@pytest.mark.multiprocess
def test_a_result_the_parent_cannot_unpickle_is_a_named_failure_of_that_cpu() -> None:
    """CPU 1 of 2 returns an object whose unpickling raises pickle.UnpicklingError in the parent.
    run_cpus returns (before: the error escaped run_cpus as a traceback, and CPU 0's result was
    lost with it): CPU 0's result is there, CPU 1 is a failure whose ``how`` names the error,
    marked result_lost (its process exited 0, it did not die), with the traceback."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, _unreadable_on_cpu1, timeout_s=30)
    assert result.results == {0: 0}, result
    assert [f.cpu for f in result.failures] == [1], result.failures
    failure = result.failures[0]
    assert failure.how == ("sent a result that the parent could not read "
                           "(UnpicklingError: this result cannot be read here)"), failure
    assert failure.result_lost and not failure.terminated and "_refuse_to_load" in failure.traceback
    assert result.exit_codes[1] == 0


@pytest.mark.multiprocess
def test_a_result_lost_on_the_way_from_a_cpu_that_exited_normally_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's receive drops every message (reads it, keeps nothing), so both CPUs exit 0
    with no result and no error in the parent's hands. Each is a failure marked result_lost,
    saying its result never reached the parent. Before, run_cpus returned no failure at all: a
    caller saw a clean run in which no CPU had returned anything."""
    def drop(self: Any, cpu: int, pipe: Any) -> None:
        try:
            pipe.recv()
        except (EOFError, OSError):
            pipe.close()
    monkeypatch.setattr(cpu_supervisor._Supervisor, "_receive", drop)
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, _its_id, timeout_s=30)
    assert result.results == {}
    assert sorted(f.cpu for f in result.failures) == [0, 1], result.failures
    for f in result.failures:
        assert f.how == "exited normally (status 0), but its result never reached the parent", f
        assert f.result_lost and not f.unpublished
    assert not result.ok


def _cpu1_dies(cpu) -> int:  # type: ignore[no-untyped-def]
    """CPU 1 ends its process at once with status 3; the others return their id."""
    if cpu.id == 1:
        import os
        os._exit(3)
    return int(cpu.id)


@pytest.mark.multiprocess
@pytest.mark.parametrize("target, words", [(_cpu1_dies, "CPU 1 died"),
                                           (_unreadable_on_cpu1, "CPU 1's result was lost")])
def test_the_cpu_whose_end_stopped_the_run_is_named_by_a_field_not_only_in_words(target: Any, words: str) -> None:
    """A run stopped by CPU 1's end (its death, its result lost) says which CPU in
    RunResult.stopped_by_cpu, beside stopped_by's words: what a caller (the stress report) tells
    such a stop by, rather than matching the words. A run nothing stopped has None."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, target)
        plain = run_cpus(m, _its_id)
    assert result.stopped_by == words and result.stopped_by_cpu == 1, (result.stopped_by, result.stopped_by_cpu)
    assert plain.stopped_by == "" and plain.stopped_by_cpu is None, plain


def test_a_commands_error_line_gives_every_note_of_the_error_not_only_a_cpu_start_errors() -> None:
    """error_text: `rmm-mp run` and stress print a build's HostError as one `Error:` line; the
    note host.realm_build adds when the partial realm's rollback failed too was left unsaid
    (only a CpuStartError's notes were given)."""
    from rmm_mp.cpu_outcome import error_text
    from rmm_mp.hw.faults import MachineError
    from rmm_mp.host.realm import HostError
    build = HostError("RMI_DATA_CREATE", (0x1000,), 1, "expected RMI_SUCCESS")
    build.add_note("rolling the partial realm back failed too: RMI_RTT_DESTROY failed")
    assert error_text(build) == (f"HostError: {build}\n"
                                 "rolling the partial realm back failed too: RMI_RTT_DESTROY failed")
    plain = MachineError("no such machine")
    assert error_text(plain) == "MachineError: no such machine"


def test_a_commands_error_line_escapes_a_note_that_is_not_one_printable_line() -> None:
    """error_text: a note is printed on the user's terminal as the message is, but a note quotes
    another error's text (run_cpus' clean-up, a realm's rollback) as it came: an ESC in a path it
    names reached the terminal raw, and a newline in it split one note over two lines."""
    from rmm_mp.cpu_outcome import error_text
    from rmm_mp.host.realm import HostError
    build = HostError("RMI_DATA_CREATE", (0x1000,), 1, "expected RMI_SUCCESS")
    build.add_note("rolling the partial realm back failed too: /dev/shm/a\x1b[2J/x")
    build.add_note("second\nline")
    build.add_note("a plain note")
    text = error_text(build)
    assert "\x1b" not in text
    assert text.splitlines() == [f"HostError: {build}",
                                 '"rolling the partial realm back failed too: /dev/shm/a\\u001B[2J/x"',
                                 '"second\\nline"', "a plain note"]
