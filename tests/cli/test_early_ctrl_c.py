"""Ctrl-C while the rmm-mp program is still importing the simulator (rmm_mp.launch)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmm_mp.cli import SUBCOMMANDS
_HANDLER = signal.getsignal(signal.SIGINT)
from rmm_mp.launch import INTERRUPTED  # noqa: E402
# Importing launch takes SIGINT over in this process (the rmm-mp program's first lines): a later
# test in this pytest worker that sends itself SIGINT would end the worker with status 130.
signal.signal(signal.SIGINT, _HANDLER)

ROOT = Path(__file__).resolve().parents[2]

# The console script's own lines, with a mark on stdout once rmm_mp.launch is imported (its
# Ctrl-C handler installed): "r" when importing it loaded none of the simulator (its import
# must stay cheap, or a Ctrl-C in it is a traceback again), "H" when it did.
CHILD = ("import os, signal, sys; sys.argv = ['rmm-mp', '--help']; "
         # A background job (CI started with nohup, a non-interactive shell's &) begins with
         # SIGINT ignored, which launch keeps: the child is to start as a terminal's program does.
         "signal.signal(signal.SIGINT, signal.default_int_handler); from rmm_mp import launch; "
         "os.write(1, b'H' if 'rmm_mp.machine' in sys.modules or 'click' in sys.modules else b'r'); "
         "launch.main()")


def test_ctrl_c_while_the_program_starts_ends_it_quietly_with_130() -> None:
    """`rmm-mp --help` sent SIGINT 0, 20, ..., 300 ms after its first lines ran (the simulator's
    import takes about half a second): each ends with status 130 and the one line
    "interrupted (Ctrl-C) while rmm-mp was starting: nothing was done" on stderr, or, if it got
    that far, 0 with its help, or, when the signal came after the hand-over to click but before
    the help was out, click's "Aborted!" and 1 (seen in a full-suite run); never a KeyboardInterrupt traceback (which it printed before)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outcomes = []
    for delay_ms in range(0, 301, 20):
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        mark = os.read(proc.stdout.fileno(), 1) if ready else b""
        time.sleep(delay_ms / 1000)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert mark == b"r", (mark, err.decode())
        assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, (delay_ms, err.decode())
        if proc.returncode == 130:
            assert err == INTERRUPTED, (delay_ms, err.decode())
        elif proc.returncode == 1:
            # The signal came after the hand-over, while click printed the help: click's own
            # Ctrl-C answer, as for any command that does not take Ctrl-C itself.
            assert err.strip() == b"Aborted!", (delay_ms, err.decode())
        else:
            assert proc.returncode == 0 and b"Usage: rmm-mp" in out, (delay_ms, proc.returncode, err.decode())
        outcomes.append(proc.returncode)
    assert 130 in outcomes, outcomes


def test_the_public_names_import_on_first_use() -> None:
    """`import rmm_mp` loads none of the simulator (rmm_mp.launch relies on it), while `from
    rmm_mp import Machine, Cpu, GranuleProtectionFault, RmmInternalError` (DESIGN.md section 3)
    still gives the classes, the same objects as their modules'."""
    code = ("import sys, rmm_mp; assert 'rmm_mp.machine' not in sys.modules, 'eager'; "
            "from rmm_mp import Machine, Cpu, GranuleProtectionFault, RmmInternalError; "
            "import rmm_mp.machine as m, rmm_mp.hw.faults as f; "
            "assert (Machine, Cpu) == (m.Machine, m.Cpu); "
            "assert (GranuleProtectionFault, RmmInternalError) == (f.GranuleProtectionFault, f.RmmInternalError); "
            "print(sorted(n for n in rmm_mp.__all__ if n in dir(rmm_mp)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(sorted(["Machine", "Cpu", "GranuleProtectionFault", "RmmInternalError",
                                              "__version__"]))


def test_submodules_are_attributes_of_the_package_on_first_use() -> None:
    """After a bare `import rmm_mp`, a submodule reached as an attribute (`rmm_mp.machine.Machine`,
    `rmm_mp.runtime.run_cpus`, as worked while the package's __init__ imported the simulator
    eagerly) is imported then and is the module itself; a name that is no submodule is still an
    AttributeError (hasattr False), and the bare import still loaded none of the simulator."""
    code = ("import sys, rmm_mp; assert 'rmm_mp.machine' not in sys.modules, 'eager'; "
            "m = rmm_mp.machine; assert m is sys.modules['rmm_mp.machine'] and m.Machine is rmm_mp.Machine; "
            "assert rmm_mp.runtime.run_cpus is sys.modules['rmm_mp.runtime'].run_cpus; "
            "assert not hasattr(rmm_mp, 'no_such_module') and not hasattr(rmm_mp, '__no_such__'); "
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("argv, loaded", [
    (["stress", "--help"], ["rmm_mp.stress.cli"]),
    (["--help"], sorted({module for module, _ in SUBCOMMANDS.values()})),
    (["--help", "stress"], sorted({module for module, _ in SUBCOMMANDS.values()})),
    (["-h", "run"], sorted({module for module, _ in SUBCOMMANDS.values()})),
])
def test_the_subcommands_module_is_imported_before_ctrl_c_is_handed_back(argv: list[str], loaded: list[str]) -> None:
    """`rmm-mp stress ...` (and `rmm-mp --help`, whose listing shows every subcommand's help, as
    does `rmm-mp --help stress`: the group's --help acts before any command is looked at):
    when cli.entry hands Ctrl-C back (its ready hook), the module defining that subcommand (every
    SUBCOMMANDS module, for the listing) is imported already, so a Ctrl-C in its import (a
    quarter of a second for the stress tool's) is launch's one line and 130, not a
    KeyboardInterrupt raised inside the import under click (which printed "Aborted!")."""
    code = ("import sys; sys.argv = ['rmm-mp'] + sys.argv[1:]; from rmm_mp import cli\n"
            "def ready():\n"
            "    print(' '.join(sorted(m for m in sys.modules if m in {mod for mod, _ in cli.SUBCOMMANDS.values()})), flush=True)\n"
            "cli.entry(ready=ready)\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert set(loaded) <= set(proc.stdout.splitlines()[0].split()), proc.stdout[:500]


def test_a_name_that_is_no_identifier_is_no_attribute_of_the_package() -> None:
    """A name no attribute access can spell (`getattr(rmm_mp, "a.b")`, `".x"`, `"hw.faults"`) is
    an AttributeError, so hasattr answers False, rather than being taken for a dotted module
    path: that raised ModuleNotFoundError out of hasattr for `a.b`, and returned the module
    rmm_mp.hw.faults for `hw.faults`."""
    code = ("import rmm_mp; "
            "bad = [n for n in ('a.b', '.x', 'hw.faults', '', 'hw faults') if hasattr(rmm_mp, n)]; "
            "assert not bad, bad; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_an_attribute_look_up_never_imports_launch() -> None:
    """`hasattr(rmm_mp, "launch")` is False and leaves SIGINT as it was: the package imports a
    submodule named as an attribute, but importing launch takes Ctrl-C over in the process,
    which a look-up (a debugger, an introspection tool) must not do."""
    code = ("import signal, sys, rmm_mp; before = signal.getsignal(signal.SIGINT); "
            "assert not hasattr(rmm_mp, 'launch'); assert 'rmm_mp.launch' not in sys.modules; "
            "assert signal.getsignal(signal.SIGINT) is before; assert hasattr(rmm_mp, 'runtime')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
