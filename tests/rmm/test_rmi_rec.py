"""RMI_REC_CREATE, RMI_REC_DESTROY, RMI_REC_AUX_COUNT, RMI_REC_ENTER (DEN0137 1.0-rel0 B4.3.12,
B4.3.13, B4.3.11, B4.3.14).

Per command: one test per failure condition in the order of the spec's table (each names the
ARM cca-rmm-acs case it mirrors: test/command/cmd_rec_*/rmi_rec_*_data.h), asserting the exact
X0, X1..X4 = 0, and an unchanged footprint (every granule's state, refcount and lock,
the GPT, and the contents of the granules involved); then the success post-conditions and an
invariant check. White-box steps (realm state SYSTEM_OFF, a REC's refcount, a
pending PSCI request, a last-exit syndrome) say so where they happen.
"""

from __future__ import annotations

import hashlib
import struct
from unittest import mock

import pytest

from footprint import realm_snapshot, snapshot
from rmi_helpers import (F, GRANULE, INPUT, REALM_ERR, REC_ERR, SUCCESS, Realm, Rmi, before_the_first_lock,
                         delegate_after_the_copy, host_rewrites_after_each_read, start_level_for)
from rmm_mp import Machine
from rmm_mp.abi.structs import RMI_REC_ENTER, RMI_REC_EXIT, RMI_REC_MPIDR_SBZ, RMI_REC_PARAMS, rec_index_to_mpidr
from rmm_mp.check import invariants
from rmm_mp.hw.gpt import Pas
from rmm_mp.hw.granule import Granule, GranuleTable, cpu_owner
from rmm_mp.hw.memory import PhysicalMemory
from rmm_mp.guest.isa import Op, encode
from rmm_mp.rmm import gic, realm_run, rec_desc, s2tt
from rmm_mp.rmm.handlers import rmi_rec
from rmm_mp.rmm.granule_state import GranuleState as S
from rmm_mp.rmm.realm_desc import RealmState, Rd
from rmm_mp.rmm.rec_desc import PSTATE_EL1H_DAIF_MASKED, Rec

X4 = 0x4444_5555_6666_7777
JUNK = 0x5A5A_5A5A_5A5A_5A5A
EXIT_JUNK = b"\xA5" * 0x800
IRQ = 1
PSCI_CPU_ON = 0xC400_0003


# -- helpers -----------------------------------------------------------------------------------

@pytest.fixture
def t(machine: Machine) -> Rmi:
    return Rmi(machine)


def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // m.granule_size


def _state(m: Machine, pa: int) -> int:
    return m.granule_table(0).state(_idx(m, pa))


def _refcount(m: Machine, pa: int) -> int:
    return m.granule_table(0).refcount(_idx(m, pa))


def _set_refcount(m: Machine, pa: int, delta: int) -> None:
    """White-box: change a granule's refcount (a REC 'running on another CPU', a full RD)."""
    m.granule_table(0).refcount_add(_idx(m, pa), delta)


def _rd(m: Machine, realm: Realm) -> Rd:
    return Rd(m.memory, _idx(m, realm.rd))


def _rec(m: Machine, pa: int) -> Rec:
    return Rec(m.memory, _idx(m, pa))


def _call(t: Rmi, fid: int, *args: int) -> tuple[int, ...]:
    """The command with junk in its unused registers up to X3 and X4 = X4."""
    return t.smc(fid, *args, *([JUNK] * (3 - len(args))), X4)


def _fails(m: Machine, t: Rmi, x0: int, fid: int, *args: int, pas: tuple[int, ...] = ()) -> None:
    """The command returns exactly (x0, 0, 0, 0, X4) and the footprint does not change."""
    before = snapshot(m, *pas)
    assert _call(t, fid, *args) == (x0, 0, 0, 0, 0)
    assert before.diff(snapshot(m, *pas)) == []


def _ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


def _bad_address(m: Machine, where: str) -> int:
    """An address that is not a delegable granule (the ACS *_align / *_bound stimuli)."""
    dram_end = m.dram_base + m.granule_count * m.granule_size
    return {"mmio": m.mmio_regions[0][0], "beyond-pa": 1 << m.pa_bits, "past-dram": dram_end}[where]


BOUND = ["mmio", "beyond-pa", "past-dram"]


def _data_granule(t: Rmi, realm: Realm, ipa: int = 0) -> int:
    """A DATA granule mapped at ``ipa`` of the NEW ``realm`` (RTTs made, DATA_CREATE unmeasured)."""
    t.rtts(realm, ipa, 3)
    data = t.delegate()
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, ipa, t.ns_page(b"data"), 0)[0] == SUCCESS
    return data


def _expected_rim(old: bytes, algo: str, flags: int, pc: int, gprs: tuple[int, ...]) -> bytes:
    """RimExtendRec computed from rsi-attest.md 3.3, independently of rmm_mp.rmm.measurement:
    H(descriptor type 1, len 0x100, old RIM, H(4 KiB RmiRecParams image: flags, pc, gprs))."""
    image = bytearray(4096)
    struct.pack_into("<Q", image, 0x000, flags)
    struct.pack_into("<Q", image, 0x200, pc)
    struct.pack_into("<8Q", image, 0x300, *gprs, *([0] * (8 - len(gprs))))
    content = hashlib.new(algo, image).digest()
    desc = bytearray(0x100)
    desc[0] = 1
    struct.pack_into("<Q", desc, 0x08, 0x100)
    desc[0x10:0x10 + len(old)] = old
    desc[0x50:0x50 + len(content)] = content
    return hashlib.new(algo, desc).digest()


# -- RMI_REC_CREATE ------------------------------------------------------------------------------

class Create:
    """A NEW realm, 16 delegated aux granules, a delegated REC granule and valid params (index 0)."""

    def __init__(self, t: Rmi, **params: object) -> None:
        self.t = t
        self.realm = t.realm()
        self.aux = tuple(t.delegate() for _ in range(16))
        self.rec = t.delegate()
        self.params = self.make_params(**params)

    def make_params(self, **params: object) -> int:
        fields: dict[str, object] = {"aux": self.aux}
        fields.update(params)
        return self.t.rec_params(**fields)  # type: ignore[arg-type]

    def footprint(self, *more: int) -> tuple[int, ...]:
        return (self.realm.rd, *self.realm.roots, self.rec, *self.aux, self.params, *more)

    def fails(self, x0: int, rd: int | None = None, rec: int | None = None, params: int | None = None,
              more: tuple[int, ...] = ()) -> None:
        args = (self.realm.rd if rd is None else rd, self.rec if rec is None else rec,
                self.params if params is None else params)
        _fails(self.t.m, self.t, x0, F.RMI_REC_CREATE, *args, pas=self.footprint(*more))


@pytest.mark.parametrize("offset", [8, 0x800])
def test_rec_create_params_align(machine: Machine, t: Rmi, offset: int) -> None:
    """ACS params_align (PARAMS_UNALIGNED): params_ptr inside a valid NS params page but not
    granule aligned -> RMI_ERROR_INPUT; nothing changes (no aux granule claimed)."""
    c = Create(t)
    c.fails(INPUT, params=c.params + offset)
    _ok(machine)


@pytest.mark.parametrize("where", BOUND)
def test_rec_create_params_bound(machine: Machine, t: Rmi, where: str) -> None:
    """ACS params_bound (PARAMS_DEV_MEM, PARAMS_OUTSIDE_OF_PERMITTED_PA): params_ptr is MMIO,
    beyond the PA range or past DRAM -> RMI_ERROR_INPUT, footprint unchanged."""
    c = Create(t)
    c.fails(INPUT, params=_bad_address(machine, where))
    _ok(machine)


@pytest.mark.parametrize("pas", ["realm", "secure"])
def test_rec_create_params_pas(machine: Machine, t: Rmi, pas: str) -> None:
    """ACS params_pas (PARAMS_PAS_REALM, PARAMS_PAS_SECURE): params_ptr is a DELEGATED granule
    or a Secure DRAM granule -> RMI_ERROR_INPUT, footprint unchanged."""
    c = Create(t)
    params = t.delegate() if pas == "realm" else machine.secure_regions[0][0]
    c.fails(INPUT, params=params, more=(params,))
    _ok(machine)


def test_rec_create_bound_to_fail_never_holds_an_aux_granule(machine: Machine, t: Rmi,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A REC_CREATE bound to fail (mpidr names index 5 of a realm with no REC) has no footprint,
    so another CPU's UNDELEGATE of one of its aux granules succeeds whenever it runs. The old code
    claimed the aux granules (DELEGATED -> REC_AUX) one by one before it locked the REC and the
    RD, as TF-RMM rel0 does, and put them back on the failure: an UNDELEGATE between the two
    (here, when CPU 0 goes on to lock the REC and the RD) got RMI_ERROR_INPUT. Now the granules
    are locked together and change state only on success, so the UNDELEGATE runs before the
    command (which then fails aux_state) or waits for its end."""
    c = Create(t, index=5)
    other = Rmi(machine, cpu=1)
    answers: list[int] = []

    def undelegate_first(original):  # type: ignore[no-untyped-def]
        def hooked(table, *args):  # type: ignore[no-untyped-def]
            if not answers:     # once, at CPU 0's first multi-granule lock
                answers.append(-1)
                answers[0] = other.smc(F.RMI_GRANULE_UNDELEGATE, c.aux[0])[0]
            return original(table, *args)
        return hooked

    monkeypatch.setattr(GranuleTable, "lock_two", undelegate_first(GranuleTable.lock_two))
    monkeypatch.setattr(GranuleTable, "lock_sorted", undelegate_first(GranuleTable.lock_sorted))
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, c.rec, c.params) == (INPUT, 0, 0, 0, 0)
    monkeypatch.undo()
    assert answers == [SUCCESS]
    assert _state(machine, c.aux[0]) == S.NS
    assert all(_state(machine, a) == S.DELEGATED for a in (c.rec, *c.aux[1:]))
    _ok(machine)


@pytest.mark.parametrize("alias", ["rec", "aux", "none"])
def test_rec_create_params_delegated_after_the_copy(machine: Machine, t: Rmi, monkeypatch: pytest.MonkeyPatch,
                                                    alias: str) -> None:
    """params_pas again: the params are copied before any lock (rule 8); another CPU delegating
    the page between that copy and the REC and RD locks fails the command (INPUT, nothing
    changes). The old code (and TF-RMM rel0, which never looks at the page again) returned
    SUCCESS, even with the params page as the REC or as an aux granule, which no serial order
    gives: DELEGATE first fails params_pas, REC_CREATE first fails rec_state or aux_state."""
    c = Create(t)
    params = t.ns_granule()
    aux = c.aux[:3] + (params,) + c.aux[4:] if alias == "aux" else c.aux
    machine.ns_write(params, bytes(RMI_REC_PARAMS.pack(flags=1, mpidr=rec_index_to_mpidr(0), num_aux=16, aux=aux)))
    rec = params if alias == "rec" else c.rec
    other = Rmi(machine, cpu=1)
    delegate_after_the_copy(monkeypatch, rmi_rec, other, params)
    pas = (c.realm.rd, *c.realm.roots, *c.aux, c.rec)
    before = snapshot(machine, *pas)
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, rec, params) == (INPUT, 0, 0, 0, 0)
    monkeypatch.undo()
    delegated = f"granule {_idx(machine, params)}: "     # the other CPU's DELEGATE, nothing else
    assert [d for d in before.diff(snapshot(machine, *pas)) if not d.startswith(delegated)] == []
    assert _state(machine, params) == S.DELEGATED
    assert _rd(machine, c.realm).rec_count == 0
    _ok(machine)


def test_rec_create_rec_align(machine: Machine, t: Rmi) -> None:
    """ACS rec_align (REC_UNALIGNED): rec not granule aligned -> RMI_ERROR_INPUT; the 16 aux
    granules, claimed before the REC is looked at, are back to DELEGATED, no lock held."""
    c = Create(t)
    c.fails(INPUT, rec=c.rec + 8)
    assert all(_state(machine, a) == S.DELEGATED for a in c.aux)
    _ok(machine)


@pytest.mark.parametrize("where", BOUND)
def test_rec_create_rec_bound(machine: Machine, t: Rmi, where: str) -> None:
    """ACS rec_bound (REC_DEV_MEM, REC_OUTSIDE_OF_PERMITTED_PA): rec is not delegable memory ->
    RMI_ERROR_INPUT, no aux granule changed, footprint unchanged."""
    c = Create(t)
    c.fails(INPUT, rec=_bad_address(machine, where))
    _ok(machine)


@pytest.mark.parametrize("kind", ["undelegated", "rd", "rec", "rtt", "data", "rec_aux", "same-as-rd"])
def test_rec_create_rec_state(machine: Machine, t: Rmi, kind: str) -> None:
    """ACS rec_state (REC_GRAN_STATE_UNDELEGATED/RD/REC/RTT/DATA): the rec granule is NS, an RD,
    a REC, a root RTT, a DATA granule or another REC's aux granule (or rec == rd) ->
    RMI_ERROR_INPUT, no aux granule changed, footprint unchanged."""
    c = Create(t)
    other = t.realm()
    other_rec = t.rec(other) if kind in ("rec", "rec_aux") else 0
    rec = {"undelegated": t.ns_page(b"host"), "rd": other.rd, "rec": other_rec, "rtt": c.realm.roots[0],
           "data": _data_granule(t, other) if kind == "data" else 0,
           "rec_aux": other.recs[0][1][3] if other.recs else 0, "same-as-rd": c.realm.rd}[kind]
    c.fails(INPUT, rec=rec, more=(rec,))
    _ok(machine)


def test_rec_create_rd_align(machine: Machine, t: Rmi) -> None:
    """ACS rd_align (RD_UNALIGNED): rd not granule aligned -> RMI_ERROR_INPUT, footprint
    unchanged."""
    c = Create(t)
    c.fails(INPUT, rd=c.realm.rd + 0x10)
    _ok(machine)


@pytest.mark.parametrize("where", BOUND)
def test_rec_create_rd_bound(machine: Machine, t: Rmi, where: str) -> None:
    """ACS rd_bound (RD_DEV_MEM, RD_OUTSIDE_OF_PERMITTED_PA) -> RMI_ERROR_INPUT, footprint
    unchanged."""
    c = Create(t)
    c.fails(INPUT, rd=_bad_address(machine, where))
    _ok(machine)


@pytest.mark.parametrize("kind", ["undelegated", "delegated", "rec", "rtt", "data"])
def test_rec_create_rd_state(machine: Machine, t: Rmi, kind: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED/DELEGATED/REC/RTT/DATA): rd is not an RD ->
    RMI_ERROR_INPUT, footprint unchanged."""
    c = Create(t)
    other = t.realm()
    rd = {"undelegated": t.ns_page(), "delegated": t.delegate(), "rec": t.rec(other) if kind == "rec" else 0,
          "rtt": c.realm.roots[0], "data": _data_granule(t, other) if kind == "data" else 0}[kind]
    c.fails(INPUT, rd=rd, more=(rd,))
    _ok(machine)


@pytest.mark.parametrize("state", ["ACTIVE", "SYSTEM_OFF"])
def test_rec_create_realm_state(machine: Machine, t: Rmi, state: str) -> None:
    """ACS realm_state (REALM_ACTIVE, REALM_SYSTEM_OFF): the realm is not NEW -> RMI_ERROR_REALM
    (index 0), footprint unchanged. SYSTEM_OFF is set white-box (no realm runs PSCI yet)."""
    c = Create(t)
    assert t.smc(F.RMI_REALM_ACTIVATE, c.realm.rd)[0] == SUCCESS
    if state == "SYSTEM_OFF":
        _rd(machine, c.realm).set_state(RealmState.SYSTEM_OFF)
    c.fails(REALM_ERR)
    _ok(machine)


def test_rec_create_num_recs(machine: Machine, t: Rmi) -> None:
    """Spec num_recs (no ACS case): the realm already has 2^MAX_RECS_ORDER - 1 = 1023 RECs (RD
    refcount set white-box) -> RMI_ERROR_REALM, footprint unchanged; checked before realm_state
    (TF-RMM order), so an ACTIVE full realm also gives RMI_ERROR_REALM."""
    c = Create(t)
    _set_refcount(machine, c.realm.rd, 1023)
    c.fails(REALM_ERR)
    _set_refcount(machine, c.realm.rd, -1)
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, c.rec, c.params)[0] == SUCCESS   # 1022 + 1 fits
    assert _refcount(machine, c.realm.rd) == 1023
    _set_refcount(machine, c.realm.rd, -1022)
    _ok(machine)


def test_rec_create_check_order(machine: Machine, t: Rmi) -> None:
    """B4.3.12.2.1: [rd_bound, rd_state] < [realm_state, num_recs]. The realm is ACTIVE and full
    (RD refcount 1023, white-box), so naming its RD fails with RMI_ERROR_REALM; rd naming what
    only looks like that RD - a DATA granule and an NS page holding a byte copy of it, the DATA
    granule's refcount 1023 too - fails rd_state (RMI_ERROR_INPUT), as does an rd that is no
    delegable granule (rd_bound); each on an unchanged footprint. A handler that read the realm
    state or the RECs count before checking the granule would answer RMI_ERROR_REALM."""
    c = Create(t)
    assert t.smc(F.RMI_REALM_ACTIVATE, c.realm.rd)[0] == SUCCESS
    _set_refcount(machine, c.realm.rd, 1023)
    c.fails(REALM_ERR)                                           # realm_state and num_recs hold
    image = bytes(machine.memory.granule(_idx(machine, c.realm.rd)))
    other = t.realm()
    t.rtts(other, 0, 3)
    lookalike = t.delegate()
    assert t.smc(F.RMI_DATA_CREATE, other.rd, lookalike, 0, t.ns_page(image), 0)[0] == SUCCESS
    _set_refcount(machine, lookalike, 1023)
    c.fails(INPUT, rd=lookalike, more=(lookalike,))              # rd_state < realm_state, num_recs
    _set_refcount(machine, lookalike, -1023)
    ns = t.ns_page(image)
    c.fails(INPUT, rd=ns, more=(ns,))                            # rd_state (NS) < realm_state
    c.fails(INPUT, rd=_bad_address(machine, "mmio"))             # rd_bound < realm_state, num_recs
    _set_refcount(machine, c.realm.rd, -1023)
    _ok(machine)


@pytest.mark.parametrize("mpidr", [
    pytest.param(rec_index_to_mpidr(1), id="skipped-index-1"),
    pytest.param(0xF, id="acs-aff0-15"),
    pytest.param(rec_index_to_mpidr(16), id="aff1-index-16"),
    pytest.param(0x11, id="sbz-aff0-bit4-index-1"),
])
def test_rec_create_mpidr_index(machine: Machine, t: Rmi, mpidr: int) -> None:
    """ACS mpidr_index (MPIDR_SKIPPED): the MPIDR's REC index is not the realm's next index (0)
    -> RMI_ERROR_INPUT, footprint unchanged."""
    c = Create(t)
    c.fails(INPUT, params=c.make_params(mpidr=mpidr))
    _ok(machine)


@pytest.mark.parametrize("junk", [0x10, 0xF0, 1 << 32, 1 << 63, RMI_REC_MPIDR_SBZ])
def test_rec_create_mpidr_sbz_bits_ignored(machine: Machine, t: Rmi, junk: int) -> None:
    """RmiRecMpidr's SBZ bits (Aff0[7:4], [63:32]) are no failure condition: RecIndex (B3.38)
    reads the affinity fields only, so index 0 with junk there succeeds (B1.6; TF-RMM rel0
    refuses it, docs/deviations.md), and the REC keeps the MPIDR without the junk."""
    c = Create(t)
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, c.rec, c.make_params(mpidr=junk))[0] == SUCCESS
    assert _rec(machine, c.rec).mpidr == 0
    _ok(machine)


def test_rec_create_mpidr_index_not_reused(machine: Machine, t: Rmi) -> None:
    """mpidr_index: indices are never reused; after REC 0 is destroyed, index 0 again ->
    RMI_ERROR_INPUT (rec_count stays 1), and index 1 succeeds."""
    c = Create(t)
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, c.rec, c.params)[0] == SUCCESS
    assert t.smc(F.RMI_REC_DESTROY, c.rec)[0] == SUCCESS
    assert _rd(machine, c.realm).rec_count == 1
    c.fails(INPUT)
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, c.rec, c.make_params(mpidr=rec_index_to_mpidr(1)))[0] == SUCCESS
    _ok(machine)


@pytest.mark.parametrize("num_aux", [0, 1, 15, 17, 1 << 63])
def test_rec_create_num_aux(machine: Machine, t: Rmi, num_aux: int) -> None:
    """ACS num_aux (NUM_AUX_INVALID: aux_count + 1): num_aux is not REC_AUX_COUNT (16) ->
    RMI_ERROR_INPUT, footprint unchanged: above 16 nothing is claimed; below 16 the first
    num_aux granules are locked and released after the RD checks."""
    c = Create(t)
    c.fails(INPUT, params=c.make_params(num_aux=num_aux))
    _ok(machine)


def test_rec_create_num_aux_order(machine: Machine, t: Rmi) -> None:
    """num_aux has no spec order against realm_state; rmm-mp (TF-RMM) refuses num_aux > 16
    before anything else (INPUT) and num_aux < 16 after the realm checks (REALM), footprint
    unchanged either way."""
    c = Create(t)
    assert t.smc(F.RMI_REALM_ACTIVATE, c.realm.rd)[0] == SUCCESS
    c.fails(INPUT, params=c.make_params(num_aux=17))
    c.fails(REALM_ERR, params=c.make_params(num_aux=15))
    _ok(machine)


@pytest.mark.parametrize("index", [0, 1, 9, 15])
def test_rec_create_aux_align(machine: Machine, t: Rmi, index: int) -> None:
    """ACS aux_align (AUX_UNALIGNED): aux[index] is not granule aligned -> RMI_ERROR_INPUT; the
    aux granules before it are DELEGATED and unlocked (rel0 claimed them first and got the
    rollback wrong, post-rel0 fix 8b591834), so the footprint is unchanged."""
    c = Create(t)
    aux = list(c.aux)
    aux[index] += 0x100
    c.fails(INPUT, params=c.make_params(aux=tuple(aux)))
    assert all(_state(machine, a) == S.DELEGATED for a in c.aux)
    assert all(machine.granule_table(0).holder(_idx(machine, a)) == 0 for a in c.aux)
    _ok(machine)


@pytest.mark.parametrize("alias", ["aux1-is-aux0", "aux15-is-aux3", "aux-is-rec"])
def test_rec_create_aux_alias(machine: Machine, t: Rmi, alias: str) -> None:
    """ACS aux_alias (AUX_ALIASED: aux[1] = aux[0]), and an aux granule that is the REC granule
    itself -> RMI_ERROR_INPUT: the granules are locked together, and a granule named twice
    fails that; footprint unchanged."""
    c = Create(t)
    aux = list(c.aux)
    if alias == "aux1-is-aux0":
        aux[1] = aux[0]
    elif alias == "aux15-is-aux3":
        aux[15] = aux[3]
    else:
        aux[6] = c.rec
    c.fails(INPUT, params=c.make_params(aux=tuple(aux)))
    _ok(machine)


@pytest.mark.parametrize("index", [0, 1, 15])
@pytest.mark.parametrize("kind", ["undelegated", "rd", "rec", "rtt", "data", "rec_aux", "mmio"])
def test_rec_create_aux_state(machine: Machine, t: Rmi, kind: str, index: int) -> None:
    """ACS aux_state (AUX_UNDELEGATED/RD/REC/RTT/DATA) plus another REC's aux and an MMIO address, at
    aux index 0, 1 and 15 -> RMI_ERROR_INPUT. With a bad aux at index > 0 the granules 0..i-1
    stay DELEGATED with no lock held (rel0 claimed them first and got the rollback wrong,
    fixed by 8b591834), which the unchanged footprint shows."""
    c = Create(t)
    other = t.realm()
    other_rec = t.rec(other) if kind in ("rec", "rec_aux") else 0
    bad = {"undelegated": t.ns_page(), "rd": c.realm.rd, "rec": other_rec, "rtt": c.realm.roots[0],
           "data": _data_granule(t, other) if kind == "data" else 0,
           "rec_aux": other.recs[0][1][0] if other.recs else 0, "mmio": _bad_address(machine, "mmio")}[kind]
    aux = list(c.aux)
    aux[index] = bad
    c.fails(INPUT, params=c.make_params(aux=tuple(aux)), more=(bad,))
    assert all(_state(machine, a) == S.DELEGATED for a in c.aux)
    _ok(machine)


@pytest.mark.parametrize("hash_algo", [0, 1])
def test_rec_create_success_runnable(machine: Machine, t: Rmi, hash_algo: int) -> None:
    """REC_CREATE of a runnable REC (index 0): SUCCESS (X1..X4 = 0); REC and aux states,
    RD refcount 1 and rec_count 1, REC refcount 0, the REC's contents (B4.3.12.3), and the RIM
    extended with the REC descriptor (compared with an independent hashlib computation); no
    granule but the RD, the REC and its aux granules changes (the params page included)."""
    realm = t.realm(hash_algo=hash_algo)
    aux = tuple(t.delegate() for _ in range(16))
    rec = t.delegate()
    gprs = tuple(0x1111 * (n + 1) for n in range(8))
    params = t.rec_params(0, True, pc=0x8000_1000, gprs=gprs, aux=aux)
    algo, size = ("sha256", 32) if hash_algo == 0 else ("sha512", 64)
    rd = _rd(machine, realm)
    old_rim = rd.measurement(0)
    before = realm_snapshot(machine, params)

    assert _call(t, F.RMI_REC_CREATE, realm.rd, rec, params) == (SUCCESS, 0, 0, 0, 0)
    assert before.changed(realm_snapshot(machine, params)) == {realm.rd, rec, *aux}   # the footprint only

    assert _state(machine, rec) == S.REC and _refcount(machine, rec) == 0
    assert all(_state(machine, a) == S.REC_AUX and _refcount(machine, a) == 0 for a in aux)
    assert _refcount(machine, realm.rd) == 1 and rd.rec_count == 1
    r = _rec(machine, rec)
    assert (r.owner_rd, r.rec_idx, r.mpidr, r.runnable, r.pc) == (realm.rd, 0, 0, True, 0x8000_1000)
    assert r.gprs() == gprs + (0,) * 23
    assert r.pstate == PSTATE_EL1H_DAIF_MASKED
    assert r.aux() == aux
    assert (r.psci_pending, r.host_call_pending, r.ripas_request(), r.last_exit()) == (0, False, (0,) * 5, (0,) * 3)
    assert r.s2ctx() == realm.ctx and r.hash_algo == hash_algo
    new_rim = rd.measurement(0)
    assert new_rim[:size] == _expected_rim(old_rim[:size], algo, 1, 0x8000_1000, gprs)
    assert new_rim[size:] == bytes(64 - size)
    _ok(machine)


def test_rec_create_reads_the_params_once(machine: Machine, t: Rmi, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host CPU rewrites the params page right after the RMM reads it (host_rewrites_after_each_read):
    num_aux becomes 17 (num_aux fails), the aux list the same granules in reverse order, and the
    flags (not runnable), MPIDR (index 1), PC and GPRs change. REC_CREATE reads the page once and
    validates and uses only that copy (TF-RMM copies it with ns_buffer_read): SUCCESS, one read,
    and the REC, its aux list and the RIM come from the first version. A second read (num_aux
    or the aux list read again after the checks, the PC measured from another read) would
    record the rewrite."""
    c = Create(t, pc=0x8000_1000, gprs=(1, 2, 3))
    rd = _rd(machine, c.realm)
    old_rim = rd.measurement(0)
    rewrite = RMI_REC_PARAMS.pack(flags=0, mpidr=rec_index_to_mpidr(1), pc=0x4000, gprs=(7, 7, 7), num_aux=17,
                                  aux=tuple(reversed(c.aux)))
    reads = host_rewrites_after_each_read(monkeypatch, machine, c.params, [bytes(rewrite)])
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, c.rec, c.params) == (SUCCESS, 0, 0, 0, 0)
    monkeypatch.undo()
    r = _rec(machine, c.rec)
    assert (r.rec_idx, r.mpidr, r.runnable, r.pc, r.aux()) == (0, 0, True, 0x8000_1000, c.aux)
    assert r.gprs() == (1, 2, 3) + (0,) * 28
    assert rd.measurement(0)[:32] == _expected_rim(old_rim[:32], "sha256", 1, 0x8000_1000, (1, 2, 3))
    assert len(reads) == 1
    _ok(machine)


def test_rec_create_success_not_runnable(machine: Machine, t: Rmi) -> None:
    """REC_CREATE of a REC that is not runnable: SUCCESS, runnable False, and the RIM does not
    change (B4.3.12.4: only runnable RECs are measured)."""
    realm = t.realm()
    before = _rd(machine, realm).measurement(0)
    rec = t.rec(realm, runnable=False, pc=0x40, gprs=(9,))
    assert not _rec(machine, rec).runnable
    assert _rd(machine, realm).measurement(0) == before
    _ok(machine)


def test_rec_create_measures_full_flags(machine: Machine, t: Rmi) -> None:
    """The measured RmiRecParams image holds the flags word as the host passed it (reserved bits
    included), not just bit 0; mpidr and aux are not measured."""
    realm = t.realm()
    old = _rd(machine, realm).measurement(0)[:32]
    aux = tuple(t.delegate() for _ in range(16))
    rec = t.delegate()
    params = t.rec_params(0, aux=aux, flags=0x1 | 0xF0, pc=4, gprs=(5,))
    assert t.smc(F.RMI_REC_CREATE, realm.rd, rec, params)[0] == SUCCESS
    assert _rd(machine, realm).measurement(0)[:32] == _expected_rim(old, "sha256", 0xF1, 4, (5,))


def test_rec_create_dense_indices(machine: Machine, t: Rmi) -> None:
    """RECs are created in index order 0, 1, ..., 16: REC 16's MPIDR has Aff1 = 1, Aff0 = 0
    (RmiRecMpidr 0x100); each REC records its index and MPIDR; the RD counts 17 RECs."""
    realm = t.realm()
    recs = [t.rec(realm, runnable=False) for _ in range(17)]
    assert [_rec(machine, r).rec_idx for r in recs] == list(range(17))
    assert _rec(machine, recs[16]).mpidr == 0x100
    assert _refcount(machine, realm.rd) == 17 and _rd(machine, realm).rec_count == 17
    _ok(machine)


def test_rec_create_negative_observability(machine: Machine, t: Rmi) -> None:
    """ACS 'negative observability': the same REC_CREATE again after a success fails
    (RMI_ERROR_INPUT: the REC granule is now a REC, the aux granules are REC_AUX), footprint
    unchanged."""
    c = Create(t)
    assert t.smc(F.RMI_REC_CREATE, c.realm.rd, c.rec, c.params)[0] == SUCCESS
    c.fails(INPUT)
    _ok(machine)


# -- RMI_REC_AUX_COUNT ---------------------------------------------------------------------------

def test_rec_aux_count_rd_align(machine: Machine, t: Rmi) -> None:
    """ACS rd_align (RD_UNALIGNED) -> RMI_ERROR_INPUT, X1 = 0, footprint unchanged."""
    realm = t.realm()
    _fails(machine, t, INPUT, F.RMI_REC_AUX_COUNT, realm.rd + 8, pas=(realm.rd,))


@pytest.mark.parametrize("where", BOUND)
def test_rec_aux_count_rd_bound(machine: Machine, t: Rmi, where: str) -> None:
    """ACS rd_bound (RD_DEV_MEM, RD_OUTSIDE_OF_PERMITTED_PA) -> RMI_ERROR_INPUT, unchanged."""
    _fails(machine, t, INPUT, F.RMI_REC_AUX_COUNT, _bad_address(machine, where))


@pytest.mark.parametrize("kind", ["undelegated", "delegated", "rec", "rtt", "data"])
def test_rec_aux_count_rd_state(machine: Machine, t: Rmi, kind: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED/DELEGATED/REC/RTT/DATA) -> RMI_ERROR_INPUT, unchanged."""
    realm = t.realm()
    pa = {"undelegated": t.ns_page(), "delegated": t.delegate(), "rec": t.rec(realm) if kind == "rec" else 0,
          "rtt": realm.roots[0], "data": _data_granule(t, realm) if kind == "data" else 0}[kind]
    _fails(machine, t, INPUT, F.RMI_REC_AUX_COUNT, pa, pas=(pa,))
    _ok(machine)


@pytest.mark.parametrize("activate", [False, True])
def test_rec_aux_count_success(machine: Machine, t: Rmi, activate: bool) -> None:
    """REC_AUX_COUNT of an RD (NEW or ACTIVE): SUCCESS with X1 = 16, X2..X4 = 0; nothing
    changes."""
    realm = t.realm(activate=activate)
    before = snapshot(machine, realm.rd)
    assert _call(t, F.RMI_REC_AUX_COUNT, realm.rd) == (SUCCESS, 16, 0, 0, 0)
    assert before.diff(snapshot(machine, realm.rd)) == []
    _ok(machine)


# -- RMI_REC_DESTROY -----------------------------------------------------------------------------

def test_rec_destroy_rec_align(machine: Machine, t: Rmi) -> None:
    """ACS rec_align (REC_UNALIGNED) -> RMI_ERROR_INPUT, footprint unchanged."""
    realm = t.realm()
    rec = t.rec(realm)
    _fails(machine, t, INPUT, F.RMI_REC_DESTROY, rec + 8, pas=(rec, realm.rd))


@pytest.mark.parametrize("where", BOUND)
def test_rec_destroy_rec_bound(machine: Machine, t: Rmi, where: str) -> None:
    """ACS rec_bound (REC_OUTSIDE_OF_PERMITTED_PA, REC_DEV_MEM) -> RMI_ERROR_INPUT, unchanged."""
    _fails(machine, t, INPUT, F.RMI_REC_DESTROY, _bad_address(machine, where))


@pytest.mark.parametrize("kind", ["undelegated", "delegated", "rd", "rec_aux", "rtt", "data"])
def test_rec_destroy_rec_gran_state(machine: Machine, t: Rmi, kind: str) -> None:
    """ACS rec_gran_state (REC_GRAN_STATE_UNDELEGATED/RD/REC_AUX/RTT/DATA, plus DELEGATED): the
    granule is not a REC -> RMI_ERROR_INPUT, footprint unchanged."""
    realm = t.realm()
    rec = t.rec(realm)
    aux = realm.recs[0][1]
    pa = {"undelegated": t.ns_page(), "delegated": t.delegate(), "rd": realm.rd, "rec_aux": aux[2],
          "rtt": realm.roots[0], "data": _data_granule(t, realm) if kind == "data" else 0}[kind]
    _fails(machine, t, INPUT, F.RMI_REC_DESTROY, pa, pas=(pa, rec, *aux, realm.rd))
    _ok(machine)


def test_rec_destroy_rec_gran_state_before_rec_state(machine: Machine, t: Rmi) -> None:
    """Ordering [rec_bound, rec_gran_state] < [rec_state] (B4.3.13.2.1): rec_ptr is an RD whose
    refcount is 1 (its realm has a REC), as a running REC's is -> RMI_ERROR_INPUT, not
    RMI_ERROR_REC; footprint unchanged."""
    realm = t.realm()
    rec = t.rec(realm)
    assert _refcount(machine, realm.rd) == 1
    _fails(machine, t, INPUT, F.RMI_REC_DESTROY, realm.rd, pas=(realm.rd, rec, *realm.recs[0][1]))
    _ok(machine)


def test_rec_destroy_rec_state(machine: Machine, t: Rmi) -> None:
    """Spec rec_state: the REC is running (its refcount 1, set white-box as another CPU's
    REC_ENTER holds it) -> RMI_ERROR_REC, footprint unchanged (REC, aux, RD refcount)."""
    realm = t.realm()
    rec = t.rec(realm)
    _set_refcount(machine, rec, 1)
    _fails(machine, t, REC_ERR, F.RMI_REC_DESTROY, rec, pas=(rec, *realm.recs[0][1], realm.rd))
    _set_refcount(machine, rec, -1)
    _ok(machine)


def test_rec_destroy_success(machine: Machine, t: Rmi) -> None:
    """REC_DESTROY of an idle REC: SUCCESS (X4 = 0); the REC and its 16 aux granules are
    DELEGATED and zero, the RD refcount drops to 0 but rec_count stays 1; another REC of the
    realm is untouched; the realm can then be destroyed once its other REC is gone too. The
    aux granules are filled with a pattern first (what a REC keeps there, e.g. its attestation
    token state): the destroy must scrub them, not just hand them back. Footprint (B4.3.13.4,
    and num_recs): nothing but the REC, its aux granules and the RD's REC count changes; the
    RD's contents do not."""
    realm = t.realm()
    rec0 = t.rec(realm, pc=0x10, gprs=(1, 2))
    rec1 = t.rec(realm)
    aux0 = realm.recs[0][1]
    for pa in aux0:
        machine.memory.write(pa, b"\xa5" * 4096)
    keep = snapshot(machine, rec1, *realm.recs[1][1])
    before = realm_snapshot(machine)

    assert _call(t, F.RMI_REC_DESTROY, rec0) == (SUCCESS, 0, 0, 0, 0)

    after = realm_snapshot(machine)
    assert before.changed(after) == {rec0, *aux0, realm.rd}
    assert dict(before.contents)[realm.rd] == dict(after.contents)[realm.rd]
    for pa in (rec0, *aux0):
        assert _state(machine, pa) == S.DELEGATED and machine.memory.is_zero(_idx(machine, pa))
    assert _refcount(machine, realm.rd) == 1 and _rd(machine, realm).rec_count == 2
    assert [d for d in keep.diff(snapshot(machine, rec1, *realm.recs[1][1])) if "contents" in d] == []
    assert t.smc(F.RMI_REALM_DESTROY, realm.rd)[0] == REALM_ERR
    assert t.smc(F.RMI_REC_DESTROY, rec1)[0] == SUCCESS
    assert t.smc(F.RMI_REALM_DESTROY, realm.rd)[0] == SUCCESS
    _ok(machine)


def test_rec_destroy_realm_count_drops_before_the_rec_is_released(machine: Machine, t: Rmi,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Linearizability: the moment REC_DESTROY releases the REC (now DELEGATED), another CPU
    undelegates it and then destroys the realm. Having seen the REC gone, REALM_DESTROY must
    succeed (the realm has no other REC and only its empty root). The old code (as TF-RMM rel0)
    dropped the RD's REC count after the release, so REALM_DESTROY failed ERROR_REALM although
    the REC was visibly destroyed: no serial order gives that."""
    realm = t.realm()
    rec = t.rec(realm)
    other = Rmi(machine, cpu=1)
    release = Granule.unlock_transition
    seen: list[tuple[int, int]] = []
    pending = [rec]

    def release_then_observe(self: Granule, new_state: int) -> None:
        release(self, new_state)
        if pending and self.idx == _idx(machine, pending[0]):
            pending.clear()
            seen.append((other.smc(F.RMI_GRANULE_UNDELEGATE, rec)[0], other.smc(F.RMI_REALM_DESTROY, realm.rd)[0]))

    monkeypatch.setattr(Granule, "unlock_transition", release_then_observe)
    assert t.smc(F.RMI_REC_DESTROY, rec)[0] == SUCCESS
    monkeypatch.undo()
    assert seen == [(SUCCESS, SUCCESS)]
    assert _state(machine, realm.rd) == S.DELEGATED and _state(machine, rec) == S.NS
    _ok(machine)


def test_rec_destroy_twice(machine: Machine, t: Rmi) -> None:
    """A second REC_DESTROY of the same address (now DELEGATED) -> RMI_ERROR_INPUT, unchanged;
    the RD refcount is not decremented twice."""
    realm = t.realm()
    rec = t.rec(realm)
    assert t.smc(F.RMI_REC_DESTROY, rec)[0] == SUCCESS
    _fails(machine, t, INPUT, F.RMI_REC_DESTROY, rec, pas=(rec, realm.rd))
    assert _refcount(machine, realm.rd) == 0
    _ok(machine)


# -- RMI_REC_ENTER -------------------------------------------------------------------------------

SPIN = struct.pack("<Q", encode(Op.B, imm=0))
"""The guest instruction `b .`: a REC entered at it spins until its time slice ends."""


class Enter:
    """An ACTIVE realm with a runnable REC (index 0) whose code at 0x2000 is `b .`, and a run
    page: enter half as given, exit half full of junk so that a write (or its absence) shows."""

    def __init__(self, t: Rmi, activate: bool = True, runnable: bool = True, **enter: object) -> None:
        self.t, self.m = t, t.m
        self.realm = t.realm()
        t.rtts(self.realm, 0x2000, 3)
        code = t.delegate()
        assert t.smc(F.RMI_DATA_CREATE, self.realm.rd, code, 0x2000, t.ns_page(SPIN), 0)[0] == SUCCESS
        self.rec = t.rec(self.realm, runnable=runnable, pc=0x2000, gprs=(3, 1, 4, 1, 5))
        if activate:
            assert t.smc(F.RMI_REALM_ACTIVATE, self.realm.rd)[0] == SUCCESS
        self.run = t.ns_page(self.page(**enter))

    @staticmethod
    def page(**enter: object) -> bytes:
        return bytes(RMI_REC_ENTER.pack(**enter)) + EXIT_JUNK

    def footprint(self, *more: int) -> tuple[int, ...]:
        return (self.rec, self.run, self.realm.rd, *self.realm.recs[0][1], *more)

    def fails(self, x0: int, rec: int | None = None, run: int | None = None, more: tuple[int, ...] = ()) -> None:
        args = (self.rec if rec is None else rec, self.run if run is None else run)
        _fails(self.m, self.t, x0, F.RMI_REC_ENTER, *args, pas=self.footprint(*more))
        assert _refcount(self.m, self.rec) == 0

    def exit_half(self, run: int | None = None) -> bytes:
        return self.m.ns_read((self.run if run is None else run) + 0x800, 0x800)


def test_rec_enter_run_align(machine: Machine, t: Rmi) -> None:
    """ACS run_align (RUN_PTR_UNALIGNED) -> RMI_ERROR_INPUT; the REC is not marked running and
    nothing changes."""
    e = Enter(t)
    e.fails(INPUT, run=e.run + 8)
    _ok(machine)


@pytest.mark.parametrize("where", BOUND)
def test_rec_enter_run_bound(machine: Machine, t: Rmi, where: str) -> None:
    """ACS run_bound (RUN_PTR_DEV_MEM, RUN_PTR_OUSIDE_OF_PERMITTED_PA) -> RMI_ERROR_INPUT,
    footprint unchanged."""
    e = Enter(t)
    e.fails(INPUT, run=_bad_address(machine, where))
    _ok(machine)


@pytest.mark.parametrize("pas", ["realm", "secure"])
def test_rec_enter_run_pas(machine: Machine, t: Rmi, pas: str) -> None:
    """ACS run_pas (RUN_PTR_PAS_REALM, RUN_PTR_PAS_SECURE): the run page is DELEGATED or Secure
    -> RMI_ERROR_INPUT, footprint unchanged."""
    e = Enter(t)
    run = t.delegate() if pas == "realm" else machine.secure_regions[0][0]
    e.fails(INPUT, run=run, more=(run,))
    _ok(machine)


def test_rec_enter_rec_align(machine: Machine, t: Rmi) -> None:
    """ACS rec_align (REC_UNALIGNED) -> RMI_ERROR_INPUT, footprint unchanged."""
    e = Enter(t)
    e.fails(INPUT, rec=e.rec + 0x800)
    _ok(machine)


@pytest.mark.parametrize("where", BOUND)
def test_rec_enter_rec_bound(machine: Machine, t: Rmi, where: str) -> None:
    """ACS rec_bound (REC_DEV_MEM, REC_OUTSIDE_OF_PERMITTED_PA) -> RMI_ERROR_INPUT, unchanged."""
    e = Enter(t)
    e.fails(INPUT, rec=_bad_address(machine, where))
    _ok(machine)


@pytest.mark.parametrize("kind", ["undelegated", "delegated", "rd", "rtt", "data", "rec_aux"])
def test_rec_enter_rec_gran_state(machine: Machine, t: Rmi, kind: str) -> None:
    """ACS rec_gran_state (REC_GRAN_STATE_UNDELEGATED/DELEGATED/RD/RTT/DATA/REC_AUX) ->
    RMI_ERROR_INPUT, footprint unchanged."""
    e = Enter(t)
    pa = {"undelegated": t.ns_page(), "delegated": t.delegate(), "rd": e.realm.rd, "rtt": e.realm.roots[0],
          "data": _data_granule(t, t.realm()) if kind == "data" else 0, "rec_aux": e.realm.recs[0][1][5]}[kind]
    e.fails(INPUT, rec=pa, more=(pa,))
    _ok(machine)


def test_rec_enter_realm_new(machine: Machine, t: Rmi) -> None:
    """ACS realm_new (REALM_NEW): the realm is not activated -> (RMI_ERROR_REALM, index 0) = 0x002;
    the running reference is released (REC refcount 0), footprint unchanged."""
    e = Enter(t, activate=False)
    e.fails(REALM_ERR)
    _ok(machine)


def test_rec_enter_system_off(machine: Machine, t: Rmi) -> None:
    """ACS system_off (REALM_SYSTEM_OFF): the realm is SYSTEM_OFF (set white-box: no realm runs
    PSCI yet) -> (RMI_ERROR_REALM, index 1) = 0x102, footprint unchanged."""
    e = Enter(t)
    _rd(machine, e.realm).set_state(RealmState.SYSTEM_OFF)
    e.fails(REALM_ERR | 1 << 8)
    _ok(machine)


def test_rec_enter_rec_state(machine: Machine, t: Rmi) -> None:
    """Spec rec_state: the REC is running (a first REC_ENTER holds its running reference: refcount
    1, set white-box) -> a second REC_ENTER, from this CPU or from CPU 1, gets RMI_ERROR_REC and
    the reference stays the first one's (refcount still 1), footprint unchanged."""
    e = Enter(t)
    _set_refcount(machine, e.rec, 1)
    before = snapshot(machine, *e.footprint())
    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (REC_ERR, 0, 0, 0, 0)
    assert machine.cpu(1).smc(F.RMI_REC_ENTER, e.rec, e.run, JUNK, X4) == (REC_ERR, 0, 0, 0, 0)
    assert before.diff(snapshot(machine, *e.footprint())) == []
    assert _refcount(machine, e.rec) == 1
    _set_refcount(machine, e.rec, -1)
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    _ok(machine)


def test_rec_enter_rec_runnable(machine: Machine, t: Rmi) -> None:
    """ACS rec_runnable (REC_NOT_RUNNABLE): the REC was created not runnable -> RMI_ERROR_REC,
    footprint unchanged."""
    e = Enter(t, runnable=False)
    e.fails(REC_ERR)
    _ok(machine)


_DABT_ISV = (0x24 << 26) | (1 << 25) | (1 << 24)      # data abort from the realm, IL, ISV
_DABT_NO_ISV = (0x24 << 26) | (1 << 25)
_SYSREG_ISV_BIT = (0x18 << 26) | (1 << 25) | (1 << 24)


@pytest.mark.parametrize("last_esr", [
    pytest.param(0, id="no-exit-yet"),
    pytest.param(_DABT_NO_ISV, id="non-emulatable-abort-303ee028"),
    pytest.param(_SYSREG_ISV_BIT, id="sysreg-trap-with-bit24"),
])
def test_rec_enter_rec_mmio(machine: Machine, t: Rmi, last_esr: int) -> None:
    """ACS rec_mmio (REC_EMULATED_MMIO): enter.flags.emul_mmio set but the last exit was not an
    emulatable data abort: none yet, a data abort with ISV clear (the saved ESR of a
    non-emulatable abort; post-rel0 fix 303ee028), or a non-abort exit whose ESR has bit 24 set
    (last exit set white-box) -> RMI_ERROR_REC, footprint unchanged."""
    e = Enter(t, flags=1)
    _rec(machine, e.rec).set_last_exit(last_esr, 0x123, 0x8000)
    e.fails(REC_ERR)
    _ok(machine)


def test_rec_enter_rec_mmio_accepted(machine: Machine, t: Rmi) -> None:
    """rec_mmio does not fire when the last exit was an emulatable data abort (ESR with ISV,
    set white-box) or when INJECT_SEA is also set (A4.2.3: emul_mmio is then ignored): SUCCESS
    with an IRQ exit, and the last-exit syndrome is cleared by the new exit."""
    e = Enter(t, flags=1)
    rec = _rec(machine, e.rec)
    rec.set_last_exit(_DABT_ISV, 0x10, 0x8000)
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    assert rec.last_exit() == (0, 0, 0)
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == REC_ERR     # that exit was an IRQ
    machine.ns_write(e.run, Enter.page(flags=3))
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    _ok(machine)


def test_rec_enter_inject_sea_never_fails(machine: Machine, t: Rmi) -> None:
    """INJECT_SEA when the last exit was not a data abort at an unprotected IPA: the spec has no
    failure condition for it (B4.3.14.2; B1.6: no failure condition true -> success), so the
    entry succeeds and the flag has no effect (TF-RMM rel0 returns RMI_ERROR_REC here)."""
    e = Enter(t, flags=2)
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    assert RMI_REC_EXIT.get(e.exit_half(), "exit_reason") == IRQ
    _ok(machine)


_P = 1 << 62            # LR state pending
_GROUP1 = 1 << 60


@pytest.mark.parametrize("hcr, lrs", [
    pytest.param(1 << 0, (), id="hcr-En"),
    pytest.param(1 << 8, (), id="hcr-vSGIEOICount"),
    pytest.param(1 << 11, (), id="hcr-TALL0"),
    pytest.param(1 << 10, (), id="hcr-TC"),
    pytest.param(1 << 15, (), id="hcr-DVIM"),
    pytest.param(1 << 27, (), id="hcr-EOIcount"),
    pytest.param(0, (3 << 61,), id="acs-lr-hw-bit"),
    pytest.param(0, (1 << 62 | 1 << 61 | 0x32 << 32 | 0x35,), id="acs-lr-hw-pending"),
    pytest.param(0, (2 << 62 | 1 << 61 | 0x32 << 32 | 0x35,), id="acs-lr-hw-active"),
    pytest.param(0, (3 << 62 | 1 << 61 | 0x32 << 32 | 0x35,), id="acs-lr-hw-pending-active"),
    pytest.param(0, (0, 0, 0, _P | 1 << 48 | 40), id="lr3-priority-res0"),
    pytest.param(0, (_P | 1 << 32 | 40,), id="lr-pintid"),
    pytest.param(0, (_P | 1020,), id="vintid-1020"),
    pytest.param(0, (_P | 1056,), id="vintid-extended-ppi"),
    pytest.param(0, (_P | 4096,), id="vintid-extended-spi"),
    pytest.param(0, (_P | 0x10000,), id="vintid-above-16-bits"),
    pytest.param(0, (_P | 27, 0, 0, (2 << 62) | 27), id="duplicate-vintid"),
])
def test_rec_enter_rec_gicv3(machine: Machine, t: Rmi, hcr: int, lrs: tuple[int, ...]) -> None:
    """ACS rec_gicv3 (RUN_PTR_INVALID_GIV3_HCR: lrs[0] = 3 << 61), ACS gic_hcr_invalid (HCR bit 8
    vSGIEOICount, bit 11 TALL0), ACS gic_ctrl_list_invalid (an LR with HW set, pINTID 0x32, in the
    pending, active and pending-and-active states) and Gicv3ConfigIsValid's other
    cases (A6.1; TF-RMM gic_validate_state over LRs 0..GICV3_NUM_LRS = 0..3): an ICH_HCR_EL2 bit
    the host does not control, or a valid LR with HW set, a RES0 priority bit (5 priority bits),
    a pINTID bit other than EOI, a vINTID outside 0..1019 / 8192..65535, or two valid LRs with
    one vINTID -> RMI_ERROR_REC, footprint unchanged."""
    e = Enter(t, gicv3_hcr=hcr, gicv3_lrs=lrs)
    e.fails(REC_ERR)
    _ok(machine)


@pytest.mark.parametrize("hcr, lrs", [
    pytest.param(0x40FE, (), id="all-host-hcr-bits"),
    pytest.param(0, (_P | _GROUP1 | 0xF8 << 48 | 1 << 41 | 1019,), id="priority-eoi-spi"),
    pytest.param(0, (_P | 8192, _P | 65535), id="lpis"),
    pytest.param(0, (1 << 61 | 1 << 32 | 5000, 0, 0, 0), id="invalid-state-lr-not-checked"),
    pytest.param(0, (_P | 27, 27 | 1 << 41), id="duplicate-with-invalid-lr"),
    pytest.param(0, (0, 0, 0, 0, 3 << 61 | 1020, _P | 1), id="lrs-above-num-lrs-ignored"),
    pytest.param(0, (_P | 0xF << 56 | 0x7 << 45 | 27,), id="lr-res0-bits-not-checked"),
])
def test_rec_enter_rec_gicv3_valid(machine: Machine, t: Rmi, hcr: int, lrs: tuple[int, ...]) -> None:
    """The other side of rec_gicv3: values Gicv3ConfigIsValid accepts enter the REC (SUCCESS):
    every host-controlled HCR bit, implemented priority bits with EOI and Group, LPIs, an LR in
    the Invalid state whatever its other bits, and LRs above GICV3_NUM_LRS (not implemented)."""
    e = Enter(t, gicv3_hcr=hcr, gicv3_lrs=lrs)
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    assert _refcount(machine, e.rec) == 0
    _ok(machine)


@pytest.mark.parametrize("first", [3, 4], ids=lambda n: f"num-lrs-{n}-first")
def test_rec_gicv3_answer_depends_on_num_lrs_whatever_was_asked_before(first: int) -> None:
    """rec_gicv3 remembers its answers (a memo, as REC_ENTER sees the same GIC state entry after
    entry), so the memo must tell the implemented LRs apart: the same ICH_HCR and LRs, LR4
    holding a pending LR with HW set, are accepted with GICV3_NUM_LRS 3 (LR4 not implemented)
    and refused with 4, asked in either order in one process, a value not seen before. A memo
    keyed without GICV3_NUM_LRS gives the second question the first one's answer."""
    lrs = (0, 0, 0, 0, _P | 1 << 61 | 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, first)    # LR15: not seen before
    enter = {"flags": 0, "gicv3_hcr": 0, "gicv3_lrs": gic.LRS.pack(*lrs)}     # as RMI_REC_ENTER_RAW gives them
    head = [0] * (rec_desc.H_PSCI + 1)
    head[rec_desc.H_RUNNABLE] = 1
    rd = mock.Mock(state=RealmState.ACTIVE)
    for num_lrs in (first, 7 - first):
        refusal = rmi_rec._entry_refusal(mock.Mock(num_lrs=num_lrs), rd, mock.Mock(), enter, tuple(head))
        assert (refusal is None) == (num_lrs == 3), num_lrs


@pytest.mark.parametrize("num_lrs", [0, 3, 15])
def test_gic_exit_state_of_the_lrs_bytes_is_the_int_answer_packed(num_lrs: int) -> None:
    """REC_ENTER keeps gicv3_lrs as their bytes from RmiRecEnter to RmiRecExit (RMI_REC_ENTER_RAW,
    RMI_REC_EXIT_RAW): gic_exit_state_raw gives gic_exit_state's fields, the LRs packed (those
    above num_lrs zero)."""
    lrs = tuple((i + 1) << 56 | 1 << 41 | (32 + i) for i in range(16))
    hcr = 0x40FE | 1 << 20           # a bit the host does not control: not reported back
    state = gic.gic_exit_state(hcr, lrs, num_lrs)
    packed = {**state, "gicv3_lrs": gic.LRS.pack(*state["gicv3_lrs"])}
    assert gic.gic_exit_state_raw(hcr, gic.LRS.pack(*lrs), num_lrs) == packed
    assert state["gicv3_lrs"] == lrs[:num_lrs + 1] + (0,) * (15 - num_lrs)


@pytest.mark.parametrize("why", ["not-runnable", "psci-pending", "realm-new", "system-off"])
def test_rec_enter_refused_by_the_rec_or_realm_never_holds_the_running_reference(machine: Machine, t: Rmi,
                                                                                 why: str) -> None:
    """realm_new, system_off, rec_runnable and rec_psci are checked under the REC lock before the
    running reference is taken: RMI_PSCI_COMPLETE on another CPU counts a REC with a reference
    as on, so a REC_ENTER bound to fail must never hold one even for a moment (a concurrent
    CPU_ON then completed with ALREADY_ON and its target never started; found by a multi-CPU
    probe, 35 times in 200). Spied: no refcount_add of the REC's granule at all."""
    e = Enter(t, activate=why != "realm-new", runnable=why != "not-runnable")
    if why == "psci-pending":
        _rec(machine, e.rec).psci_pending = PSCI_CPU_ON
    if why == "system-off":
        _rd(machine, e.realm).set_state(RealmState.SYSTEM_OFF)
    rec_idx = _idx(machine, e.rec)
    taken: list[int] = []
    real = Granule.refcount_add

    def spy(granule: Granule, delta: int) -> int:
        if granule.idx == rec_idx:
            taken.append(delta)
        return real(granule, delta)
    with mock.patch.object(Granule, "refcount_add", spy):
        x0 = _call(t, F.RMI_REC_ENTER, e.rec, e.run)[0]
    assert x0 == {"realm-new": REALM_ERR, "system-off": REALM_ERR | 1 << 8}.get(why, REC_ERR)
    assert taken == [], taken


@pytest.mark.parametrize("why", ["gicv3", "mmio"])
@pytest.mark.parametrize("other_call", ["destroy", "enter"])
def test_rec_enter_refused_on_its_gic_state_or_mmio_never_holds_the_running_reference(
        machine: Machine, t: Rmi, why: str, other_call: str) -> None:
    """rec_gicv3 and rec_mmio are checked under the REC lock too, before the running reference
    is taken. A REC_ENTER bound to fail has no footprint, so a concurrent REC_DESTROY of the REC,
    or a valid REC_ENTER of it, succeeds whenever it runs. The old code (as TF-RMM rel0) took the
    reference, unlocked the REC and only then checked the GIC state and EMUL_MMIO: another CPU
    acting on the REC in between (here, right after CPU 0 unlocks it) saw it running and got
    RMI_ERROR_REC (rec_state), and both commands failed, which no serial order gives."""
    e = Enter(t, **({"gicv3_hcr": 1} if why == "gicv3" else {"flags": 1}))
    other = Rmi(machine, cpu=1)
    good_run = t.ns_page(Enter.page())
    rec_idx = _idx(machine, e.rec)
    owner = GranuleTable.unlock
    answers: list[int] = []

    def then_the_other_cpu(table: GranuleTable, idx: int) -> None:
        owner(table, idx)
        if idx == rec_idx and table.owner == cpu_owner(0) and not answers:
            answers.append(-1)
            if other_call == "destroy":
                answers[0] = other.smc(F.RMI_REC_DESTROY, e.rec)[0]
            else:
                answers[0] = other.smc(F.RMI_REC_ENTER, e.rec, good_run)[0]

    with mock.patch.object(GranuleTable, "unlock", then_the_other_cpu):
        x0 = t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0]
    assert x0 == REC_ERR
    assert answers == [SUCCESS]
    if other_call == "destroy":
        assert _state(machine, e.rec) == S.DELEGATED
    else:
        assert _refcount(machine, e.rec) == 0
        assert RMI_REC_EXIT.get(e.exit_half(good_run), "exit_reason") == IRQ
    _ok(machine)


def test_rec_enter_rec_psci(machine: Machine, t: Rmi) -> None:
    """ACS rec_psci (REC_PSCI_PENDING): the REC has a PSCI CPU_ON request pending (set
    white-box; the realm's PSCI exit sets it once realms run) -> RMI_ERROR_REC, unchanged."""
    e = Enter(t)
    _rec(machine, e.rec).psci_pending = PSCI_CPU_ON
    e.fails(REC_ERR)
    _ok(machine)


def test_rec_enter_check_order(machine: Machine, t: Rmi) -> None:
    """Orders between failure conditions (B4.3.14.2.1 and TF-RMM's order where the spec leaves
    it open), each on an unchanged footprint: run_pas / run_bound before rec_runnable, realm_new
    and system_off (ACS run_*_compare_*); rec_align, rec_bound, rec_gran_state before rec_gicv3
    (ACS rec_*_compare_rec_gicv3); rec_state before realm_new; realm_new and system_off before
    rec_runnable and rec_psci."""
    e = Enter(t, activate=False, runnable=False, gicv3_hcr=1)
    secure = machine.secure_regions[0][0]
    e.fails(INPUT, run=secure)                                  # run_pas < realm_new, rec_runnable
    e.fails(INPUT, run=_bad_address(machine, "mmio"))           # run_bound < realm_new, rec_runnable
    e.fails(INPUT, rec=e.rec + 8)                                # rec_align < rec_gicv3
    e.fails(INPUT, rec=_bad_address(machine, "beyond-pa"))      # rec_bound < rec_gicv3
    e.fails(INPUT, rec=t.ns_page())                              # rec_gran_state < rec_gicv3
    e.fails(REALM_ERR)                                           # realm_new < rec_runnable, rec_gicv3
    _rec(machine, e.rec).psci_pending = PSCI_CPU_ON
    _rd(machine, e.realm).set_state(RealmState.SYSTEM_OFF)
    e.fails(REALM_ERR | 1 << 8)                                  # system_off < rec_runnable, rec_psci
    e.fails(INPUT, run=secure)                                   # run_pas < system_off
    _set_refcount(machine, e.rec, 1)
    before = snapshot(machine, *e.footprint())
    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (REC_ERR, 0, 0, 0, 0)   # rec_state < system_off
    assert before.diff(snapshot(machine, *e.footprint())) == []
    _set_refcount(machine, e.rec, -1)
    _ok(machine)


def test_rec_enter_success_irq_exit(machine: Machine, t: Rmi) -> None:
    """REC_ENTER of a runnable REC of an ACTIVE realm whose code is `b .`: SUCCESS (X1..X4 = 0). The REC spins until its time slice ends, an IRQ exit: the exit half of the run page
    is exactly RmiRecExit with exit_reason RMI_EXIT_IRQ and every other byte zero (the junk there
    is overwritten), the enter half is untouched, the REC's registers, PC (the branch targets
    itself) and PSTATE are unchanged, its refcount is back to 0, and no other granule changes."""
    e = Enter(t)
    rec = _rec(machine, e.rec)
    regs = (rec.gprs(), rec.pc, rec.pstate, rec.runnable)
    before = snapshot(machine, e.rec, e.realm.rd, *e.realm.recs[0][1])

    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (SUCCESS, 0, 0, 0, 0)

    assert e.exit_half() == bytes(RMI_REC_EXIT.pack(exit_reason=IRQ))
    assert RMI_REC_EXIT.unpack(e.exit_half())["exit_reason"] == IRQ
    assert machine.ns_read(e.run, 0x800) == Enter.page()[:0x800]
    assert (rec.gprs(), rec.pc, rec.pstate, rec.runnable) == regs == ((3, 1, 4, 1, 5) + (0,) * 26, 0x2000,
                                                                      PSTATE_EL1H_DAIF_MASKED, True)
    assert before.diff(snapshot(machine, e.rec, e.realm.rd, *e.realm.recs[0][1])) == []
    assert _refcount(machine, e.rec) == 0
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS      # and again: nothing left held
    assert t.smc(F.RMI_REC_DESTROY, e.rec)[0] == SUCCESS
    _ok(machine)


def test_rec_enter_keeps_one_rec_and_rd_view_per_granule(machine: Machine, t: Rmi,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """REC_ENTER keeps the Rec and Rd it makes in its RmmCpu, the Rec by granule index and the Rd by
    PA, and looks them up on the next entry; past the bound (here 1) it starts afresh, and every entry still runs the
    REC it was given (test-only: the views kept by rmi_rec._kept)."""
    monkeypatch.setattr(rmi_rec, "_KEPT_MAX", 1)
    e = Enter(t, activate=False)
    other = t.rec(e.realm, runnable=True, pc=0x2000)
    assert t.smc(F.RMI_REALM_ACTIVATE, e.realm.rd)[0] == SUCCESS
    rmm = t.cpu.rmm
    for rec in (e.rec, e.rec, other, e.rec):
        assert _call(t, F.RMI_REC_ENTER, rec, e.run) == (SUCCESS, 0, 0, 0, 0)
        assert RMI_REC_EXIT.unpack(e.exit_half())["exit_reason"] == IRQ
        assert [(v.idx, v.offset) for v in rmm.recs.values()] == [(_idx(machine, rec), _idx(machine, rec) << 12)]
        assert [(pa, v.idx) for pa, v in rmm.rds.items()] == [(e.realm.rd, _idx(machine, e.realm.rd))]
        assert _refcount(machine, rec) == 0
    kept = rmm.recs[_idx(machine, e.rec)]
    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    assert rmm.recs[_idx(machine, e.rec)] is kept
    _ok(machine)


def _realm_at(t: Rmi, rd: int, s2sz: int) -> Realm:
    """REALM_CREATE with the RD at ``rd`` (DELEGATED) and fresh roots: a realm of ``s2sz`` bits."""
    level = start_level_for(s2sz)
    count = s2tt.num_root_rtts(s2sz, level)
    first = t.ns_granules(count, align=count * t.m.granule_size)
    roots = tuple(t.delegate(first + i * t.m.granule_size) for i in range(count))
    vmid = t._vmid
    params = t.realm_params(s2sz, rtt_base=roots[0], start_level=level)
    assert t.smc(F.RMI_REALM_CREATE, rd, params)[0] == SUCCESS
    return Realm(rd, roots, s2sz, level, 0, vmid)


def _rec_at(t: Rmi, realm: Realm, rec: int, runnable: bool, pc: int) -> None:
    """REC_CREATE of ``realm``'s next REC at ``rec`` (DELEGATED), with 16 fresh aux granules."""
    aux = tuple(t.delegate() for _ in range(16))
    params = t.rec_params(len(realm.recs), runnable, pc, (), aux)
    assert t.smc(F.RMI_REC_CREATE, realm.rd, rec, params)[0] == SUCCESS
    realm.recs.append((rec, aux))


def _teardown(t: Rmi, realm: Realm) -> None:
    for rec, _ in realm.recs:
        assert t.smc(F.RMI_REC_DESTROY, rec)[0] == SUCCESS
    assert t.smc(F.RMI_REALM_DESTROY, realm.rd)[0] == SUCCESS


def test_rec_enter_after_its_granules_held_another_rec_and_rd(machine: Machine, t: Rmi) -> None:
    """REC_ENTER's kept Rec and Rd views (rmi_rec._kept) are windows on their granules, not on the
    objects once there: after REC_DESTROY and REALM_DESTROY, a new realm of other parameters with
    its RD at the old RD's PA and a REC at the old REC's PA is entered as what it is now (a NEW
    realm is refused; an ACTIVE one is run with its own stage 2 and the REC's MPIDR; a REC that is
    not runnable is refused); and with the two PAs' roles swapped (the old REC granule an RD,
    the old RD granule a REC) as well. Test-only: this held before and after the views were kept."""
    rmm = t.cpu.rmm
    old = t.realm(s2sz=40, activate=False)
    rec_pa, rd_pa = t.delegate(), old.rd
    _rec_at(t, old, rec_pa, True, 0x3000)
    assert t.smc(F.RMI_REALM_ACTIVATE, rd_pa)[0] == SUCCESS
    run = t.ns_page(Enter.page())
    assert _call(t, F.RMI_REC_ENTER, rec_pa, run)[0] == SUCCESS
    assert rmm.realm_call is not None and rmm.realm_call.ctx.ipa_width == 40
    assert _idx(machine, rec_pa) in rmm.recs and rd_pa in rmm.rds
    _teardown(t, old)

    new = _realm_at(t, rd_pa, 36)
    _rec_at(t, new, t.delegate(), False, 0x1000)        # REC index 0 elsewhere: the recycled one is index 1
    _rec_at(t, new, rec_pa, True, 0x2000)
    assert _call(t, F.RMI_REC_ENTER, rec_pa, run)[0] == REALM_ERR     # the realm is NEW now
    assert t.smc(F.RMI_REALM_ACTIVATE, rd_pa)[0] == SUCCESS
    assert _call(t, F.RMI_REC_ENTER, rec_pa, run)[0] == SUCCESS
    call = rmm.realm_call
    assert (call.ctx.ipa_width, call.ctx.rtt_base, call.rd_pa) == (36, new.roots[0], rd_pa)
    assert call.state.sysregs[-1] & 0xFF == 1                           # MPIDR_EL1.Aff0: REC index 1
    _teardown(t, new)

    idle = _realm_at(t, rd_pa, 40)
    _rec_at(t, idle, rec_pa, False, 0x2000)
    assert t.smc(F.RMI_REALM_ACTIVATE, rd_pa)[0] == SUCCESS
    assert _call(t, F.RMI_REC_ENTER, rec_pa, run)[0] == REC_ERR       # this REC is not runnable
    _teardown(t, idle)

    swapped = _realm_at(t, rec_pa, 40)                  # the old REC granule is an RD now
    _rec_at(t, swapped, rd_pa, True, 0x2000)            # and the old RD granule a REC
    assert t.smc(F.RMI_REALM_ACTIVATE, rec_pa)[0] == SUCCESS
    assert _call(t, F.RMI_REC_ENTER, rd_pa, run)[0] == SUCCESS
    call = rmm.realm_call
    assert (call.ctx.rtt_base, call.rd_pa, call.rec.idx, call.rd.idx) == (
        swapped.roots[0], rec_pa, _idx(machine, rd_pa), _idx(machine, rec_pa))
    assert _call(t, F.RMI_REC_ENTER, rec_pa, run)[0] == INPUT           # an RD is no REC
    _ok(machine)


def test_rec_enter_exit_gic_state(machine: Machine, t: Rmi) -> None:
    """The IRQ exit reports the GIC virtual CPU interface as the entry programmed it (A6.1):
    gicv3_lrs[0..3] as entered (LRs above GICV3_NUM_LRS read 0), gicv3_hcr the host-controlled
    bits as entered with EOIcount 0, gicv3_misr the maintenance conditions they raise (EOI for
    an Invalid LR with EOI set, U with at most one valid LR under UIE, VGrp1D under VGrp1DIE
    with VMCR 0; no NP since an LR is pending), gicv3_vmcr 0; every other exit field zero."""
    lrs = (_P | _GROUP1 | 0xA0 << 48 | 27, 1 << 41 | 40, 0, 0, 0x77, 0x88)
    hcr = (1 << 1) | (1 << 3) | (1 << 7) | (1 << 14)
    e = Enter(t, gicv3_hcr=hcr, gicv3_lrs=lrs)
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    expected = RMI_REC_EXIT.pack(exit_reason=IRQ, gicv3_hcr=hcr, gicv3_lrs=lrs[:4], gicv3_misr=0x83)
    assert e.exit_half() == bytes(expected)
    machine.ns_write(e.run, Enter.page(gicv3_hcr=1 << 3, gicv3_lrs=(2 << 62 | 27,)))   # active only: NP
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    assert RMI_REC_EXIT.get(e.exit_half(), "gicv3_misr") == (1 << 3)
    _ok(machine)


def test_rec_enter_reads_the_enter_half_once(machine: Machine, t: Rmi, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host CPU rewrites the run page's enter half right after the RMM reads it
    (host_rewrites_after_each_read): gicv3_hcr gets TALL0 (bit 11, rec_gicv3 fails), the LRs,
    the GPRs and the flags (EMUL_MMIO, which rec_mmio refuses here) change. REC_ENTER reads the
    enter half once and validates and uses only that copy (TF-RMM copies it with
    ns_buffer_read into rec_run.enter): SUCCESS, one read, and the IRQ exit reports the GIC state
    of the first version. A second read (the enter half read again for the run after the
    checks) would report the rewrite."""
    lrs = (_P | _GROUP1 | 0xA0 << 48 | 27, 1 << 41 | 40, 0, 0)
    hcr = (1 << 1) | (1 << 3) | (1 << 7) | (1 << 14)
    e = Enter(t, gicv3_hcr=hcr, gicv3_lrs=lrs)
    rewrite = RMI_REC_ENTER.pack(flags=1, gprs=(9,) * 31, gicv3_hcr=1 << 11 | hcr, gicv3_lrs=(_P | _GROUP1 | 28,) * 4)
    reads = host_rewrites_after_each_read(monkeypatch, machine, e.run, [bytes(rewrite)])
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    monkeypatch.undo()
    assert e.exit_half() == bytes(RMI_REC_EXIT.pack(exit_reason=IRQ, gicv3_hcr=hcr, gicv3_lrs=lrs, gicv3_misr=0x83))
    assert reads == [0]             # the enter half, once (the exit half is written, never read)
    _ok(machine)


_SPI, _PPI, _SGI = 59, 27, 12
"""SPI_vINTID, PPI_vINTID and SGI_vINTID of the ACS's FVP target (pal_config_def.h)."""


@pytest.mark.parametrize("hcr, lrs", [
    pytest.param(1 << 3, (_P | _GROUP1 | _SPI,), id="npie-one-pending"),
    pytest.param(1 << 1, (_P | _GROUP1 | _SPI, _P | _GROUP1 | _PPI), id="uie-two-pending"),
    pytest.param(1 << 2, (_P | _GROUP1 | _SGI,), id="lrenpie"),
])
def test_rec_enter_exit_gic_state_of_the_acs_gic_ctrl_hcr_entries(machine: Machine, t: Rmi, hcr: int,
                                                                    lrs: tuple[int, ...]) -> None:
    """The three entries of ACS gic_ctrl_hcr (host side) as rmm-mp answers them (docs/deviations.md,
    the RmiRecExit GIC and timer row): the realm takes no virtual interrupt, so the LRs come back
    pending as entered, EOIcount is 0, and MISR is 0 for each (NP: an LR is pending; U: two valid
    LRs; LRENP: EOIcount 0) where the ACS, whose realm handles the interrupts, expects NP, U, and
    LRENP with EOIcount 1. The entries themselves are valid (SUCCESS)."""
    e = Enter(t, gicv3_hcr=hcr, gicv3_lrs=lrs)
    assert t.smc(F.RMI_REC_ENTER, e.rec, e.run)[0] == SUCCESS
    ex = RMI_REC_EXIT.unpack(e.exit_half()[:RMI_REC_EXIT.size])
    assert ex["gicv3_lrs"][:len(lrs)] == lrs and ex["gicv3_hcr"] == hcr     # EOIcount (bits 31:27) 0
    assert (ex["gicv3_misr"], ex["gicv3_vmcr"]) == (0, 0)
    _ok(machine)


def test_rec_enter_exit_write_fault(machine: Machine, t: Rmi, monkeypatch: pytest.MonkeyPatch) -> None:
    """A4.3.3: the run page leaves the NS PAS while the REC runs (EL3's GPT entry flipped to
    Realm inside the run, white-box), so writing the exit faults -> RMI_ERROR_INPUT although the
    realm ran (its last-exit syndrome was reset); nothing is written to the page and the running
    reference is still released (refcount 0)."""
    e = Enter(t)
    _rec(machine, e.rec).set_last_exit(_DABT_ISV, 0, 0)
    run_idx = _idx(machine, e.run)
    real_run = realm_run.run_rec

    def run_then_lose_page(*args):  # type: ignore[no-untyped-def]
        assert machine.gpt.transition(run_idx, Pas.NS, Pas.REALM)
        return real_run(*args)

    monkeypatch.setattr(realm_run, "run_rec", run_then_lose_page)
    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (INPUT, 0, 0, 0, 0)
    assert _refcount(machine, e.rec) == 0
    assert _rec(machine, e.rec).last_exit() == (0, 0, 0)
    assert bytes(machine.memory.granule(run_idx)[0x800:]) == EXIT_JUNK
    assert machine.gpt.transition(run_idx, Pas.REALM, Pas.NS)
    _ok(machine)


def test_rec_enter_run_page_delegated_before_the_locks(machine: Machine, t: Rmi,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """run_pas again: another CPU delegates the run page while REC_ENTER runs, before its locks
    (it makes no lock-free look at the page any more). The page is locked with the REC as an NS
    granule, so the command fails (INPUT) before the REC runs and nothing changes but the other
    CPU's DELEGATE. (Older code ran the REC and then failed to write the exit, which no serial
    order gives: DELEGATE first fails run_pas with no footprint, REC_ENTER first succeeds.
    TF-RMM rel0's copy, made after taking the REC's reference, faults here before the run.)"""
    e = Enter(t)
    _rec(machine, e.rec).set_last_exit(_DABT_ISV, 0, 0)
    other = Rmi(machine, cpu=1)
    before_the_first_lock(monkeypatch, t, lambda: _delegate(other, e.run))
    pas = (e.rec, e.realm.rd, *e.realm.recs[0][1])
    before = snapshot(machine, *pas)
    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (INPUT, 0, 0, 0, 0)
    monkeypatch.undo()
    delegated = f"granule {_idx(machine, e.run)}: "     # the other CPU's DELEGATE, nothing else
    assert [d for d in before.diff(snapshot(machine, *pas)) if not d.startswith(delegated)] == []
    assert _rec(machine, e.rec).last_exit() == (_DABT_ISV, 0, 0)
    assert _state(machine, e.run) == S.DELEGATED
    _ok(machine)


def test_rec_enter_run_page_delegated_while_the_realm_runs(machine: Machine, t: Rmi,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A4.3.3: another CPU delegates the run page while the REC runs (after the entry, which
    unlocked the page): the realm has run (the entry cleared the saved syndrome), but the exit
    cannot be written, so REC_ENTER returns RMI_ERROR_INPUT, nothing lands in the delegated page
    and no lock or running reference is left behind (the exit is written through
    NsAccess.pack_values, by the run page's granule index)."""
    e = Enter(t)
    _rec(machine, e.rec).set_last_exit(_DABT_ISV, 0, 0)
    other = Rmi(machine, cpu=1)
    run_rec = realm_run.run_rec

    def run_then_delegate(*args, **kwargs):  # type: ignore[no-untyped-def]
        fields = run_rec(*args, **kwargs)
        _delegate(other, e.run)
        return fields

    monkeypatch.setattr(realm_run, "run_rec", run_then_delegate)
    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (INPUT, 0, 0, 0, 0)
    monkeypatch.undo()
    assert _rec(machine, e.rec).last_exit() == (0, 0, 0)        # the entry ran
    assert _state(machine, e.run) == S.DELEGATED
    assert machine.memory.is_zero(_idx(machine, e.run))         # no exit written into it
    assert _refcount(machine, e.rec) == 0
    _ok(machine)


def _delegate(rmi: Rmi, page: int) -> None:
    assert rmi.smc(F.RMI_GRANULE_DELEGATE, page)[0] == SUCCESS


def test_rec_enter_reads_the_run_page_as_it_is_when_it_takes_effect(
        machine: Machine, t: Rmi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host rewrites the run page's enter half (gicv3_hcr with TALL0, bit 11, set: rec_gicv3
    fails) while REC_ENTER runs, before its locks: the entry sees the
    rewrite (RMI_ERROR_REC, nothing changes). The enter half used to be copied before any lock,
    so the entry ran with the old contents: with the REC made runnable after such a rewrite (a
    PSCI_COMPLETE of a CPU_ON), that is an entry no serial order gives; the page is now read
    under its lock, taken with the REC's (TF-RMM reads it after taking the REC's reference)."""
    e = Enter(t)
    before_the_first_lock(monkeypatch, t, lambda: machine.ns_write(e.run, Enter.page(gicv3_hcr=1 << 11)))
    pas = e.footprint()
    before = snapshot(machine, *pas)
    assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (REC_ERR, 0, 0, 0, 0)
    monkeypatch.undo()
    assert before.diff(snapshot(machine, *pas)) == [f"contents of {e.run:#x} changed"]   # the host's rewrite
    assert _refcount(machine, e.rec) == 0
    _ok(machine)


def test_stress_bug_copy_reads_the_run_page_as_the_handler_does(
        machine: Machine, t: Rmi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stress tool's rec-enter-not-running copy (stress.bugs_rmi) is the handler with one
    mistake, the running reference never taken: in the scenario of the test above (the host
    rewrites gicv3_hcr to an invalid value before the first lock) it fails rec_gicv3 as the
    handler does, and changes nothing. It used to copy the run page before any lock, as the
    handler once did, so it entered the REC with the old contents (two mistakes, not one)."""
    from rmm_mp.rmm import dispatch
    from rmm_mp.stress import bugs_rmi

    e = Enter(t)
    before_the_first_lock(monkeypatch, t, lambda: machine.ns_write(e.run, Enter.page(gicv3_hcr=1 << 11)))
    pas = e.footprint()
    before = snapshot(machine, *pas)
    previous = dispatch.replace_handler(F.RMI_REC_ENTER, bugs_rmi.rec_enter_not_running)
    try:
        assert _call(t, F.RMI_REC_ENTER, e.rec, e.run) == (REC_ERR, 0, 0, 0, 0)
    finally:
        dispatch.replace_handler(F.RMI_REC_ENTER, previous)
    monkeypatch.undo()
    assert before.diff(snapshot(machine, *pas)) == [f"contents of {e.run:#x} changed"]   # the host's rewrite
    _ok(machine)


def test_rec_enter_two_recs_two_cpus(machine: Machine, t: Rmi) -> None:
    """Two RECs of one realm entered from CPU 0 and CPU 1 with their own run pages: both
    SUCCESS with IRQ exits in their own pages, both refcounts back to 0, RD refcount still 2."""
    realm = t.realm()
    rec0, rec1 = t.rec(realm), t.rec(realm)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    run0, run1 = t.ns_page(Enter.page()), t.ns_page(Enter.page())
    assert t.smc(F.RMI_REC_ENTER, rec0, run0)[0] == SUCCESS
    assert machine.cpu(1).smc(F.RMI_REC_ENTER, rec1, run1)[0] == SUCCESS
    for run in (run0, run1):
        assert machine.ns_read(run + 0x800, 0x800) == bytes(RMI_REC_EXIT.pack(exit_reason=IRQ))
    assert _refcount(machine, rec0) == _refcount(machine, rec1) == 0
    assert _refcount(machine, realm.rd) == 2
    _ok(machine)


def test_s2ctx_cache_is_bounded() -> None:
    """rec_desc keeps the S2Ctx of each (ipa_width, level, num, base) it has seen, but no more
    than _S2CTX_CACHE_MAX of them: a long stress run creates realms at ever new RTT bases, and
    an unbounded cache would grow with every one in every CPU process. A context made after
    the cache was emptied is still the right one."""
    saved = dict(rec_desc._s2ctx_cache)
    try:
        for n in range(rec_desc._S2CTX_CACHE_MAX + 10):
            ctx = rec_desc._s2ctx(40, 1, 2, 0x8000_0000 + n * 0x2000)
            assert len(rec_desc._s2ctx_cache) <= rec_desc._S2CTX_CACHE_MAX
        assert ctx.rtt_base == 0x8000_0000 + (rec_desc._S2CTX_CACHE_MAX + 9) * 0x2000
    finally:
        rec_desc._s2ctx_cache.clear()
        rec_desc._s2ctx_cache.update(saved)


def test_save_context_rewrites_only_the_blocks_that_differ_from_the_held_lists() -> None:
    """Rec.save_context with the lists the REC's words hold (run_rec: the registers at entry)
    leaves a block equal to its list as it is, writes one that differs, and writes pc and
    pstate whatever; without them it writes everything. The words are poked behind its back
    so that a block left alone can be told from one rewritten with the same values."""
    memory = PhysicalMemory(memoryview(bytearray(2 * GRANULE)), 0x8000_0000, 2)
    rec = Rec(memory, 1)
    held_x, held_sysregs = [0x8000_0000 + i for i in range(31)] + [0], [1, 2, 0x8000_1000, 4, 0x8000_0000]
    sysregs_at = slice(rec_desc.R_SYSREGS, rec_desc.R_SYSREGS + rec_desc.SYSREGS)
    rec.save_context(held_x, 0x10, 0x3C5, held_sysregs)
    assert rec.gprs() == tuple(held_x[:31]) and (rec.pc, rec.pstate) == (0x10, 0x3C5)
    assert rec.run_state()[sysregs_at] == tuple(held_sysregs[:4])
    rec.set_gpr(5, 7)
    struct.pack_into("<Q", memory.buf, (1 << 12) + rec_desc.OFF_SYSREGS, 9)
    rec.save_context(list(held_x), 0x14, 0x3C6, list(held_sysregs), held_x, held_sysregs)
    assert rec.gpr(5) == 7 and rec.run_state()[sysregs_at][0] == 9     # equal blocks: left alone
    assert (rec.pc, rec.pstate) == (0x14, 0x3C6)
    changed_x, changed_sysregs = [*held_x[:30], 0x1234, 0], [*held_sysregs[:3], 5, held_sysregs[4]]
    rec.save_context(changed_x, 0x18, 0x3C5, changed_sysregs, held_x, held_sysregs)
    assert rec.gprs() == tuple(changed_x[:31]) and (rec.pc, rec.pstate) == (0x18, 0x3C5)
    assert rec.run_state()[sysregs_at] == tuple(changed_sysregs[:4])
