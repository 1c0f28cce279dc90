"""Ownership checker in the spirit of ThreadSanitizer: every access to a granule's state,
refcount or contents must be made by a CPU that owns it at that moment.

Owning a granule means holding its lock (the Probe's list of held locks, which covers the
host's NS copies too; an access through one table is owned by a lock taken through that table,
the CPU's for the RMM, the host's for its NS copies, and only while the lock word names it), or,
for a REC and its auxiliary granules, holding the REC's running reference (refcount 1, taken under
the REC lock by REC_ENTER: the Probe notes it when this CPU raises a REC's refcount while holding
its lock, and forgets it when the CPU drops it). Declared exceptions, each a documented lock-free
access of the code:

  - refcount_add is atomic (REC exit, REC_DESTROY's decrement of the RD) and racy_state is the
    declared lock-free state read (nsbuf.still_ns: the NS look at a params page
    once the locks are held);
  - an RD's state and REC count are atomic loads, read lock-free by a CPU that holds one of
    the realm's RECs locked (REC_ENTER's entry checks: the REC's owner field names the RD) or
    running (realm_desc: a REC reference keeps the RD alive); its parameters, RPV and aux
    count never change after REALM_CREATE and may be read by a CPU running one of the
    realm's RECs.

Checked accesses (wrapped at start-up in the CPU process, only when the checker is on):
GranuleTable state / refcount / word / set_state, Granule.unlock_transition, PhysicalMemory
granule / zero / is_zero / read / write, nsbuf.unpack_held_ns and NsAccess.pack_values
(REC_ENTER's run page: the enter half read in place under the page's lock, the exit packed into
it under the lock pack_values takes, both straight in DRAM, not through PhysicalMemory, so each
is checked as a PhysicalMemory read / write of the same bytes is; unpack_held_ns patched in every
rmm_mp module that imported it by name, as rmi_rec does), every public accessor of Rd and Rec, and s2tt read / write /
entries / fill / skip_non_live (an RTT's entries belong to its lock holder; the realm's own
translation reads them lock-free through stage2, which is not an RMM access). A state change
must also happen at refcount 0 (locking rule 6) and agree with the GPT: no granule leaves NS
before EL3 moved it to the Realm PAS, and none becomes NS before it is back in the NS PAS.

Limits: accesses through raw memoryviews (realm pages written by RSI handlers under their RTT
lock, the attestation state in a REC's first two aux granules, NsAccess's one-granule read /
unpack / write copies, made under the lock NsAccess itself takes) and code outside the RMM's
accessors are not seen, nor is a module whose name for an nsbuf function was bound to something
else than nsbuf's at start-up; a violation is reported once per rule and source line.

This module owns the ownership rules. It must not take locks.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING, Any, Callable, cast

from rmm_mp.abi.structs import Layout
from rmm_mp.hw.gpt import Pas
from rmm_mp.hw.granule import REFCOUNT_MASK, STATE_MASK, STATE_SHIFT, Granule, GranuleTable
from rmm_mp.hw.memory import NsAccess, PhysicalMemory
from rmm_mp.rmm import nsbuf, s2tt
from rmm_mp.rmm.granule_state import GranuleState as GS
from rmm_mp.rmm.realm_desc import Rd
from rmm_mp.rmm.rec_desc import OFF_NUM_AUX, OFF_OWNER, Rec
from rmm_mp.stress import classes
from rmm_mp.stress.findings import site

if TYPE_CHECKING:
    from rmm_mp.stress.probe import Probe

RD_ATOMIC = frozenset({"state", "rec_count"})
COUNTED = frozenset({GS.RD, GS.REC, GS.RTT})
"""States whose refcount counts references to the object: it may leave the state only at 0 (a
new RTT takes its 512 references while still DELEGATED, before it becomes an RTT)."""
RD_IMMUTABLE = frozenset({"params", "rpv", "num_rec_aux"})
_RUNNING = {GS.REC: "the REC's running reference", GS.REC_AUX: "its REC's running reference"}
"""What else makes a CPU the owner of a granule in these states (Ownership.owns)."""
_RD_RUNNING = "a running reference to one of its realm's RECs"
"""What else lets a CPU read an RD's immutable fields (RD_IMMUTABLE)."""
_RD_REC = "a lock or running reference on one of its realm's RECs"
"""What else lets a CPU read an RD's atomic fields (RD_ATOMIC)."""
_AUX = struct.Struct("<Q16Q")
_Q = struct.Struct("<Q")


class Ownership:
    """The checker of one CPU process."""

    def __init__(self, probe: "Probe") -> None:
        self.probe = probe
        cpu = probe.cpu
        self.table = cpu.granules
        self.memory = cpu.machine.memory
        self.gpt = cpu.machine.gpt
        self.base = self.memory.base
        self.aux_of: dict[int, int] = {}
        """aux granule index -> REC granule index, for RECs this CPU runs."""

    # -- who owns what ----------------------------------------------------------------------

    def owns(self, idx: int, owner: int | None) -> bool:
        """``owner``: the lock word of the table the access goes through (GranuleTable's own; the
        CPU's for the RMM's accessors of RDs, RECs and RTTs), None for PhysicalMemory's, which
        the host's NS copy uses as well as the RMM."""
        probe = self.probe
        return probe.holds(idx, owner) or idx in probe.running or self.aux_of.get(idx, -1) in probe.running

    def _word(self, idx: int) -> int:
        return self.table._load((idx << 3) + 4)

    def report(self, rule: str, message: str) -> None:
        self.probe.finding("ownership", rule, message, site())

    def access(self, idx: int, what: str, write: bool, running: str | None = None, owner: int | None = -1) -> None:
        """Report an access by a CPU that does not own the granule. ``running``: what besides its
        lock would have let this CPU make it, when that is no REC or aux granule's running
        reference (an RD's immutable fields: one of its realm's RECs running). ``owner``: the
        lock word of the table it goes through (owns); -1, the default, the CPU's own."""
        if owner == -1:
            owner = self.table.owner
        if not self.probe.checking or self.owns(idx, owner):
            return
        state = (self._word(idx) >> STATE_SHIFT) & STATE_MASK
        verb = "write" if write else "read"
        # Name only what would have made the access an owner's: a running reference covers a
        # REC and its aux granules (and an RD's immutable fields), nothing else; "or the REC's
        # running reference" on an RTT entry or a DATA granule sent the reader looking for a REC.
        other = running or _RUNNING.get(state)
        self.report(f"unlocked {verb}", f"{verb} of {what} of {GS.name(state)} granule {self.base + (idx << 12):#x} "
                                        f"without its lock" + (f" or {other}" if other else ""))

    def transition(self, idx: int, new: int, owner: int) -> None:
        """A state change through the table whose lock word is ``owner``: owner, no references
        to what it was (rule 6), and the GPT agrees."""
        if not self.probe.checking:
            return
        pa = self.base + (idx << 12)
        if not self.probe.holds(idx, owner):
            self.report("rule 6", f"state of {pa:#x} changed to {GS.name(new)} without its lock")
        word = self._word(idx)
        old = (word >> STATE_SHIFT) & STATE_MASK
        if word & REFCOUNT_MASK and old in COUNTED:
            self.report("rule 6", f"{GS.name(old)} {pa:#x} became {GS.name(new)} with {word & REFCOUNT_MASK} "
                                  "references left")
        pas = self.gpt.pas(idx)
        if (new == GS.NS) != (pas != Pas.REALM):
            self.report("transition", f"{pa:#x} becomes {GS.name(new)} while the GPT has it in the "
                                      f"{Pas(pas).name} PAS")

    def running_changed(self, idx: int, delta: int, owner: int) -> None:
        """refcount_add on a REC: this CPU takes (under the lock) or drops its running reference."""
        if (self._word(idx) >> STATE_SHIFT) & STATE_MASK != GS.REC:
            return
        probe = self.probe
        offset = idx << 12
        if delta > 0 and probe.holds(idx, owner):
            probe.running[idx] = self.table.find(_Q.unpack_from(self.memory.buf, offset + OFF_OWNER)[0])
            count, *aux = _AUX.unpack_from(self.memory.buf, offset + OFF_NUM_AUX)
            for pa in aux[:count]:
                self.aux_of[self.table.find(pa)] = idx
        elif delta < 0 and idx in probe.running:
            del probe.running[idx]
            for aux_idx in [a for a, rec in self.aux_of.items() if rec == idx]:
                del self.aux_of[aux_idx]

    def holds_rec_of(self, rd_idx: int) -> bool:
        """This CPU holds the lock of a REC whose owner field names the RD (read raw: the REC's
        fields are its lock holder's)."""
        rd_pa = self.base + (rd_idx << 12)
        buf = self.memory.buf
        return any(h.cls == classes.REC and _Q.unpack_from(buf, (h.idx << 12) + OFF_OWNER)[0] == rd_pa
                   for h in self.probe.held)

    def rd_access(self, rd: Rd, name: str) -> None:
        if not self.probe.checking:
            return
        if name in RD_ATOMIC:
            # Lock-free, but only under a reference that keeps the RD alive: without one,
            # REALM_DESTROY may run meanwhile and the granule be handed back (docs/locking.md,
            # "Reads made without the lock"). It used to be accepted from any CPU at all.
            if rd.idx in self.probe.running.values() or self.holds_rec_of(rd.idx):
                return
            self.access(rd.idx, f"RD field {name}", write=False, running=_RD_REC)
            return
        if name in RD_IMMUTABLE and rd.idx in self.probe.running.values():
            return
        self.access(rd.idx, f"RD field {name}", write=name.startswith("set_") or name == "initialise",
                    running=_RD_RUNNING if name in RD_IMMUTABLE else None)


def install(probe: "Probe") -> Ownership:
    """Wrap every checked accessor in this process (see the module docstring)."""
    own = Ownership(probe)
    _wrap_table(probe, own)
    _wrap_memory(probe, own)
    _wrap_descriptor(probe, Rd, lambda obj, name: own.rd_access(obj, name))
    _wrap_descriptor(probe, Rec, lambda obj, name: own.access(obj.idx, f"REC field {name}",
                                                              name.startswith("set_") or name == "initialise"))
    _wrap_rtt(probe, own)
    _wrap_run_page(probe, own)
    return own


def _wrap_table(probe: "Probe", own: Ownership) -> None:
    T = GranuleTable
    state, refcount, word, set_state, refcount_add = T.state, T.refcount, T.word, T.set_state, T.refcount_add
    unlock_transition = Granule.unlock_transition

    def c_state(self: GranuleTable, idx: int) -> int:
        own.access(idx, "the state", False, owner=self.owner)
        return state(self, idx)

    def c_refcount(self: GranuleTable, idx: int) -> int:
        own.access(idx, "the refcount", False, owner=self.owner)
        return refcount(self, idx)

    def c_word(self: GranuleTable, idx: int) -> int:
        own.access(idx, "the state word", False, owner=self.owner)
        return word(self, idx)

    def c_set_state(self: GranuleTable, idx: int, new: int) -> None:
        own.transition(idx, new, self.owner)
        set_state(self, idx, new)

    def c_refcount_add(self: GranuleTable, idx: int, delta: int) -> int:
        old = refcount_add(self, idx, delta)
        own.running_changed(idx, delta, self.owner)
        return old

    def c_unlock_transition(self: Granule, new_state: int) -> None:
        own.transition(self.idx, new_state, self.table.owner)
        unlock_transition(self, new_state)

    probe.patch(T, "state", c_state)
    probe.patch(T, "refcount", c_refcount)
    probe.patch(T, "word", c_word)
    probe.patch(T, "set_state", c_set_state)
    probe.patch(T, "refcount_add", c_refcount_add)
    probe.patch(Granule, "unlock_transition", c_unlock_transition)


def _wrap_memory(probe: "Probe", own: Ownership) -> None:
    M = PhysicalMemory
    granule, zero, is_zero, read, write = M.granule, M.zero, M.is_zero, M.read, M.write

    def span(memory: PhysicalMemory, pa: int, size: int, verb: str) -> None:
        first = (pa - memory.base) >> 12
        last = (pa + max(size, 1) - 1 - memory.base) >> 12
        for idx in range(first, last + 1):
            own.access(idx, f"the contents ({verb} {size} bytes at {pa:#x})", verb == "write", owner=None)

    def c_granule(self: PhysicalMemory, idx: int) -> memoryview:
        own.access(idx, "the contents", True, owner=None)
        return granule(self, idx)

    def c_zero(self: PhysicalMemory, idx: int) -> None:
        own.access(idx, "the contents (zeroing)", True, owner=None)
        zero(self, idx)

    def c_is_zero(self: PhysicalMemory, idx: int) -> bool:
        own.access(idx, "the contents", False, owner=None)
        return is_zero(self, idx)

    def c_read(self: PhysicalMemory, pa: int, size: int) -> bytes:
        span(self, pa, size, "read")
        return read(self, pa, size)

    def c_write(self: PhysicalMemory, pa: int, data: Any) -> None:
        span(self, pa, len(data), "write")
        write(self, pa, data)

    for name, fn in (("granule", c_granule), ("zero", c_zero), ("is_zero", c_is_zero), ("read", c_read),
                     ("write", c_write)):
        probe.patch(M, name, fn)


def _patch_everywhere(probe: "Probe", name: str, original: Any, replacement: Any) -> None:
    """Replace nsbuf's function ``name`` in nsbuf and in every rmm_mp module that imported it by
    name (rmi_rec's REC_ENTER calls its own binding: patching nsbuf alone would miss it)."""
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("rmm_mp.") and vars(module).get(name) is original:
            probe.patch(module, name, replacement)


class _CheckedPack:
    """The Layout NsAccess.pack_values packs with: its write into DRAM is checked as
    PhysicalMemory.write's wrapper checks one, at the moment it is made (inside pack_values,
    under the lock it takes)."""

    __slots__ = ("layout", "own")

    def __init__(self, layout: Any, own: Ownership) -> None:
        self.layout = layout
        self.own = own

    def pack_values_into(self, buf: Any, at: int, values: dict[str, Any]) -> None:
        layout, own = self.layout, self.own
        if buf is own.memory.buf:
            pa, size = own.base + at, layout.size
            for idx in range(at >> 12, ((at + max(size, 1) - 1) >> 12) + 1):
                own.access(idx, f"the contents (write {size} bytes at {pa:#x})", True, owner=None)
        layout.pack_values_into(buf, at, values)

    def __getattr__(self, name: str) -> Any:     # anything else pack_values may read of the layout
        return getattr(self.layout, name)


def _wrap_run_page(probe: "Probe", own: Ownership) -> None:
    """REC_ENTER's run page accesses made in place, not through PhysicalMemory.read / write: the
    enter half unpacked under the page's lock (nsbuf.unpack_held_ns) and the exit packed into it
    under the lock NsAccess.pack_values takes. Each is checked as a PhysicalMemory read / write
    of its bytes is (the enter half was read through PhysicalMemory.read until it was unpacked in
    place)."""
    unpack_held, pack_values = nsbuf.unpack_held_ns, NsAccess.pack_values

    def c_unpack_held_ns(rmm: Any, page: Any, layout: Any) -> dict[str, Any] | None:
        values = unpack_held(rmm, page, layout)
        if values is not None:      # None: outside the NS PAS, nothing was read
            own.access(page.idx, f"the contents (read {layout.extent} bytes at {page.addr:#x})", False, owner=None)
        return values

    def c_pack_values(self: NsAccess, idx: int, offset: int, layout: Any, values: dict[str, Any]) -> None:
        # A stand-in for the Layout: pack_values_into is all pack_values calls on it.
        pack_values(self, idx, offset, cast(Layout, _CheckedPack(layout, own)), values)

    _patch_everywhere(probe, "unpack_held_ns", unpack_held, c_unpack_held_ns)
    probe.patch(NsAccess, "pack_values", c_pack_values)


def _wrap_descriptor(probe: "Probe", cls: type, check: Callable[[Any, str], None]) -> None:
    """Wrap every public method and property of an RD or REC accessor class."""
    for name, value in list(vars(cls).items()):
        if name.startswith("_") or isinstance(value, (staticmethod, classmethod)):
            continue
        if isinstance(value, property):
            probe.patch(cls, name, _checked_property(value, name, check))
        elif callable(value):
            probe.patch(cls, name, _checked_method(value, name, check))


def _checked_property(prop: property, name: str, check: Callable[[Any, str], None]) -> property:
    fget, fset = prop.fget, prop.fset

    def getter(self: Any) -> Any:
        check(self, name)
        return fget(self)  # type: ignore[misc]

    def setter(self: Any, value: Any) -> None:
        check(self, "set_" + name)
        fset(self, value)  # type: ignore[misc]

    return property(getter, setter if fset is not None else None)


def _checked_method(fn: Callable[..., Any], name: str, check: Callable[[Any, str], None]) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        check(self, name)
        return fn(self, *args, **kwargs)
    method.__name__ = name
    return method


def _wrap_rtt(probe: "Probe", own: Ownership) -> None:
    read, write, entries, fill, skip = s2tt.read, s2tt.write, s2tt.entries, s2tt.fill, s2tt.skip_non_live

    def c_read(memory: Any, table_idx: int, index: int) -> int:
        own.access(table_idx, "an RTT entry", False)
        return read(memory, table_idx, index)

    def c_write(memory: Any, table_idx: int, index: int, desc: int) -> None:
        own.access(table_idx, "an RTT entry", True)
        write(memory, table_idx, index, desc)

    def c_entries(memory: Any, table_idx: int) -> Any:
        own.access(table_idx, "the RTT entries", False)
        return entries(memory, table_idx)

    def c_fill(memory: Any, table_idx: int, descs: Any) -> None:
        own.access(table_idx, "the RTT entries", True)
        fill(memory, table_idx, descs)

    def c_skip(memory: Any, table_idx: int, level: int, index: int, ipa: int) -> int:
        own.access(table_idx, "the RTT entries", False)
        return skip(memory, table_idx, level, index, ipa)

    for name, fn in (("read", c_read), ("write", c_write), ("entries", c_entries), ("fill", c_fill),
                     ("skip_non_live", c_skip)):
        probe.patch(s2tt, name, fn)

