"""Instrumentation points that the stress tool cannot reach by replacing functions at start-up.

The stress tool (rmm_mp.stress) instruments the lock API, RTT entry access, EL3's entry and the
accessors of shared state by swapping functions in its own CPU processes, which costs ordinary
runs nothing. Code outside its reach (RSI dispatch, the REC run, the host's run queue) marks a
point with one guarded line:

    if points.hook is not None: points.hook(points.RSI_ENTRY, fid)

``hook`` is None unless the stress tool installs one in a CPU process (or the interleaving
explorer in its own process, for the run points of a REC_ENTER: stress.explore), so an ordinary
run pays one module attribute load and a test. The stress tool's hook may switch to another CPU
process (deterministic scheduling) and publishes the realm call in the CPU's shared area
(hw.cpuarea OFF_RSI_CALL).

This module owns the point kinds and the hook. It must not know who listens.
"""

from __future__ import annotations

from typing import Callable, Final

RMI_ENTRY: Final = 1
RMI_EXIT: Final = 2
RSI_ENTRY: Final = 3
RSI_EXIT: Final = 4
LOCK: Final = 5
UNLOCK: Final = 6
SPIN: Final = 7
ATOMIC: Final = 8
RTT_READ: Final = 9
RTT_WRITE: Final = 10
OP: Final = 11
REC_RUN: Final = 12
QUEUE: Final = 13
DONE: Final = 14

NAMES: Final = {RMI_ENTRY: "rmi-entry", RMI_EXIT: "rmi-exit", RSI_ENTRY: "rsi-entry", RSI_EXIT: "rsi-exit",
                LOCK: "lock", UNLOCK: "unlock", SPIN: "spin", ATOMIC: "atomic", RTT_READ: "rtt-read",
                RTT_WRITE: "rtt-write", OP: "op", REC_RUN: "rec-run", QUEUE: "queue", DONE: "done"}

hook: "Callable[[int, int], None] | None" = None
"""Called as hook(kind, argument) at a point; None when nothing listens."""


def name(kind: int) -> str:
    return NAMES.get(kind, f"point {kind}")
