"""The invariant checker: what must hold on a quiescent machine, granule by granule.

Rules checked granule by granule here (each violation names its rule), then the realm
structure rules of check/_realms.py (RTT trees, refcounts, REC ownership and indices, VMIDs):
  lock-free       no granule lock is held
  state-known     the state field holds a GranuleState value
  gpt             NS granules are in the NS PAS (or Secure, for the platform's Secure
                  regions, which never leave NS state); every other state is in the Realm PAS
  refcount        NS, DELEGATED, DATA and REC_AUX granules have refcount 0; a REC at most 1;
                  an RTT at most 512
  delegated-zero  every DELEGATED granule reads as all zeros (locking rule 7)

It reads the shared tables directly and takes no locks: run it only when no CPU is inside a
call. It may read RMM structures (layering rule of DESIGN.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rmm_mp.hw.gpt import Pas
from rmm_mp.hw.granule import GRANULE_SIZE, REFCOUNT_MASK, STATE_MASK, STATE_SHIFT, describe_owner
from rmm_mp.check._realms import check_realms
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.words import count

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

_ZERO_REFCOUNT = frozenset({GranuleState.NS, GranuleState.DELEGATED, GranuleState.DATA, GranuleState.REC_AUX})
_MAX_REFCOUNT = {GranuleState.REC: 1, GranuleState.RTT: 512}


@dataclass(frozen=True)
class Violation:
    """One broken invariant at one granule, or (``pa`` None) at none: a VMID reserved in the
    control block's bitmap with no realm using it is no granule's (it was shown at "granule
    0x0", an address that is not even DRAM)."""

    rule: str
    pa: int | None
    detail: str
    state: int | None = field(default=None, compare=False)
    """The granule's state field as the check's snapshot read it (None: no granule): whoever
    names the violation (stress.findings' identity) reads no machine again, whose CPUs may have
    gone on since."""

    def __str__(self) -> str:
        if self.pa is None:
            return f"[{self.rule}] {self.detail}"
        return f"[{self.rule}] granule {self.pa:#x}: {self.detail}"


@dataclass(frozen=True)
class InvariantReport:
    granules: int
    violations: tuple[Violation, ...]
    state_counts: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        if self.ok:
            return f"invariants hold over {self.granules:,} granules"
        shown = "\n".join(str(v) for v in self.violations[:20])
        more = f"\n... and {len(self.violations) - 20} more" if len(self.violations) > 20 else ""
        return f"{count(len(self.violations), 'invariant violation')}:\n{shown}{more}"


def invariants(machine: "Machine") -> InvariantReport:
    """Check every granule of a quiescent machine; returns the report (it never raises)."""
    table = machine.granule_table(0)
    locks, words = table.snapshot()
    pas = machine.gpt.snapshot()
    base = machine.dram_base
    secure = _secure_indices(machine)
    violations: list[Violation] = []
    counts: dict[str, int] = {}
    for idx, (lock, word) in enumerate(zip(locks, words)):
        state = (word >> STATE_SHIFT) & STATE_MASK
        refcount = word & REFCOUNT_MASK
        pa = base + idx * GRANULE_SIZE
        name = GranuleState.name(state)
        counts[name] = counts.get(name, 0) + 1
        if lock:
            violations.append(Violation("lock-free", pa, f"lock held by {describe_owner(lock)}"))
        if state >= len(GranuleState.NAMES):
            violations.append(Violation("state-known", pa, f"state field is {state}"))
            continue
        expected = (Pas.SECURE if idx in secure else Pas.NS) if state == GranuleState.NS else Pas.REALM
        if pas[idx] != expected:
            violations.append(Violation("gpt", pa, f"state {name} but PAS {_pas_name(pas[idx])}, "
                                                   f"expected {expected.name}"))
        if idx in secure and state != GranuleState.NS:
            violations.append(Violation("gpt", pa, f"Secure granule in state {name}"))
        if state in _ZERO_REFCOUNT and refcount:
            violations.append(Violation("refcount", pa, f"{name} granule has refcount {refcount}, expected 0"))
        elif refcount > _MAX_REFCOUNT.get(state, REFCOUNT_MASK):
            violations.append(Violation("refcount", pa, f"{name} granule has refcount {refcount}, "
                                                        f"at most {_MAX_REFCOUNT[state]} allowed"))
        if state == GranuleState.DELEGATED and not machine.memory.is_zero(idx):
            violations.append(Violation("delegated-zero", pa, "DELEGATED granule holds non-zero bytes"))
    states = [(w >> STATE_SHIFT) & STATE_MASK for w in words]
    refcounts = [w & REFCOUNT_MASK for w in words]
    check_realms(machine, states, refcounts, lambda rule, pa, detail: violations.append(Violation(rule, pa, detail)))
    return InvariantReport(len(locks), tuple(_stated(v, base, states) for v in violations), counts)


def _stated(violation: Violation, base: int, states: list[int]) -> Violation:
    """``violation`` with its granule's state from the check's snapshot (see Violation.state)."""
    if violation.pa is None or not 0 <= (violation.pa - base) // GRANULE_SIZE < len(states):
        return violation
    return replace(violation, state=states[(violation.pa - base) // GRANULE_SIZE])


def _secure_indices(machine: "Machine") -> set[int]:
    found: set[int] = set()
    for base, size in machine.secure_regions:
        first = (base - machine.dram_base) // GRANULE_SIZE
        found.update(range(first, first + size // GRANULE_SIZE))
    return found


def _pas_name(value: int) -> str:
    try:
        return Pas(value).name
    except ValueError:
        return f"unknown({value})"
