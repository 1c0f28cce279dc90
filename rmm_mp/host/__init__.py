"""The hypervisor model: a Linux-KVM-like host that speaks SMC only.

    NsAllocator            NS granules and VMIDs, shared by every CPU process of a machine
    RealmSpec, HostRealm   what to build, and the picklable record of what was built
    create_realm           KVM's build sequence (RMM 1.0): RD, roots, INIT_RIPAS, image, RECs
    fault_in               back a protected page at run time (DATA_CREATE_UNKNOWN)
    map_unprotected        map an NS page at an unprotected IPA
    destroy_realm          teardown in KVM's "legacy" or "v12" order
    HostError              the RMM answered what a correct RMM cannot

The host may import abi, hw, stats, machine and runtime, never rmm or el3 (tests/test_structure.py).
"""

from rmm_mp.host.nsalloc import AllocatorError, AllocatorStats, NsAllocator, OutOfGranules, OutOfVmids
from rmm_mp.host.realm import (
    TEARDOWN_ORDERS, HostError, HostRealm, HostRec, RealmSpec, fault_in, find_map_level, host_features,
    map_unprotected, num_roots, start_level,
)
from rmm_mp.host.realm_build import create_realm
from rmm_mp.host.realm_teardown import destroy_realm

__all__ = [
    "NsAllocator",
    "AllocatorStats",
    "AllocatorError",
    "OutOfGranules",
    "OutOfVmids",
    "RealmSpec",
    "HostRealm",
    "HostRec",
    "HostError",
    "TEARDOWN_ORDERS",
    "create_realm",
    "destroy_realm",
    "fault_in",
    "map_unprotected",
    "find_map_level",
    "host_features",
    "num_roots",
    "start_level",
]
