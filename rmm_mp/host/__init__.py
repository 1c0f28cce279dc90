"""The hypervisor model: a Linux-KVM-like host that speaks SMC only.

    NsAllocator            NS granules and VMIDs, shared by every CPU process of a machine
    RealmSpec, HostRealm   what to build, and the picklable record of what was built
    create_realm           KVM's build sequence (RMM 1.0): RD, roots, INIT_RIPAS, image, RECs
    fault_in               back a protected page at run time (DATA_CREATE_UNKNOWN)
    map_unprotected        map an NS page at an unprotected IPA
    destroy_realm          teardown in KVM's "legacy" or "v12" order
    HostError              the RMM answered what a correct RMM cannot
    RunQueue               the vCPU run queue and realm table in shared memory (any CPU runs any REC)
    run_loop, LoopPlan     one CPU's REC_ENTER loop with KVM-like exit handling -> LoopSummary
    RunLoop, exit_counts   one step of that loop (for tools), and the exit counts of each CPU's current loop
    run_realms             realms run to completion on N CPU processes -> RunSummary
    realm_status           what a registered realm did: console, host calls, counters -> RealmStatus
    load_guest             a bundled guest program (workloads/guests/*.s) assembled for a load IPA

The host may import abi, hw, stats, machine and runtime, never rmm or el3 (tests/test_structure.py).
"""

from rmm_mp.host.devices import LogRecord, RealmStatus, realm_status
from rmm_mp.host.guests import GUESTS, guest_source, load_guest, measure_constants
from rmm_mp.host.nsalloc import AllocatorError, AllocatorStats, NsAllocator, OutOfGranules, OutOfVmids
from rmm_mp.host.realm import (
    TEARDOWN_ORDERS, HostError, HostRealm, HostRec, RealmSpec, fault_in, find_map_level, host_features,
    map_unprotected, num_roots, start_level,
)
from rmm_mp.host.realm_build import create_realm
from rmm_mp.host.realm_teardown import destroy_realm
from rmm_mp.host.runloop import LoopPlan, LoopSummary, RunLoop, RunSummary, exit_counts, run_loop, run_realms
from rmm_mp.host.runqueue import CapacityError, QueueStats, RunQueue, RunQueueError

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
    "RunQueue",
    "RunQueueError",
    "CapacityError",
    "QueueStats",
    "run_loop",
    "RunLoop",
    "exit_counts",
    "run_realms",
    "LoopPlan",
    "LoopSummary",
    "RunSummary",
    "realm_status",
    "RealmStatus",
    "LogRecord",
    "GUESTS",
    "guest_source",
    "load_guest",
    "measure_constants",
]
