"""How run_cpus treats a CPU process whose closing of its machine handle fails after its result
or error was sent: the CPU's outcome is what it sent (a result stays a result, status 0; an
error stays an error), and the close failure is a warning (RunResult.warnings), not a failure."""

from __future__ import annotations

from typing import Any

import pytest

from rmm_mp import Machine
from rmm_mp.runtime import run_cpus


def _break_close(cpu: Any) -> None:
    """Make this process's Machine.close raise OSError once it has closed the machine (so that
    the at-exit close finds it closed, as after a close that failed at its very end)."""
    machine = cpu.machine
    real = machine.close

    def close() -> None:
        real()
        raise OSError(5, "simulated close failure")
    machine.close = close  # type: ignore[method-assign]


def _close_fails_then_return(cpu) -> int:  # type: ignore[no-untyped-def]
    """Break close, then return the CPU's id."""
    _break_close(cpu)
    return int(cpu.id)


def _close_fails_then_raise(cpu) -> int:  # type: ignore[no-untyped-def]
    """Break close, then raise."""
    _break_close(cpu)
    raise RuntimeError("on purpose")


@pytest.mark.multiprocess
def test_a_close_failure_after_the_result_was_sent_is_a_warning_not_a_failure(capfd: pytest.CaptureFixture[str]) -> None:
    """Both CPUs return their id, then closing their machine handle raises OSError. Both results
    count: no failure, exit status 0, the run ok, and RunResult.warnings names each CPU's close
    failure (also written to the CPU process's stderr). Before, the exception escaped
    cpu_main: each process exited 1 and was reported failed although its result had arrived."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, _close_fails_then_return, timeout_s=30)
    assert result.results == {0: 0, 1: 1}, result
    assert result.failures == (), [f.describe() for f in result.failures]
    assert result.exit_codes == {0: 0, 1: 0}
    assert result.ok
    expected = "closing its machine handle failed after its result was sent: OSError: [Errno 5] simulated close failure"
    assert result.warnings == {0: expected, 1: expected}
    assert f"rmm-mp: warning: CPU 1 {expected}" in capfd.readouterr().err


@pytest.mark.multiprocess
def test_a_close_failure_after_an_error_leaves_the_error_as_the_cpus_outcome() -> None:
    """Both CPUs raise, then closing their machine handle raises OSError. Each is a failure naming
    the target's error (not the close's), exit status 1, and no warning is recorded."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, _close_fails_then_raise, timeout_s=30)
    assert result.results == {}
    assert sorted((f.cpu, f.how) for f in result.failures) == [(0, "raised RuntimeError: on purpose"),
                                                                (1, "raised RuntimeError: on purpose")]
    assert result.exit_codes == {0: 1, 1: 1}
    assert result.warnings == {}
