"""The engine's own guest programs (rmm_mp/workload/programs.py), run through SMC calls only.

ripas-loop reports a failure with REPORT(code, detail) from registers it set before its RSI
calls; an RSI command returns X1..X16 as its outputs or 0 (spec B1.2), so those registers must
lie above X16 or a failure after an RSI call would be reported as a pass (code 0).
"""

from __future__ import annotations

from realm_guests import Guest
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import RmiRecEnterFlags, RmiRecExitReason
from rmm_mp.host import NsAllocator, RealmSpec, create_realm
from rmm_mp.workload import programs

HOST_CALL, SYNC, RIPAS_CHANGE = (int(RmiRecExitReason.RMI_EXIT_HOST_CALL), int(RmiRecExitReason.RMI_EXIT_SYNC),
                                 int(RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE))
REJECT = int(RmiRecEnterFlags.RIPAS_RESPONSE)


def test_ripas_loop_reports_a_rejected_ripas_change_with_its_code() -> None:
    """REC 0 of ripas-loop touches its 4 pages, gives them back (EMPTY, accepted) and asks for
    them again (RAM), which the host rejects: it must REPORT code 5 with detail 0x100 + REJECT.
    With its code in x15 it reported 0 (a pass): the completed IPA_STATE_SET had zeroed it."""
    with Machine.create("host", cpus=1) as m:
        alloc = NsAllocator(m, 0)
        spec = RealmSpec(ipa_width=40, ram_base=programs.RAM_BASE, ram_size=4 << 20, hash_algo=0, rpv=b"",
                         num_recs=1, image=programs.image(programs.RIPAS_LOOP, {}), gprs=())
        with Guest(m, alloc, create_realm(m.cpu(0), alloc, spec), 0, programs.RIPAS_LOOP) as g:
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"], ex["imm"]) == (0, HOST_CALL, 2)      # QUERY: vCPUs
            flags, gprs = 0, [1]
            changes = 0
            while True:
                x0, ex = g.enter(flags, gprs)
                assert x0 == 0
                flags, gprs = 0, []
                if ex["exit_reason"] == SYNC:          # a page of RANGE touched: fault it in
                    g.fault_in(ex["hpfar"] << 8)
                elif ex["exit_reason"] == RIPAS_CHANGE:
                    changes += 1
                    if changes == 1:                   # to EMPTY: done as asked
                        rec = g.realm.recs[0].rec
                        base, top = ex["ripas_base"], ex["ripas_top"]
                        while base < top:
                            status, base = g.smc(RmiFid.RMI_RTT_SET_RIPAS, g.realm.rd, rec, base, top)[:2]
                            assert status == 0
                    else:                              # back to RAM: rejected
                        flags = REJECT
                else:
                    break
            assert (ex["exit_reason"], ex["imm"]) == (HOST_CALL, 3)            # REPORT
            assert ex["gprs"][:2] == (5, 0x101)
