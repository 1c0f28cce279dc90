"""The rmm-mp program's first lines (the console script, python -m rmm_mp): Ctrl-C while the
simulator is still being imported ends the program quietly.

Importing rmm_mp.cli imports the whole simulator and its dependencies (click, cryptography,
numpy where present): about half a second, in which a Ctrl-C raised KeyboardInterrupt in
whatever module was loading, printed its traceback, and could also land in a finalizer or a
callback that prints "Exception ignored in ..." and goes on. So this module, whose own import
costs nothing (it and the package's __init__ import only what the interpreter has loaded at
start-up), takes SIGINT over as it is imported, before that import begins: a Ctrl-C then writes
one line on stderr and ends the process with status 130 at once (nothing has been created yet:
no machine, no file), and no KeyboardInterrupt is ever raised in the import. Once the CLI is
imported and the program's streams are set up, just before click's main begins, Python's own
handler is put back (cli.entry's ``ready``), so each command takes Ctrl-C as it always did
(click's "Aborted!", a run's report marked interrupted, ...).

Out of reach: a SIGINT before the interpreter runs any Python code (CPython's own start-up,
the first tens of milliseconds) or in the console script's first lines before it imports this
module (a fraction of a millisecond): there the interpreter acts on the signal itself (it dies
of it, or says "Fatal Python error: init_import_site").

This module owns that hand-over. It must not import rmm_mp at import time.
"""

# _signal, not signal: the C module is loaded at every interpreter's start-up, while importing
# signal (its enums) takes about a millisecond in which a Ctrl-C would still be a traceback.
import _signal
import os

INTERRUPTED = b"interrupted (Ctrl-C) while rmm-mp was starting: nothing was done\n"
"""The line a Ctrl-C before the command began writes on stderr (exit status 130)."""


def _interrupted_while_starting(signum: int = 0, frame: object = None) -> None:
    """End the process at once, status 130, saying so: os._exit, since an exception raised from
    here could land in an import's finalizer and be printed and dropped there."""
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)    # a second Ctrl-C must not cut this short
    try:
        os.write(2, INTERRUPTED)
    except OSError:                                    # stderr closed or its reader gone
        pass
    os._exit(130)


# Only when Ctrl-C is Python's usual KeyboardInterrupt: a process started with SIGINT ignored
# (`nohup`, a background job of a non-interactive shell) keeps ignoring it.
_TAKEN = _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
if _TAKEN:
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)


def _give_back() -> None:
    if _TAKEN:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)


def main() -> None:
    """Import the CLI under this module's Ctrl-C handler, then run the rmm-mp program
    (rmm_mp.cli.entry), which hands Ctrl-C back to Python just before click's main begins."""
    from rmm_mp.cli import entry
    entry(ready=_give_back)
