"""The host's NS memory access (Machine.ns_read / ns_write, hw.memory.NsAccess) beyond the
contract basics in test_machine_contract.py: where a GranuleProtectionFault says the access
failed.
"""

from __future__ import annotations

import pytest

from rmm_mp import GranuleProtectionFault, Machine


# -- where the fault is ------------------------------------------------------------------------


def test_fault_names_the_first_byte_of_the_access() -> None:
    """An access that starts inside a Secure granule faults at its own first byte (not at the
    granule's base, which the access never touches); one that runs from NS into the Secure
    region faults at the region's first byte."""
    with Machine.create("host", cpus=1) as m:
        base, _ = m.secure_regions[0]
        for access in (lambda pa, n: m.ns_read(pa, n), lambda pa, n: m.ns_write(pa, bytes(n))):
            with pytest.raises(GranuleProtectionFault) as inside:
                access(base + 100, 8)
            assert inside.value.pa == base + 100
            with pytest.raises(GranuleProtectionFault) as across:
                access(base + 100, 2 * m.granule_size)
            assert across.value.pa == base + 100
            with pytest.raises(GranuleProtectionFault) as into:
                access(base - 16, 32)
            assert into.value.pa == base
