"""A forked child and the machines its parent is still creating (rmm_mp.machine._creating)."""

from __future__ import annotations

import os
import secrets

import pytest

from rmm_mp import machine, machine_exit
from rmm_mp.hw import segment


# The child runs close_all and os._exit only, no other thread's code: CPython 3.12+'s warning
# about fork() in a multi-threaded process (pytest-xdist's threads) does not apply.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_leaves_the_parents_half_made_machine_alone() -> None:
    """A child forked while its parent is inside Machine.create (the prefix in _creating, its
    first segment made) and then exiting through close_all (atexit) must not unlink that
    segment: it is the parent's. close_all unlinked every prefix in _creating, the child's
    inherited copy included, so a plain os.fork from another thread during a create removed
    the parent's machine under it."""
    prefix = segment.machine_prefix(os.getpid(), secrets.token_hex(4))
    path = segment.segment_path(prefix, "ctl")
    with open(path, "wb") as f:
        f.write(b"\0" * 64)
    machine._creating.add(prefix)
    try:
        pid = os.fork()
        if pid == 0:        # the child: what its atexit hook does, then out without pytest's teardown
            try:
                machine_exit.close_all()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.exists(path), "the forked child unlinked its parent's half-made machine"
    finally:
        machine._creating.discard(prefix)
        segment.unlink_parts(prefix)
