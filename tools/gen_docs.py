"""Regenerate the generated parts of docs/ from the code (run after changing handlers).

    python tools/gen_docs.py          # rewrite docs/locking.md's per-command table
    python tools/gen_docs.py --check  # exit 1 if the docs are stale (tests do this too)
"""

from __future__ import annotations

import sys
from pathlib import Path

from rmm_mp.rmm.dispatch import COMMANDS, lock_sequences

ROOT = Path(__file__).resolve().parents[1]
LOCKING = ROOT / "docs" / "locking.md"
BEGIN = "<!-- BEGIN GENERATED: lock sequences (tools/gen_docs.py) -->"
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


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{lock_table()}\n{END}{tail}"


def main() -> int:
    current = LOCKING.read_text()
    fresh = render(current)
    if "--check" in sys.argv:
        if fresh != current:
            print("docs/locking.md is stale: run python tools/gen_docs.py", file=sys.stderr)
            return 1
        return 0
    LOCKING.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
