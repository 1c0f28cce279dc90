"""The realm activities a CPU's host does, one unit per plan step.

    run          take one runnable vCPU from the shared run queue, REC_ENTER it once and handle
                 its exit (host.RunLoop.step: faults, MMIO, shared pages, PSCI, RIPAS changes,
                 host calls); an empty queue is an idle poll
    lifecycle    the KVM way, for the lifecycle realms this CPU owns: tear down an instance that
                 is DONE (read its outcome, destroy it in its teardown order), build the next
                 generation of one that is gone, turn off one that reached its lifetime; when
                 none needs anything, run one vCPU as `run` does
    attest       the same for lifecycle realms running the attest guest; tearing one down reads
                 its token, verifies it against its challenge and saves it (--save-tokens)
    ripas-churn  one REC_ENTER of this CPU's own ripas-loop realm (built at its first unit, run
                 by nobody else): its guest flips the RIPAS of 4 pages EMPTY and RAM in a loop,
                 so the host answers with RTT_SET_RIPAS, DATA_DESTROY and faults

Each activity is an object with ``unit()``; the engine calls one per step of the CPU's plan.

This module owns these activities. It speaks SMC only (through the host library).
"""

from __future__ import annotations

import struct

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET
from rmm_mp.host.exits import END, EXIT, ExitContext, handle_exit
from rmm_mp.host.realm_entry import DONE, END_SYSTEM_OFF, RUNNING
from rmm_mp.host.runqueue import MAX_VCPUS
from rmm_mp.workload import realms
from rmm_mp.workload.cpustate import Host

REC_ENTER = int(RmiFid.RMI_REC_ENTER)
_ENTER_FULL = struct.Struct("<Q504x31Q")   # RmiRecEnter flags at 0x000 and gprs at 0x200
_ENTER_FLAGS = struct.Struct("<Q")


class Run:
    def __init__(self, host: Host) -> None:
        self.host = host

    def unit(self) -> None:
        if not self.host.run_one():
            self.host.counters["queue empty"] += 1


class Lifecycle:
    """Build, turn off and tear down this CPU's lifecycle instances (attest ones for "attest")."""

    def __init__(self, host: Host, attest: bool) -> None:
        self.host = host
        self.keys = sorted(k for k in host.owned if host.job.realms[k[0]].attest == attest)
        self.idle_counter = "attest: vCPU runs" if attest else "lifecycle: vCPU runs"

    def unit(self) -> None:
        h = self.host
        q = h.queue
        for key in self.keys:
            inst = h.owned[key]
            if inst is None:
                h.build(key)
                h.counters["realms built"] += 1
                return
            state = q.realm_state(inst.slot)
            if state == DONE:
                done = h.reap(key)
                h.counters["realms destroyed"] += 1
                if done.token:
                    h.counters["tokens"] += 1
                return
            lifetime = h.job.realms[key[0]].lifetime
            if lifetime and state == RUNNING and key not in h.turned_off \
                    and q.counter(inst.slot, "entries") >= lifetime:
                q.system_off(inst.slot, END_SYSTEM_OFF)   # its vCPUs drain on whichever CPU takes them
                h.turned_off.add(key)
                h.counters["realms turned off"] += 1
                return
        if h.run_one():
            h.counters[self.idle_counter] += 1
        else:
            h.counters["queue empty"] += 1


class RipasChurn:
    """Enter this CPU's private ripas-loop realm once per unit and handle the exit."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.inst: realms.Instance | None = None
        self.flags = 0
        self.dead = False
        self.ctx = ExitContext(host.cpu, host.alloc, host.queue)

    def _build(self) -> realms.Instance:
        h = self.host
        template = h.job.ripas_template
        assert template is not None
        # vcpus=0: registered (the exit handlers find it in the realm table) but never queued.
        inst = realms.build(h.cpu, h.alloc, h.queue, template, -1, h.cpu.id, 0, h.job.seed, vcpus=0,
                            name=f"ripas-churn.cpu{h.cpu.id}", rtt_base=h.roots.get((-1, h.cpu.id)))
        h.private.append(inst)
        h.counters["realms built"] += 1
        return inst

    def unit(self) -> None:
        h = self.host
        if self.dead:
            h.counters["ripas-churn idle"] += 1
            return
        inst = self.inst or self._build()
        self.inst = inst
        vcpu = inst.slot * MAX_VCPUS
        rec, run = h.queue.vcpu_pages(vcpu)
        x0 = h.smc(REC_ENTER, rec, run)[0]
        h.counters["ripas-churn entries"] += 1
        h.queue.count(inst.slot, "entries")
        if x0 != 0:
            # Only a realm that turned itself off (its guest REPORTed a failure) refuses entry.
            self.dead = True
            h.add_error(inst.slot, inst.gen, f"REC_ENTER returned {x0:#x}")
            return
        ex = EXIT.unpack(h.machine.ns_read(run + REC_EXIT_OFFSET, EXIT.size))
        action, flags, gprs, error = handle_exit(self.ctx, vcpu, ex)
        if gprs is not None:
            h.machine.ns_write(run, _ENTER_FULL.pack(flags, *(list(gprs) + [0] * (31 - len(gprs)))))
        elif flags != self.flags:
            h.machine.ns_write(run, _ENTER_FLAGS.pack(flags))
        self.flags = flags
        if error:
            self.dead = True
            h.add_error(inst.slot, inst.gen, f"realm slot {inst.slot} REC 0: {error}")
        elif action == END:
            self.dead = True      # SYSTEM_OFF after a failure REPORT: the outcome says which
