"""Guest programs for workload realms: bundled ones, files, and the engine's own loop guest.

    guest_names      the names a workload's ``guest`` key accepts (workloads/guests plus ripas-loop)
    guest_text       the source of a named or path guest
    image            a program assembled at the realms' RAM base with constants replaced
    min_ram          the RAM a bundled guest needs (checked before anything is built)
    backed_pages     the protected granules of it the host can have to back (the memory check)
    guest_pages      where the pages a bundled guest touches beyond its image lie
    shares_pages     whether a guest can have shared pages backed (not PROTECTED_ONLY's)
    shared_pages     how many (the memory check)
    challenge, attest_constants
                     the per-instance challenge an attest realm puts in its token
    measure_expected the REM the measure guest must read back, for its realm's hash

``ripas-loop`` (RIPAS_LOOP below) is written for the engine: it never turns itself off, so a
realm running it keeps its RECs busy for the whole run (contention, churn) and the ripas-churn
activity can enter it one REC_ENTER at a time. Every REC gives its own pages back to the host
and takes them again, forever: it reads each page (which must be zero: a fresh page), writes a
pattern and reads it back, RSI_IPA_STATE_SET(EMPTY) over its pages (the host destroys them),
RSI_IPA_STATE_SET(RAM), then LOGs (REC index, round). REC 0 first starts the other RECs the
host runs (host call QUERY 0, PSCI CPU_ON). Any failure REPORTs a code (3 a page was not zero or
did not hold the pattern, 4 the EMPTY change failed, 5 the RAM change failed, 2 a CPU_ON failed;
detail: the value or status) and turns the realm off.

This module owns finding, checking and assembling guest programs. It speaks no SMC.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from pathlib import Path

from rmm_mp.abi.cca_token import TOKEN_BUFFER_SIZE
from rmm_mp.guest.assembler import ImageTooLarge, assemble, symbols
from rmm_mp.guest.equ import with_constants
from rmm_mp.host.guests import DEFAULT_BASE, GUESTS, guest_source, measure_constants
from rmm_mp.host.realm_entry import MAX_SHARED_PAGES
from rmm_mp.host.runqueue import MAX_VCPUS
from rmm_mp.hw.tomlsrc import read_source

RAM_BASE = DEFAULT_BASE
"""IPA of every workload realm's RAM (the bundled guests are written for it)."""

RIPAS_LOOP = r"""
// ripas-loop: every REC gives its pages back and takes them again, forever (rmm_mp.workload.programs).
// What must outlive an RSI call (the failure code x27 and detail x28, set_range's RIPAS x18) is
// kept above X16: an RSI command returns X1..X16 as its outputs or 0 (spec B1.2).
    .equ IMAGE_BASE, .
    .equ RANGE, IMAGE_BASE + 0x100000       // REC i uses PAGES pages from RANGE + i * PAGES * 4 KiB
    .equ PAGES, 4
    .equ MAX_RECS, 32                       // the run queue's limit of vCPUs per realm
    .equ WORK, 0                            // spin iterations (3 instructions each) per round
    .equ PATTERN, 0x0DDBA11000000000
    .equ RSI_IPA_STATE_SET, 0xC4000197
    .equ RSI_HOST_CALL, 0xC4000199
    .equ PSCI_CPU_ON, 0xC4000003
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ HOST_LOG, 1
    .equ HOST_QUERY, 2
    .equ HOST_REPORT, 3
    .equ RIPAS_EMPTY, 0
    .equ RIPAS_RAM, 1

start:
    mov x19, #0                     // REC 0
    mov x27, #1
    adr x1, hostcalls
    mov x2, #HOST_QUERY
    strh x2, [x1]
    mov x2, #0
    str x2, [x1, #8]
    mov x0, =RSI_HOST_CALL
    smc #0
    adr x1, hostcalls
    ldr x20, [x1, #8]               // the vCPUs the host runs (0 for ripas-churn's realm)
    cmp x20, #1
    b.ls main
    cmp x20, #MAX_RECS
    b.ls boot
    mov x20, #MAX_RECS
boot:
    mov x27, #2
    mov x21, #1
on_loop:
    cmp x21, x20
    b.hs main
    mov x0, =PSCI_CPU_ON
    and x1, x21, #0xF               // REC i's MPIDR: Aff1 = i / 16, Aff0 = i % 16
    lsr x9, x21, #4
    lsl x9, x9, #8
    orr x1, x1, x9
    adr x2, secondary
    mov x3, x21
    smc #0
    mov x28, x0
    cbnz x0, fail
    add x21, x21, #1
    b on_loop

secondary:                          // X0 = context id = this REC's index
    mov x19, x0
main:
    mov x21, =RANGE
    mov x2, #PAGES * 0x1000
    mul x2, x2, x19
    add x21, x21, x2                // x21: this REC's first page
    mov x22, #PAGES * 0x1000
    add x22, x21, x22               // x22: the top of its pages
    adr x1, hostcalls
    lsl x2, x19, #8
    add x26, x1, x2                 // x26: its RsiHostCall
    mov x25, #0                     // rounds done
round:
    mov x9, =WORK
spin:
    cbz x9, touch
    sub x9, x9, #1
    b spin
touch:
    mov x27, #3
    mov x23, x21
    mov x24, =PATTERN
    add x24, x24, x25
touch_loop:
    ldr x28, [x23]
    cbnz x28, fail                  // a page given back must come back zeroed
    str x24, [x23]
    ldr x28, [x23]
    cmp x28, x24
    b.ne fail
    add x23, x23, #0x1000
    cmp x23, x22
    b.lo touch_loop
    mov x27, #4
    mov x3, #RIPAS_EMPTY
    bl set_range
    mov x27, #5
    mov x3, #RIPAS_RAM
    bl set_range
    add x25, x25, #1
    mov x2, #HOST_LOG
    strh x2, [x26]
    str x19, [x26, #8]
    str x25, [x26, #16]
    mov x1, x26
    mov x0, =RSI_HOST_CALL
    smc #0
    b round

set_range:                          // RSI_IPA_STATE_SET(x21, x22, x3) to the top, else fail
    mov x18, x3
    mov x1, x21
set_loop:
    mov x0, =RSI_IPA_STATE_SET
    mov x2, x22
    mov x3, x18
    mov x4, #0
    smc #0
    mov x28, x0
    cbnz x0, fail
    add x28, x2, #0x100
    cbnz x2, fail                   // the host rejected the change
    cmp x1, x22
    b.lo set_loop
    ret

fail:                               // REPORT(x27, x28) from this REC's RsiHostCall, SYSTEM_OFF
    adr x1, hostcalls
    lsl x3, x19, #8
    add x1, x1, x3
    mov x2, #HOST_REPORT
    strh x2, [x1]
    str x27, [x1, #8]
    str x28, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .

    .align 4096
hostcalls:                          // one RsiHostCall per REC
    .zero 256 * MAX_RECS
"""

ENGINE_GUESTS = {"ripas-loop": RIPAS_LOOP}
MiB = 1 << 20


def guest_names() -> tuple[str, ...]:
    return tuple(GUESTS) + tuple(ENGINE_GUESTS)


def guest_text(guest: str) -> str:
    """Source of a bundled guest name, the engine's ripas-loop, or an absolute .s path."""
    if guest in ENGINE_GUESTS:
        return ENGINE_GUESTS[guest]
    if guest in GUESTS:
        return guest_source(guest)
    return read_source(Path(guest), "guest")


def image(text: str, constants: dict[str, int], most: int | None = None) -> bytes:
    """The program assembled at RAM_BASE; AssemblerError (a ValueError) if it does not assemble,
    ImageTooLarge (a ValueError) if it would be larger than ``most`` bytes (found before it is made)."""
    return assemble(with_constants(text, constants), base=RAM_BASE, most=most)


def image_size(text: str) -> int:
    """The size in bytes of the image of ``text`` (its constants applied), from the assembler's
    first pass alone: the image is not made. AssemblerError as image's, for what that pass finds."""
    try:
        return len(assemble(text, base=RAM_BASE, most=0))
    except ImageTooLarge as exc:
        return exc.size


def min_ram(guest: str, recs: int, image_size: int, text: str = "") -> int:
    """Bytes of RAM (from RAM_BASE) the guest touches: its image and, for the bundled guests,
    the pages they use beyond it (each guest's header says where). ``text`` is the guest's
    source with the workload's constants applied (with_constants): the pages follow its
    RANGE, RANGE_PAGES, PAGES, MAX_RECS and *_OFFSET values; without it, the guests' defaults."""
    need = image_size
    pages = guest_pages(guest, recs, text)
    if pages is not None:
        need = max(need, pages[1])
    if guest == "attest":
        # The RAM whose shared alias receives the token's copy (4 KiB from SHARED_OFFSET).
        (shared,) = _equ_values(text, ("SHARED_OFFSET",)) if text else (2 * MiB,)
        need = max(need, shared + 4096)
    return need


PROTECTED_ONLY = frozenset({"hello", "measure", "smp-boot", "ripas-loop"})
"""The bundled guests that never touch the unprotected alias of their RAM, whatever constants a
workload gives them: every load and store they make is at an ``adr`` of their image plus at most
a REC index times 256 bytes, or in guest_pages' span, which the workload check keeps within
1 GiB of RAM_BASE. All of that lies below 3 GiB, under the shared bit (2^32 at the least
ipa_width, 33), so the host never backs a shared page for them (exits._map_shared). attest
copies its token there, ripas-flip writes one page there, and a guest file may do anything."""


def shares_pages(guest: str) -> bool:
    """Whether a realm running ``guest`` (a bundled name or a guest file's path) can have the host
    back shared pages for it: the unprotected alias of its RAM, up to MAX_SHARED_PAGES."""
    return guest not in PROTECTED_ONLY


def shared_pages(guest: str, text: str = "") -> int:
    """The most NS pages the host can back at the unprotected alias of a realm's RAM for
    ``guest`` (exits._map_shared, one per page the guest touches there): none for
    PROTECTED_ONLY's; for ripas-flip the page at RANGE (one aligned store: spec refuses an
    unaligned RANGE); for attest the pages of its token's copy, at most TOKEN_BUFFER_SIZE bytes
    from SHARED_OFFSET (any byte, so 2 pages unless it is page aligned); for a guest file
    MAX_SHARED_PAGES, what the host backs at most. ``text`` as for min_ram."""
    if guest in PROTECTED_ONLY:
        return 0
    if guest == "ripas-flip":
        return 1
    if guest == "attest":
        (shared,) = _equ_values(text, ("SHARED_OFFSET",)) if text else (2 * MiB,)
        return -(-(shared % 4096 + TOKEN_BUFFER_SIZE) // 4096)
    return MAX_SHARED_PAGES


def backed_pages(guest: str, recs: int, image_size: int, text: str = "") -> int:
    """Granules of protected RAM the host can have to back for a bundled guest: its image's
    (DATA_CREATE) and those of guest_pages (faulted in). Not min_ram's extent: the RAM between
    the image and those pages (1 MiB by default, 2 MiB up to attest's shared copy) is never
    touched, so never backed; the attest guest's copy goes to NS pages mapped at the unprotected
    alias, which the memory check counts as shared pages. ``text`` as for min_ram."""
    pages = set(range(-(-image_size // 4096)))
    span = guest_pages(guest, recs, text)
    if span is not None:
        start, end = span
        pages.update(range(start // 4096, -(-end // 4096)))
    return len(pages)


def guest_pages(guest: str, recs: int, text: str = "") -> tuple[int, int] | None:
    """[start, end) from RAM_BASE of the protected RAM a bundled guest touches beyond its image
    (start may be negative: constants can place the pages below RAM), or None for a guest that
    touches none (hello, measure, a guest file). ``text`` as for min_ram."""
    if guest == "smp-boot":
        (pages,) = _equ_values(text, ("PAGES",)) if text else (RAM_BASE + MiB,)
        return pages - RAM_BASE, pages - RAM_BASE + recs * 4096
    if guest == "ripas-flip":
        start, count = _equ_values(text, ("RANGE", "RANGE_PAGES")) if text else (RAM_BASE + MiB, 4)
        return start - RAM_BASE, start - RAM_BASE + count * 4096
    if guest == "attest":
        # The token buffer: at most 4 KiB from BUFFER_OFFSET + OFFSET.
        buffer, offset = _equ_values(text, ("BUFFER_OFFSET", "OFFSET")) if text else (MiB, 0xC00)
        return buffer, buffer + offset + 4096
    if guest == "ripas-loop":
        # REC 0 and each REC it starts (all of them, up to its MAX_RECS) use PAGES pages from
        # RANGE + i * PAGES * 4 KiB (PAGES 0 is refused: spec._BOUNDED).
        start, count, most = _equ_values(text, ("RANGE", "PAGES", "MAX_RECS")) if text \
            else (RAM_BASE + MiB, 4, MAX_VCPUS)
        return start - RAM_BASE, start - RAM_BASE + max(1, min(recs, most)) * max(count, 1) * 4096
    return None


PAGE_CONSTANTS = {"smp-boot": "PAGES", "ripas-flip": "RANGE", "attest": "BUFFER_OFFSET", "ripas-loop": "RANGE"}
"""The constant of each bundled guest that places its pages (guest_pages)."""


@functools.lru_cache(maxsize=16)
def _equ_values(text: str, names: tuple[str, ...]) -> tuple[int, ...]:
    """What ``names`` evaluate to in ``text`` (assembled at RAM_BASE), as a ``.quad`` of each
    would hold them (a negative value in two's complement): the assembler's own symbol table,
    no second parser. Read from its first pass (assembler.symbols), which does not make the
    image: a probe that appended the ``.quad`` lines and assembled the whole guest took 2 s for
    a 1 GiB image (ripas-loop with a MAX_RECS of millions), for each set of names asked.
    A value no .quad holds is left to the probe, whose error names it.

    Cached: checking one realm asks for the same values three times (spec's page checks,
    min_ram, backed_pages)."""
    values = symbols(text, base=RAM_BASE)
    if all(name in values and -(1 << 63) <= values[name] < 1 << 64 for name in names):
        return tuple(values[name] & ((1 << 64) - 1) for name in names)
    probe = assemble(text + "\n" + "\n".join(f".quad {name}" for name in names) + "\n", base=RAM_BASE)
    return struct.unpack_from(f"<{len(names)}Q", probe, len(probe) - 8 * len(names))


def challenge(seed: int, realm: str, index: int, generation: int) -> bytes:
    """The 64-byte challenge of one attest realm instance: a function of the seed and the
    instance, so a rerun with the same seed asks for tokens with the same challenges."""
    return hashlib.sha512(f"rmm-mp workload seed {seed} realm {realm}[{index}]#{generation}".encode()).digest()


def measure_expected(text: str, constants: dict[str, int], hash_algo: int) -> dict[str, int]:
    """EXPECTED0..7 of the measure guest ``text``: the REM1 it must read back after extending it
    with its value (VALUE0..7 and SIZE from ``constants``, else its own ``.equ`` lines) in a realm
    that measures with ``hash_algo``, as host.measure_constants computes it for a host that loads
    the guest itself. The guest's own EXPECTED lines hold SHA-256 of its default value only."""
    names = tuple(f"VALUE{i}" for i in range(8)) + ("SIZE",)
    own = dict(zip(names, _equ_values(text, names)))
    words = [constants.get(f"VALUE{i}", own[f"VALUE{i}"]) for i in range(8)]
    size = constants.get("SIZE", own["SIZE"])
    value = struct.pack("<8Q", *words)[:size]
    return {k: v for k, v in measure_constants(value, hash_algo).items() if k.startswith("EXPECTED")}


def attest_constants(value: bytes) -> dict[str, int]:
    """CHALLENGE0..7 of the attest guest for a 64-byte challenge (little-endian words)."""
    return {f"CHALLENGE{i}": w for i, w in enumerate(struct.unpack("<8Q", value))}
