"""The RMI dispatch table and the one place where results are packed into registers.

Each row: function ID, handler (None = not implemented yet), number of inputs (X1..) and
outputs (X1..), and whether to log on execution and on error. A test checks that the table
covers exactly the RMI 1.0 function IDs.

Register rules: X0 = status | index << 8; X1..X4 read 0 unless the command writes them (spec
B1.2: on return from an RMI command every register that is not an output MBZ; TF-RMM rel0 and
the shared digest rmi.md 1.2 keep the caller's X4 instead, docs/deviations.md). An ID with no
handler, or one not implemented yet, returns SMC_UNKNOWN (X1..X3 = 0, X4 kept: it is no RMI
command, so the SMCCC rule applies): RMM 1.0 has no "not supported" status.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from rmm_mp.abi.rmi import RmiFid, RmiStatus
from rmm_mp.abi.smccc import SMC_UNKNOWN, SMCCC_SVE_HINT
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.handlers import (
    rmi_data, rmi_granule, rmi_psci, rmi_realm, rmi_rec, rmi_ripas, rmi_rtt, rmi_system,
)

if TYPE_CHECKING:
    from rmm_mp.rmm.cpu import RmmCpu

log = logging.getLogger("rmm_mp.rmm")

_SUCCESS = int(RmiStatus.RMI_SUCCESS)
_FID_MASK = ~SMCCC_SVE_HINT
"""ANDed with a function ID, clears the SVE hint: computed once, not per call (``~`` of a
constant makes a new int each time)."""

Handler = Callable[..., "tuple[int, ...] | None"]
Result = tuple[int, int, int, int, int]

HANDLER_MODULES = (rmi_system, rmi_granule, rmi_realm, rmi_rec, rmi_rtt, rmi_data, rmi_ripas, rmi_psci)
"""Where handlers live: RMI_FOO_BAR is the function rmi_foo_bar of one of these modules."""


@dataclass(frozen=True)
class Command:
    fid: RmiFid
    handler: Handler | None
    inputs: int
    outputs: int
    log_exec: bool = False
    log_error: bool = True

    @property
    def implemented(self) -> bool:
        return self.handler is not None


def _find_handler(fid: RmiFid) -> Handler | None:
    found = [getattr(m, fid.name.lower()) for m in HANDLER_MODULES if hasattr(m, fid.name.lower())]
    if len(found) > 1:
        raise ImportError(f"{fid.name} is defined in more than one handler module")
    return found[0] if found else None


def _row(fid: RmiFid, inputs: int, outputs: int, log_exec: bool = False) -> Command:
    return Command(fid, _find_handler(fid), inputs, outputs, log_exec)


F = RmiFid
COMMANDS: dict[int, Command] = {c.fid: c for c in (
    _row(F.RMI_VERSION, 1, 2),
    _row(F.RMI_GRANULE_DELEGATE, 1, 0),
    _row(F.RMI_GRANULE_UNDELEGATE, 1, 0),
    _row(F.RMI_DATA_CREATE, 5, 0),
    _row(F.RMI_DATA_CREATE_UNKNOWN, 3, 0),
    _row(F.RMI_DATA_DESTROY, 2, 2),
    _row(F.RMI_REALM_ACTIVATE, 1, 0, True),
    _row(F.RMI_REALM_CREATE, 2, 0, True),
    _row(F.RMI_REALM_DESTROY, 1, 0, True),
    _row(F.RMI_REC_CREATE, 3, 0, True),
    _row(F.RMI_REC_DESTROY, 1, 0, True),
    _row(F.RMI_REC_ENTER, 2, 0),
    _row(F.RMI_RTT_CREATE, 4, 0),
    _row(F.RMI_RTT_DESTROY, 3, 2),
    _row(F.RMI_RTT_MAP_UNPROTECTED, 4, 0),
    _row(F.RMI_RTT_READ_ENTRY, 3, 4),
    _row(F.RMI_RTT_UNMAP_UNPROTECTED, 3, 1),
    _row(F.RMI_PSCI_COMPLETE, 3, 0),
    _row(F.RMI_FEATURES, 1, 1),
    _row(F.RMI_RTT_FOLD, 3, 1),
    _row(F.RMI_REC_AUX_COUNT, 1, 1),
    _row(F.RMI_RTT_INIT_RIPAS, 3, 1),
    _row(F.RMI_RTT_SET_RIPAS, 4, 1),
)}


def replace_handler(fid: int, handler: Handler) -> Handler | None:
    """Make ``handler`` run RMI command ``fid`` from now on in this process; returns the one it
    replaces. For tools that swap a handler at start-up (rmm_mp.stress injects catalogued bugs
    this way), so that dispatch itself never tests for them."""
    cmd = COMMANDS[int(fid)]
    COMMANDS[int(fid)] = dataclasses.replace(cmd, handler=handler)
    return cmd.handler


def lock_sequences() -> dict[str, tuple[str, str]]:
    """{command: (lock sequence, why it cannot deadlock)} as each handler module declares it."""
    found: dict[str, tuple[str, str]] = {}
    for module in HANDLER_MODULES:
        found.update(getattr(module, "LOCK_SEQUENCES", {}))
    return found


def failure_conditions() -> dict[str, tuple[str, ...]]:
    """{command: spec failure-condition labels in the order the handler checks them}."""
    found: dict[str, tuple[str, ...]] = {}
    for module in HANDLER_MODULES:
        found.update(getattr(module, "FAILURE_CONDITIONS", {}))
    return found


def dispatch(rmm: "RmmCpu", fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Result:
    """Run one RMI call on ``rmm``'s CPU; returns X0..X4 (the REQ_COMPLETE arguments)."""
    cmd = COMMANDS.get(fid & _FID_MASK)
    if cmd is None or cmd.handler is None:
        return (SMC_UNKNOWN, 0, 0, 0, x4)
    handler = cmd.handler
    inputs = cmd.inputs
    try:
        if inputs == 1:
            out = handler(rmm, x1)
        elif inputs == 2:
            out = handler(rmm, x1, x2)
        elif inputs == 3:
            out = handler(rmm, x1, x2, x3)
        elif inputs == 4:
            out = handler(rmm, x1, x2, x3, x4)
        else:
            out = handler(rmm, x1, x2, x3, x4, x5)
    except RmiError as err:
        if rmm.log and cmd.log_error:
            log.debug("CPU %d %s -> %s index %d", rmm.cpu, cmd.fid.name, err.status.name, err.index)
        return _pack(int(err.status) | (err.index << 8), err.outputs)
    if rmm.log and cmd.log_exec:
        log.debug("CPU %d %s(%s) -> RMI_SUCCESS", rmm.cpu, cmd.fid.name,
                  ", ".join(hex(a) for a in (x1, x2, x3, x4, x5)[:inputs]))
    if not out:
        return (_SUCCESS, 0, 0, 0, 0)
    return _pack(_SUCCESS, out)


def _pack(x0: int, out: "tuple[int, ...] | None") -> Result:
    if not out:
        return (x0, 0, 0, 0, 0)
    n = len(out)
    return (x0, out[0], out[1] if n > 1 else 0, out[2] if n > 2 else 0, out[3] if n > 3 else 0)
