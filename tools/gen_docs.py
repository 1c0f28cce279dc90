"""Regenerate the generated parts of docs/ from the code (run after changing handlers).

    python tools/gen_docs.py          # rewrite docs/locking.md's per-command and realm-call tables
    python tools/gen_docs.py --check  # exit 1 if the docs are stale (tests do this too)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rmm_mp.rmm import rsi_dispatch
from rmm_mp.rmm.dispatch import COMMANDS, lock_sequences

ROOT = Path(__file__).resolve().parents[1]
LOCKING = ROOT / "docs" / "locking.md"
BEGIN = "<!-- BEGIN GENERATED: lock sequences (tools/gen_docs.py) -->"
BEGIN_REALM = "<!-- BEGIN GENERATED: realm call lock sequences (tools/gen_docs.py) -->"
END = "<!-- END GENERATED -->"


def lock_table() -> str:
    sequences = lock_sequences()
    lines = ["| command | lock sequence | why it cannot deadlock |", "|---|---|---|"]
    for cmd in sorted(COMMANDS.values(), key=lambda c: c.fid):
        name = cmd.fid.name
        if name in sequences:
            seq, why = sequences[name]
            lines.append(f"| {name} | {seq} | {why} |")
        else:
            lines.append(f"| {name} | not implemented yet (returns SMC_UNKNOWN) | |")
    return "\n".join(lines)


def realm_call_table() -> str:
    lines = ["| call | lock sequence | why it cannot deadlock |", "|---|---|---|"]
    for name, (seq, why) in rsi_dispatch.lock_sequences().items():
        lines.append(f"| {name} | {seq} | {why} |")
    return "\n".join(lines)


def _replace(text: str, begin: str, table: str) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{begin}\n{table}\n{END}{tail}"


def render(text: str) -> str:
    return _replace(_replace(text, BEGIN, lock_table()), BEGIN_REALM, realm_call_table())


def main(argv: list[str] | None = None) -> int:
    # argparse, not a look into sys.argv: `--help` (or a mistyped `--chek`) must not fall through
    # to rewriting docs/locking.md.
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="With no option, docs/locking.md is rewritten in place.")
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if docs/locking.md is stale (tests/test_docs.py does this)")
    args = ap.parse_args(argv)
    current = LOCKING.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("docs/locking.md is stale: run python tools/gen_docs.py", file=sys.stderr)
            return 1
        return 0
    LOCKING.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
