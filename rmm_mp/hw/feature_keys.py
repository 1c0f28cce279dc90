"""The keys of a platform file's [features] table as RmiFeatureRegister0 (spec B4.4.6) sees them:
each key's range, read by the file's checks (rmm_mp.hw.platform) and by the hint for a key
written as a register field's name (``NUM_BPS = 5`` is ``breakpoints = 6``), which must suggest
no value the key then refuses.

This module owns those ranges and the field-to-key table. It must not read files nor word the
platform's other errors (rmm_mp.hw.platform does).
"""

from __future__ import annotations

from collections.abc import Callable

# The [features] keys' ranges, for their checks (platform._Validator.features) and for the
# register-field hint below.
BOUNDS: dict[str, tuple[int, int]] = {
    "s2sz": (32, 48), "sve_vector_length": (128, 2048), "pmu_counters": (0, 31), "breakpoints": (2, 64),
    "watchpoints": (2, 64), "gic_list_registers": (1, 16), "max_recs_order": (1, 10)}

# RmiFeatureRegister0's fields (B4.4.6) by name, for a key written as one: the key, what it takes
# and its value from the field's (None: a flag).
_REGISTER_FIELDS: dict[str, tuple[str, str, Callable[[int], int] | None]] = {
    "s2sz": ("s2sz", "", lambda n: n),
    "lpa2": ("lpa2", "", None),
    "sve_en": ("sve", "", None),
    "sve_vl": ("sve_vector_length", "the length in bits, ", lambda n: (n + 1) * 128),
    "num_bps": ("breakpoints", "the count, ", lambda n: n + 1),
    "num_wps": ("watchpoints", "the count, ", lambda n: n + 1),
    "pmu_en": ("pmu", "", None),
    "pmu_num_ctrs": ("pmu_counters", "", lambda n: n),
    "gicv3_num_lrs": ("gic_list_registers", "the count, ", lambda n: n + 1),
    "max_recs_order": ("max_recs_order", "", lambda n: n),
}


def accepted(name: str) -> str:
    """What key ``name`` accepts, as the hint shows it ('' for a flag that takes either)."""
    if name == "lpa2":
        return "false only"
    if name not in BOUNDS:
        return ""
    lo, hi = BOUNDS[name]
    return f"a multiple of 128 in {lo}..{hi}" if name == "sve_vector_length" else f"{lo}..{hi}"


def accepts(name: str, value: object) -> bool:
    """Whether key ``name`` takes ``value`` (as its check in rmm_mp.hw.platform does)."""
    if name == "lpa2":
        return value is False
    if name not in BOUNDS:
        return True
    lo, hi = BOUNDS[name]
    return isinstance(value, int) and lo <= value <= hi and (name != "sve_vector_length" or value % 128 == 0)


def register_field_hint(key: str, value: object) -> str:
    """': FIELD is the register field: write KEY = VALUE' for a features key that names a field of
    RmiFeatureRegister0 instead of this schema's key (NUM_BPS = 5 is breakpoints = 6, S2SZ = 48 is
    s2sz = 48), else ''. A value the key would refuse is shown as '... (what it accepts)'."""
    field_name = key.lower()
    # A flag as the register holds it (1 or 0) or as TOML writes it; anything else is no flag.
    flag = value if isinstance(value, bool) else bool(value) if value in (0, 1) else None
    if field_name in ("hash_sha_256", "hash_sha_512"):
        hash_name = f"sha-{field_name[-3:]}"
        told = (f' = ["{hash_name}"]' if flag else f', without "{hash_name}"' if flag is False
                else ' = ["sha-256", "sha-512"] (those the platform has)')
        return f": {key.upper()} is the register field: write the list of hashes, hash_algorithms{told}"
    if field_name not in _REGISTER_FIELDS:
        return ""
    name, what, convert = _REGISTER_FIELDS[field_name]
    allowed = accepted(name)
    converted: object = None
    if convert is None:         # LPA2, SVE_EN, PMU_EN
        converted = flag
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        converted = convert(value)
    if converted is None:
        shown = "true or false" if convert is None and not allowed else f"... ({allowed})"
    elif accepts(name, converted):
        shown = str(converted).lower() if isinstance(converted, bool) else str(converted)
    else:
        shown = f"... ({allowed})"
    return f": {key.upper()} is the register field: write {what}{name} = {shown}"
