"""Which key of a workload file an error about a realm's guest is blamed on, and those errors.

    pages_after_image(...)   refuse pages a bundled guest touches that are not on a page
                             boundary after its image, naming the constant that placed them
    placing_culprit(...)     the constant that puts the pages past the most RAM a realm has
    unassembled(...)         the error for a guest that does not assemble with the constants
    kib(n)                   a size in the RAM errors' units

A constant set in the file often moves the pages through another's value (ripas-loop's RANGE
is ``IMAGE_BASE + 0x100000``): naming the guest, or the first constant set, sent the user to a
key that was not wrong. These functions try the guest without each candidate constant and name
the one without which it fits.

Split from spec.py, which owns the file format and calls these while it checks a realm entry.
This module must not create a machine; it reads only the raw entry, the guest text and the
constants.
"""

from __future__ import annotations

from typing import Any

from rmm_mp.guest.assembler import AssemblerError
from rmm_mp.guest.equ import equ_uses, line_names, with_constants
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload import programs
from rmm_mp.workload.fields import Fields

MiB = 1 << 20

_PLACING = ("RANGE", "RANGE_PAGES", "PAGES", "MAX_RECS", "BUFFER_OFFSET", "OFFSET", "SHARED_OFFSET")
"""Constants of the bundled guests that move the pages they touch (docs/workloads.md)."""


def kib(n: int) -> str:
    """``n`` bytes as whole MiB, else KiB rounded up, with thousands separators as every other
    figure of the tool (hw.platform.size_text: "16,388 KiB"): the sizes of the RAM errors.
    They read "1201024 KiB" until 2026-11."""
    return f"{n // MiB:,} MiB" if n % MiB == 0 else f"{(n + 1023) // 1024:,} KiB"


def pages_after_image(f: Fields, raw: dict[str, Any], where: str, guest: str, recs: int, image_size: int,
                      text: str, constants: dict[str, int], derived: dict[str, int]) -> None:
    """The pages a bundled guest touches beyond its image must start on a page boundary in its
    RAM after the image: below RAM the host backs nothing (the guest takes an SEA there, with no
    vector to take it, and loops on it for ever), and over the image the guest writes over its
    own code."""
    source = with_constants(text, {**constants, **derived})
    pages = programs.guest_pages(guest, recs, source)
    image_end = -(-image_size // 4096) * 4096
    if pages is None or (pages[0] % 4096 == 0 and pages[0] >= image_end):
        return
    constant = programs.PAGE_CONSTANTS[guest]
    key, value = _pages_culprit(raw, where, guest, recs, text, constants, derived, [constant]) \
        or (f"{where}.guest", raw["guest"])
    first = programs.RAM_BASE + pages[0]
    at = f"{constant} (IPA {first:#x})"
    blamed = key.rsplit(".", 1)[1] if key.startswith(f"{where}.constants.") else constant
    if blamed != constant and blamed in _set_constants(raw, source, [constant]):
        at = f"{constant} (IPA {first:#x}, where {blamed} moves it)"  # how the key named is to blame
    if pages[0] % 4096:
        # The guests use these as pages: RSI_IPA_STATE_SET and ATTESTATION_TOKEN_CONTINUE refuse
        # an address that is not granule aligned (the realm then reports failure), and a store
        # that is not 8-byte aligned takes an alignment fault with no vector to take it.
        raise f.fail(key, value, f"a page-aligned place for its pages: guest {guest!r} places them at {at}, "
                                 f"which must be a multiple of 4 KiB")
    if pages[0] >= image_end:
        return
    raise f.fail(key, value, f"pages in the realm's RAM after its image: guest {guest!r} places its pages at "
                             f"{at}, and they must start at or above "
                             f"{programs.RAM_BASE + image_end:#x} (RAM starts at {programs.RAM_BASE:#x}, "
                             f"the image takes {kib(image_end)})")


def _pages_culprit(raw: dict[str, Any], where: str, guest: str, recs: int, text: str, constants: dict[str, int],
                   derived: dict[str, int], chain: list[str]) -> tuple[str, object] | None:
    """(key, value) of the constant the workload sets without which (its .equ value the guest's
    own) the pages ``guest`` touches start on a page boundary after its image: of those the page
    constant's value uses (``chain``, nearest first), then the others it sets, in the file's
    order; else the first of the chain's; None when it sets none. A ripas-loop MAX_RECS of
    400,000 grows the image past RANGE: it was blamed on realm[0].guest, which is not wrong."""
    named = _set_constants(raw, with_constants(text, {**constants, **derived}), chain)
    for candidate in [*named, *(c for c in constants if c not in named)]:
        source = with_constants(text, {**{k: v for k, v in constants.items() if k != candidate}, **derived})
        try:
            pages = programs.guest_pages(guest, recs, source)
            size = programs.image_size(source)
        except ValueError:      # AssemblerError too: without it the guest is wrong some other way
            continue
        if pages is not None and pages[0] % 4096 == 0 and pages[0] >= -(-size // 4096) * 4096:
            return f"{where}.constants.{candidate}", raw["constants"][candidate]
    return (f"{where}.constants.{named[0]}", raw["constants"][named[0]]) if named else None


def _set_constant(raw: dict[str, Any], where: str, source: str, names: list[str]) -> tuple[str, object] | None:
    """(key, value) of the first constant the workload sets among ``names`` and the .equ names
    their values use in ``source`` (the guest with the workload's constants applied), nearest
    first; None when it sets none of them. ripas-loop's and ripas-flip's RANGE is
    ``IMAGE_BASE + 0x100000``: an IMAGE_BASE that moved the pages was reported as the guest
    (``realm[0].guest = 'ripas-loop'``) or its ram, not as the constant that is wrong."""
    named = _set_constants(raw, source, names)
    return (f"{where}.constants.{named[0]}", raw["constants"][named[0]]) if named else None


def _set_constants(raw: dict[str, Any], source: str, names: list[str]) -> list[str]:
    """The constants the workload sets among ``names`` and the .equ names their values use in
    ``source``, nearest first."""
    constants = raw.get("constants", {})
    if not isinstance(constants, dict):
        return []
    return [c for c in equ_uses(source, names) if c in constants]


def placing_culprit(raw: dict[str, Any], where: str, guest: str, recs: int, image_size: int, text: str,
                    constants: dict[str, int], derived: dict[str, int], most: int) -> tuple[str, object] | None:
    """(key, value) of the constant the workload sets that puts the pages ``guest`` touches past
    ``most``: of those it sets among the placing constants and what their values use (nearest
    first), the first without which (its .equ value the guest's own) the pages fit; else the
    first of them; None when it sets none. The first set one alone blamed a harmless one: attest
    with SHARED_OFFSET = 0x7FFF0000 and OFFSET = 0xC00 (its default) was refused at OFFSET."""
    source = with_constants(text, {**constants, **derived})
    named = _set_constants(raw, source, [programs.PAGE_CONSTANTS.get(guest, ""), *_PLACING])
    for constant in named:
        rest = {name: value for name, value in constants.items() if name != constant}
        try:
            need = programs.min_ram(guest, recs, image_size, with_constants(text, {**rest, **derived}))
        except ValueError:      # AssemblerError too: without it the guest is wrong some other way
            continue
        if need <= most:
            return f"{where}.constants.{constant}", raw["constants"][constant]
    return (f"{where}.constants.{named[0]}", raw["constants"][named[0]]) if named else None


def unassembled(f: Fields, raw: dict[str, Any], where: str, text: str, source: str, exc: ValueError) -> ConfigError:
    """The error for a guest that does not assemble with the workload's constants: named by the
    constant the failing line depends on when the guest assembles with its own values (an
    IMAGE_BASE near 2^64 made ripas-loop's 'mov x21, =RANGE' overflow, reported as
    realm[0].guest), else by the guest."""
    if isinstance(exc, AssemblerError) and raw.get("constants"):
        blamed = _set_constant(raw, where, source, line_names(source, exc.line))
        if blamed is not None:
            try:
                programs.image(text, {})
            except (AssemblerError, ValueError):
                blamed = None       # the guest is wrong on its own: the constants are not to blame
        if blamed is not None:
            return f.fail(blamed[0], blamed[1], f"a value with which guest {raw['guest']!r} assembles ({exc})")
    return f.fail(f"{where}.guest", raw["guest"], f"a guest that assembles ({exc})")
