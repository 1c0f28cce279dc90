"""The interleaving explorer's pairs in which a running guest's RSI call, or its access through an
unprotected mapping, meets a host command on what that call or access uses (stress.explore_pairs
holds the catalog and takes these pairs from RSI_PAIRS): a load and store through an unprotected
mapping vs DELEGATE of the mapped NS page (a granule protection fault: a REC exit with DFSC
0x28), and a store to an unmapped unprotected IPA vs RTT_MAP_UNPROTECTED of a page there; a
multi-call attestation token copied out (RSI_ATTESTATION_TOKEN_CONTINUE) vs REC_DESTROY of the REC
or DATA_DESTROY of the buffer's page; RSI_IPA_STATE_GET vs RTT_SET_RIPAS answering another REC's
request, DATA_DESTROY and RTT_FOLD of the range it reads; RSI_REALM_CONFIG
vs DATA_DESTROY of its page; RSI_MEASUREMENT_READ of one REC vs another's
RSI_MEASUREMENT_EXTEND. Their outcomes include views of the REC exit, the REC's registers (what
the RSI call returned) and a page.

This module owns those setups and their Pairs. The guests are written and their realms built with
stress.explore_guest's kit, which this module must not redefine. It must not write the machine's
shared memory other than through SMCs and Machine.ns_write.
"""

from __future__ import annotations

from rmm_mp.abi.rsi import RsiFid, RsiRipas, RsiStatus
from rmm_mp.abi.structs import RmiRecExitReason
from rmm_mp.host.realm import NS_MAP_ATTRS
from rmm_mp.machine import Machine
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.stress.explore import Pair, Prepared, Watch
from rmm_mp.stress.explore_guest import (
    GUEST_SLICE, RAM_TABLE, REC1_PC, exit_must_be, extend_rem1, fails_on_running_rec, guest_realm, smc,
)
from rmm_mp.stress.explore_pairs_rec import page_view, unprotected_store_realm
from rmm_mp.stress.explore_setup import (
    F, G, L2, UNPROTECTED, Builder, BuiltRealm, SetupError, exit_view, prepared, rec_view, rem_view,
)

UNPROTECTED_PAGE = UNPROTECTED + 5 * G
"""The unprotected IPA the GPF pair's guest loads from and stores to."""


# -- an unprotected mapping whose NS page the host delegates --------------------------------------

def _unprotected_access_realm(machine: Machine) -> tuple[Builder, BuiltRealm, int, int, int]:
    """A realm whose guest stores to UNPROTECTED_PAGE, extends REM1 (the RD lock: lock events and
    run points while the REC runs), then loads from the page and stores again; the mapped NS
    page (mapped with read and write rights), the REC and a run page."""
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, f"""
        mov x1, ={UNPROTECTED_PAGE:#x}
        mov x2, #0x5a
        str x2, [x1]
    {extend_rem1(0x77)}
        mov x1, ={UNPROTECTED_PAGE:#x}
        ldr x3, [x1]
        add x3, x3, #1
        str x3, [x1, #8]
        b .
    """)
    b.tables(realm, UNPROTECTED, 3)
    ns = b.ns_page()
    b.call(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, UNPROTECTED_PAGE, 3, ns | NS_MAP_ATTRS)
    return b, realm, ns, rec, b.run_page()


def unprotected_access_vs_delegate(machine: Machine) -> Prepared:
    """REC_ENTER whose guest stores to a mapped unprotected page, extends REM1, then loads from it
    and stores again, vs GRANULE_DELEGATE of the mapped NS page (which the RMM allows: it does not
    track NS mappings). Delegated first, the first store takes a granule protection fault: a REC
    exit due to Data Abort with DFSC 0x28, the page zero (DELEGATE's zeroing). Delegated while
    the REC runs (at its REM1 extension), the first store landed before and the load exits with
    the GPF, so the REC's X3 never holds the page's value; DELEGATE succeeds in every order."""
    b, _, ns, rec, run = _unprotected_access_realm(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_GRANULE_DELEGATE, ns),
                     (exit_view("A", run), rec_view("REC", rec), page_view("page", ns)))


def delegate_vs_unprotected_access(machine: Machine) -> Prepared:
    """The same the other way round: the guest's run inserted at DELEGATE's lock events (its one
    lock, held across EL3's GPT change and the zeroing)."""
    b, _, ns, rec, run = _unprotected_access_realm(machine)
    return prepared(b, (F.RMI_GRANULE_DELEGATE, ns), (F.RMI_REC_ENTER, rec, run),
                     (exit_view("B", run), rec_view("REC", rec), page_view("page", ns)))


def store_unprotected_vs_map(machine: Machine) -> Prepared:
    """REC_ENTER whose guest stores to an unprotected IPA with nothing mapped vs
    RTT_MAP_UNPROTECTED of an NS page there: mapped first, the store lands and the guest runs to
    its IRQ exit; else the store exits as an emulatable data abort (ISV, the value in gprs[0])
    and the page stays zero."""
    b = Builder(machine)
    realm, rec = unprotected_store_realm(b, 8)
    ns = b.ns_page()
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, UNPROTECTED_PAGE, 3,
                                                      ns | NS_MAP_ATTRS),
                     (exit_view("A", run), page_view("page", ns)))


# -- a multi-call attestation token -------------------------------------------------------------

TOKEN_IPA = 3 * G
"""The DATA page the guest copies its attestation token into."""
TOKEN_CHUNK = 0x200
"""Bytes the guest asks for per RSI_ATTESTATION_TOKEN_CONTINUE: the token takes several calls."""
_TOKEN_GUEST = f"""
    {smc(int(RsiFid.RSI_ATTESTATION_TOKEN_INIT), *range(1, 9))}
        mov x25, ={TOKEN_IPA:#x}
    more:
        mov x1, ={TOKEN_IPA:#x}
        sub x2, x25, x1
        mov x3, #{TOKEN_CHUNK:#x}
        mov x0, ={int(RsiFid.RSI_ATTESTATION_TOKEN_CONTINUE):#x}
        smc #0
        add x25, x25, x1
        cmp x0, #{int(RsiStatus.RSI_INCOMPLETE)}
        b.eq more
        b .
"""
"""RSI_ATTESTATION_TOKEN_INIT, then CONTINUE into TOKEN_IPA (TOKEN_CHUNK bytes a call, X2 the
offset so far, kept in x25 above the RSI outputs) until X0 is not RSI_INCOMPLETE (3)."""


def _token_being_copied(machine: Machine) -> tuple[Builder, BuiltRealm, int, int]:
    """A realm whose guest has signed its token (each signing step ends its 64-instruction slice
    with an IRQ exit) and copied its first chunk out: the REC, mid-token, and a run page for the
    entry that copies the rest."""
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, _TOKEN_GUEST, pages=((TOKEN_IPA, b""),))
    page = realm.pages[TOKEN_IPA]
    for _ in range(16):
        exit_must_be(b.enter(rec), RmiRecExitReason.RMI_EXIT_IRQ)
        if any(machine.memory.buf[page - machine.dram_base:page - machine.dram_base + TOKEN_CHUNK]):
            break
    else:
        raise SetupError("the guest copied no token bytes in 16 entries")
    if any(machine.memory.buf[page - machine.dram_base + TOKEN_CHUNK:page - machine.dram_base + G]):
        raise SetupError("the guest copied more than one chunk of its token before the pair's entry")
    return b, realm, rec, b.run_page()


def _token_views(realm: BuiltRealm, rec: int, run: int, who: str) -> tuple[Watch, ...]:
    """The exit, the REC, and the non-zero bytes of the buffer's page: how much of the token
    reached the page (the REC's own count is gone with a destroyed REC)."""
    page = realm.pages[TOKEN_IPA]
    return (exit_view(who, run), rec_view("REC", rec), ("token bytes", lambda m: str(sum(
        1 for byte in m.memory.buf[page - m.dram_base:page - m.dram_base + G] if byte))))


def copied_view(rec: int) -> Watch:
    """The bytes the guest counted copied (x25 - TOKEN_IPA: the sum of the X1s its CONTINUE
    calls returned). DATA_DESTROY wipes the page, so the page cannot say how far the copy got."""
    def read(m: Machine) -> str:
        return f"{Rec(m.memory, (rec - m.dram_base) >> 12).gpr(25) - TOKEN_IPA:#x}"
    return ("copied", read)


def token_continue_vs_rec_destroy(machine: Machine) -> Prepared:
    """REC_ENTER of a REC copying its attestation token out, a chunk per CONTINUE call (the
    token state lives in the REC's aux granules), vs REC_DESTROY of the REC: destroyed first,
    the entry fails (RMI_ERROR_INPUT: the REC is a DELEGATED granule) and the buffer keeps its
    first chunk; entered first, the whole token reaches the buffer (the token bytes view); while
    the REC runs, REC_DESTROY fails rec_state (the overlap rule)."""
    b, realm, rec, run = _token_being_copied(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_REC_DESTROY, rec), _token_views(realm, rec, run, "A"))


def token_continue_vs_data_destroy(machine: Machine) -> Prepared:
    """The same entry vs DATA_DESTROY of the buffer's page: destroyed before a CONTINUE walks to
    it, that call exits with a data abort at TOKEN_IPA (RIPAS DESTROYED, level 3) and copies
    nothing; the token state stays mid-copy. Destroyed pages are wiped, so what the guest counted
    copied (a view) tells the orders apart: the first chunk only, destroyed first; the whole
    token, entered first; a chunk more at a run point between two CONTINUE calls."""
    b, realm, rec, run = _token_being_copied(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_DATA_DESTROY, realm.rd, TOKEN_IPA),
                     (exit_view("A", run), rec_view("REC", rec), copied_view(rec)))


# -- RSI_IPA_STATE_GET and RSI_REALM_CONFIG vs the host's changes of what they read or write -------

GET_TABLE = 2 * L2
"""A level-3 table of its own, every entry UNASSIGNED EMPTY: REC 0 asks for RAM over its first
GET_PAGES pages, REC 1 reads the RIPAS of twice as many."""
GET_PAGES = 16
_IPA_STATE_GET = int(RsiFid.RSI_IPA_STATE_GET)


def ipa_state_get_vs_set_ripas(machine: Machine) -> Prepared:
    """REC 0 asked (RSI_IPA_STATE_SET) for RAM over [GET_TABLE, +16 pages); REC_ENTER of REC 1,
    whose guest asks RSI_IPA_STATE_GET for [GET_TABLE, +32 pages) (a walk holding the table's
    lock), vs RTT_SET_RIPAS answering REC 0 (the RD, REC 0, then the table). Before: top = the
    end, EMPTY; after: top = the 16th page, RAM (REC 1's X1 and X2 in its view)."""
    b = Builder(machine)
    top = GET_TABLE + GET_PAGES * G
    realm, (rec0, rec1) = guest_realm(b, f"""
    {smc(int(RsiFid.RSI_IPA_STATE_SET), GET_TABLE, top, int(RsiRipas.RSI_RAM), 0)}
        b .
        .org {REC1_PC:#x}
    {smc(_IPA_STATE_GET, GET_TABLE, GET_TABLE + 2 * GET_PAGES * G)}
        b .
    """, rec1=True, prepare=lambda r: _table(b, r, GET_TABLE))
    exit_must_be(b.enter(rec0), RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec1, run), (F.RMI_RTT_SET_RIPAS, realm.rd, rec0, GET_TABLE, top),
                     (exit_view("A", run), rec_view("REC 1", rec1)))


def _table(b: Builder, realm: BuiltRealm, ipa: int) -> None:
    b.tables(realm, ipa, 3)


GET_PAGE = 2 * G
"""A measured DATA page (RIPAS RAM) whose RIPAS the guest reads, or its config page."""


def ipa_state_get_vs_data_destroy(machine: Machine) -> Prepared:
    """REC_ENTER whose guest asks RSI_IPA_STATE_GET for one DATA page's RIPAS vs DATA_DESTROY of
    it: RAM before, DESTROYED after (the REC's X2)."""
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, f"{smc(_IPA_STATE_GET, GET_PAGE, GET_PAGE + G)}\n        b .\n",
                                pages=((GET_PAGE, b""),))
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_DATA_DESTROY, realm.rd, GET_PAGE),
                     (exit_view("A", run), rec_view("REC", rec)))


def ipa_state_get_vs_rtt_fold(machine: Machine) -> Prepared:
    """REC_ENTER whose guest asks RSI_IPA_STATE_GET for [RAM_TABLE + 5 pages, + 2 MiB) vs
    RTT_FOLD of RAM_TABLE (all UNASSIGNED RAM); the 2 MiB after the table are UNASSIGNED RAM
    too, a level-2 entry of their own. The run is found within the last-level table the walk
    reaches: before the fold, the level-3 table, so it stops at the table's end (X1 =
    RAM_TABLE + 2 MiB); after it, the level-2 table, where the folded entry and the next are both
    RAM, so it reaches the end asked for (X1 = RAM_TABLE + 5 pages + 2 MiB). RAM (X2 = 1) in
    both (REC's X1 and X2 in its view)."""
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, f"{smc(_IPA_STATE_GET, RAM_TABLE + 5 * G, RAM_TABLE + 5 * G + L2)}\n"
                                   "        b .\n", ram_table=True, prepare=lambda r: _ram_block_after(b, r))
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_FOLD, realm.rd, RAM_TABLE, 3),
                     (exit_view("A", run), rec_view("REC", rec)))


def _ram_block_after(b: Builder, realm: BuiltRealm) -> None:
    """The level-2 entry after RAM_TABLE made UNASSIGNED RAM (RTT_INIT_RIPAS of the whole 2 MiB,
    with no table below it)."""
    if b.call(F.RMI_RTT_INIT_RIPAS, realm.rd, RAM_TABLE + L2, RAM_TABLE + 2 * L2)[1] != RAM_TABLE + 2 * L2:
        raise SetupError("RTT_INIT_RIPAS did not cover the level-2 entry after RAM_TABLE")


def realm_config_vs_data_destroy(machine: Machine) -> Prepared:
    """REC_ENTER whose guest calls RSI_REALM_CONFIG on a DATA page holding 0xff bytes (a locked
    walk to it, the structure written under its table's lock), then loads the structure's first
    word (ipa_width) into X2, vs DATA_DESTROY of the page. Destroyed first, the call exits with a
    data abort at the page (level 3), X0 still the FID; written first, X0 = RSI_SUCCESS and X2 =
    40, the IPA width, then the page is wiped; destroyed at the run point between the call and
    the load, X0 = RSI_SUCCESS and the load exits with the data abort. (The page itself is wiped
    in every outcome: the REC's registers are the view.)"""
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, f"""
    {smc(int(RsiFid.RSI_REALM_CONFIG), GET_PAGE)}
        mov x1, ={GET_PAGE:#x}
        ldr x2, [x1]
        b .
    """, pages=((GET_PAGE, b"\xff" * 64),))
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_DATA_DESTROY, realm.rd, GET_PAGE),
                     (exit_view("A", run), rec_view("REC", rec)))


def measurement_read_vs_extend(machine: Machine) -> Prepared:
    """REC_ENTER of REC 0, whose guest reads REM1 (RSI_MEASUREMENT_READ, under the RD lock: its
    first 8 bytes in X1), vs REC_ENTER of REC 1, whose guest extends REM1: zero before, the
    extended value after (REC 0's X1; REM1 a view)."""
    b = Builder(machine)
    realm, (rec0, rec1) = guest_realm(b, f"""
    {smc(int(RsiFid.RSI_MEASUREMENT_READ), 1)}
        b .
        .org {REC1_PC:#x}
    {extend_rem1(0xB)}
        b .
    """, rec1=True)
    run0, run1 = b.run_page(), b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec0, run0), (F.RMI_REC_ENTER, rec1, run1),
                     (exit_view("A", run0), exit_view("B", run1), rec_view("REC 0", rec0), rem_view(realm)))


RSI_PAIRS: tuple[Pair, ...] = (
    Pair("unprotected-access-vs-delegate",
         "REC_ENTER whose guest stores to, then loads from an unprotected page vs DELEGATE of its NS page (a GPF)",
         unprotected_access_vs_delegate, GUEST_SLICE),
    Pair("delegate-vs-unprotected-access",
         "DELEGATE of a mapped NS page vs REC_ENTER whose guest stores to, then loads from it",
         delegate_vs_unprotected_access, GUEST_SLICE),
    Pair("store-unprotected-vs-map",
         "REC_ENTER whose guest stores to an unmapped unprotected IPA vs RTT_MAP_UNPROTECTED of a page there",
         store_unprotected_vs_map, GUEST_SLICE),
    Pair("token-continue-vs-rec-destroy",
         "REC_ENTER copying an attestation token out (CONTINUE, a chunk a call) vs REC_DESTROY of the REC",
         token_continue_vs_rec_destroy, GUEST_SLICE, fails_on_running_rec("REC_DESTROY")),
    Pair("token-continue-vs-data-destroy",
         "REC_ENTER copying an attestation token out vs DATA_DESTROY of the buffer's page",
         token_continue_vs_data_destroy, GUEST_SLICE),
    Pair("ipa-state-get-vs-set-ripas",
         "REC_ENTER of REC 1 reading RIPAS (IPA_STATE_GET) vs RTT_SET_RIPAS answering REC 0's request there",
         ipa_state_get_vs_set_ripas, GUEST_SLICE),
    Pair("ipa-state-get-vs-data-destroy", "REC_ENTER reading a DATA page's RIPAS vs DATA_DESTROY of the page",
         ipa_state_get_vs_data_destroy, GUEST_SLICE),
    Pair("ipa-state-get-vs-rtt-fold", "REC_ENTER reading the RIPAS of a RAM table vs RTT_FOLD of the table",
         ipa_state_get_vs_rtt_fold, GUEST_SLICE),
    Pair("realm-config-vs-data-destroy", "REC_ENTER calling RSI_REALM_CONFIG on a page vs DATA_DESTROY of the page",
         realm_config_vs_data_destroy, GUEST_SLICE),
    Pair("measurement-read-vs-extend",
         "REC_ENTER of REC 0 reading REM1 (MEASUREMENT_READ) vs REC_ENTER of REC 1 extending it",
         measurement_read_vs_extend, GUEST_SLICE),
)
