"""Docs that are generated from code stay in step with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rmm_mp.rmm.dispatch import COMMANDS, failure_conditions, lock_sequences

ROOT = Path(__file__).resolve().parents[1]


def test_locking_doc_matches_declared_sequences() -> None:
    """docs/locking.md's per-command table is what tools/gen_docs.py generates from the
    LOCK_SEQUENCES in the handler modules (so the doc cannot drift from the code)."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_every_implemented_command_declares_locks_and_failure_conditions() -> None:
    """Each implemented RMI command has a lock sequence with a deadlock argument, and its
    ordered list of spec failure-condition labels."""
    sequences, conditions = lock_sequences(), failure_conditions()
    for cmd in COMMANDS.values():
        if cmd.implemented:
            name = cmd.fid.name
            assert name in sequences and all(sequences[name]), name
            assert name in conditions, name
