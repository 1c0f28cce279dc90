"""The layout of one entry of the host's realm table (4 KiB per realm, in the control block's
host area; host/runqueue.py places the table and owns the state transitions), and the names of
the states, end reasons and counters stored in it.

The offsets are from the start of a realm's entry, little-endian. This module owns the entry's
layout only: what the fields mean is said where they are used (runqueue.py, runloop.py,
exits.py, devices.py). It must not touch shared memory.
"""

from __future__ import annotations

R_STATE, R_GEN, R_RECS, R_OFFERED, R_ACTIVE, R_END = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
R_IPA_WIDTH, R_START_LEVEL, R_NUM_ROOTS, R_VMID, R_HASH, R_NUM_AUX, R_NSHARED = (
    0x18, 0x1C, 0x20, 0x24, 0x28, 0x2C, 0x30)
R_QUEUE = 0x34                                  # u32: the run queue its vCPUs go into
R_RD, R_RTT_BASE, R_RAM_BASE, R_RAM_SIZE = 0x38, 0x40, 0x48, 0x50
R_SHARED, MAX_SHARED_RANGES = 0x80, 4          # (base IPA, size) pairs of unprotected IPAs backed by NS pages
R_COUNTERS = 0xC0                               # 20 u64, named by COUNTERS
R_DEVICE = 0x160                                # device registers (devices.py), 4 u64
R_RESULT = 0x180                                # host-call reports: count (bit 63: one being stored), odd reports'
                                                # code, detail; the output lock word
R_LOG, LOG_RECORDS, LOG_RECORD = 0x1A0, 24, 40  # count u64, then (REC index, x0..x3) records
R_PAGES, MAX_SHARED_PAGES = 0x580, 16           # count u64, then (IPA, NS PA) pairs
R_TORN = 0x688                                  # LOG count + 1, console count + 1 at the last output-lock takeover
                                                # (devices.py)
R_ALT = 0x698                                   # second cells of two-cell registers (devices.py): the even reports'
                                                # code, detail, the even doorbell rings' LAST
R_VCPUS, VCPU_BYTES = 0x700, 40                 # per vCPU, VF_* below
VF_STATE, VF_WOKEN, VF_REC, VF_RUN, VF_END, VF_FLAGS, VF_CPU = 0, 4, 8, 16, 24, 28, 32
"""vCPU entry: state u32, woken mark u32, REC PA u64, run page PA u64, end reason u32, the enter
flags its run page holds u32, the CPU that last ran it + 1 u32 (0: never ran)."""
R_CONSOLE, CONSOLE_BYTES = 0xC00, 0x400

COUNTERS = ("entries", "faults", "fault_races", "mmio_reads", "mmio_writes", "shared_maps", "sea_injected",
            "ripas_changes", "ripas_destroyed", "ripas_rejects", "cpu_on", "cpu_on_denied", "affinity_info",
            "host_calls", "vcpu_errors", "rtts_created", "migrations")
"""Per realm, what the host did for it (host.exits): among them fault_races, faults another vCPU
had already backed (DATA_CREATE_UNKNOWN found the entry assigned); ripas_rejects, RAM requests
answered REJECT (an EMPTY request cut short is answered ACCEPT and not counted); rtts_created,
tables the exit handling (host.exits) made for faults, shared pages and RIPAS changes alike (not
those the map-shared and rtt-churn activities make; rtt-churn's are in its CPU's 'tables
created'); migrations, REC_ENTERs that ran a vCPU on
another CPU than its previous run (RunQueue.ran_on: a vCPU taken only to be drained is no move)."""
C = {name: i for i, name in enumerate(COUNTERS)}

# Realm states, realm end reasons, vCPU states and vCPU end reasons (stored as u32).
FREE, SETUP, RUNNING, SYSTEM_OFF, DONE = 0, 1, 2, 3, 4
REALM_STATES = ("FREE", "SETUP", "RUNNING", "SYSTEM_OFF", "DONE")
END_NONE, END_SYSTEM_OFF, END_SYSTEM_RESET, END_ALL_OFF, END_ERROR = 0, 1, 2, 3, 4
REALM_ENDS = ("", "SYSTEM_OFF", "SYSTEM_RESET", "ALL_OFF", "ERROR")
V_OFF, V_QUEUED, V_RUNNING, V_WOKEN, V_DONE = 0, 1, 2, 3, 4
VCPU_STATES = ("OFF", "QUEUED", "RUNNING", "WOKEN", "DONE")
VEND_NONE, VEND_SYSTEM_OFF, VEND_DRAINED, VEND_RACE, VEND_ERROR = 0, 1, 2, 3, 4
VCPU_ENDS = ("", "SYSTEM_OFF", "DRAINED", "SYSTEM_OFF_RACE", "ERROR")
