#!/usr/bin/env python3
"""Attestation token generation through RMI_REC_ENTER, as a host drives it, on 1 CPU.

A realm on CPU 0 of a fresh machine runs a guest that makes tokens in a loop:

    LOG host call (imm 1, X0 = 0: "start")
    RSI_ATTESTATION_TOKEN_INIT, challenge = a fixed 56 bytes + the token's number
    RSI_ATTESTATION_TOKEN_CONTINUE until X0 is not RSI_INCOMPLETE: the spec's A7.2.2 loop,
        X1 = granule of the next byte, X2 = its offset, X3 = min(--chunk, room in the granule),
        into a 2-granule buffer the host faulted in beforehand
    LOG host call (imm 1, X0 = 1: "done", X1 = CONTINUE calls, X2 = bytes, X3 = last status)

The host (this process) enters the REC, answers the host calls and re-enters after IRQ exits.
Token generation time is the wall time (time.perf_counter_ns) from just before the REC_ENTER
that follows the "start" exit (the realm's next RSI call is INIT, after the instructions that
load the challenge) to just after the "done" exit was read (a few guest instructions after the
last CONTINUE): INIT, signing, the copy-out, every IRQ exit and re-entry in between, and the
host's run-loop work. CONTINUE calls per token
come from the guest, IRQ exits per token from the host's count between the two marks. The first
--warmup tokens are not timed; the very first includes the RMM fetching the RAK and platform
token from EL3 (once per machine, so in every run: the RMM keeps them on its per-CPU state), reported
on its own. The machine's histograms give the RMM's
time per INIT and per CONTINUE call (EL3 entry to return is not involved: these are RSI calls,
timed by the RMM around the handler; p50 is the upper edge of a histogram bucket).

Configurations: platforms fvp (TF-A's sample platform token, a 2,124-byte CCA token) and host
(a seeded platform token, 1,028 bytes), each with the platform's time slice (10,000 guest
instructions: signing, 4 steps of 2,000, fits in one entry) and with --short-slice (default
2,500: one signing step per entry). Each configuration runs --repeat times on a fresh machine;
medians of the per-run figures are printed.

    python tools/bench_attest.py [--tokens 200] [--repeat 3] [--chunk 4096] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import struct
import time
from typing import Any

from benchlib import check_json, host_info, measurement_failed, percentile, slot_named, tool_main, window, write_json

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.guest.assembler import assemble
from rmm_mp.host import NsAllocator, RealmSpec, create_realm, destroy_realm, fault_in
from rmm_mp.hw.platform import load as load_platform
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.machine import Machine
from rmm_mp.stats import report

REC_ENTER = int(RmiFid.RMI_REC_ENTER)
BASE = 0x8000_0000
BUFFER = BASE + 0x10_0000
EXIT_IRQ, EXIT_HOST_CALL = 1, 5
CHALLENGE = struct.unpack("<7Q", b"rmm-mp bench_attest: 56 bytes of challenge, then the no.")
GUEST = """
    .equ CHUNK, {chunk}
    mov x19, #0                     // tokens made
token:
    adr x1, hostcall                // LOG "start"
    mov x2, #1
    strh x2, [x1]
    str xzr, [x1, #8]
    str x19, [x1, #16]
    mov x0, =0xC4000199
    smc #0
{challenge}
    mov x8, x19
    mov x0, =0xC4000194             // RSI_ATTESTATION_TOKEN_INIT
    smc #0
    mov x20, #0                     // CONTINUE calls
    mov x21, #0                     // bytes written
    mov x22, ={buffer}
    mov x25, =CHUNK
next:
    add x9, x22, x21
    and x1, x9, #-4096
    and x2, x9, #4095
    mov x3, #4096
    sub x3, x3, x2
    cmp x3, x25
    b.ls sized
    mov x3, x25
sized:
    mov x0, =0xC4000195             // RSI_ATTESTATION_TOKEN_CONTINUE
    smc #0
    add x20, x20, #1
    add x21, x21, x1
    cmp x0, #3
    b.eq next
    mov x23, x0
    adr x1, hostcall                // LOG "done"
    mov x2, #1
    str x2, [x1, #8]
    str x20, [x1, #16]
    str x21, [x1, #24]
    str x23, [x1, #32]
    mov x0, =0xC4000199
    smc #0
    add x19, x19, #1
    b token
    .align 256
hostcall:
    .half 1
    .zero 254
"""


def guest(chunk: int) -> bytes:
    regs = "\n".join(f"    mov x{i + 1}, ={w:#x}" for i, w in enumerate(CHALLENGE))
    return assemble(GUEST.format(chunk=chunk, challenge=regs, buffer=BUFFER), base=BASE)


def run(platform: str, time_slice: int | None, tokens: int, warmup: int, chunk: int) -> dict[str, Any]:
    """One run on a fresh machine: ``warmup`` + ``tokens`` tokens; per-token figures (numbers,
    and the platform's name and slice, a number or "platform": Any, as main takes medians of the
    numbers by key)."""
    with Machine.create(platform, cpus=1, time_slice=time_slice) as m:
        cpu, alloc = m.cpu(0), NsAllocator(m, 0)
        realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=BASE, ram_size=4 << 20, image=guest(chunk)))
        for page in (BUFFER, BUFFER + 4096):
            fault_in(cpu, alloc, realm, page)
        run_page = alloc.alloc()
        m.ns_write(run_page, bytes(4096))
        rec, clock = realm.recs[0].rec, time.perf_counter_ns
        samples: list[tuple[int, int, int, int]] = []       # (ns, CONTINUE calls, IRQ exits, bytes)
        t0 = irqs = 0
        before = None
        gc.disable()
        try:
            while len(samples) < warmup + tokens:
                if len(samples) == warmup and before is None:
                    cpu.flush_statistics()
                    before = report.collect(m, [0])[0]
                if cpu.smc(REC_ENTER, rec, run_page)[0] != 0:
                    measurement_failed("RMI_REC_ENTER failed")
                ex = RMI_REC_EXIT.unpack(m.ns_read(run_page + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
                if ex["exit_reason"] == EXIT_IRQ:
                    irqs += 1
                    m.ns_write(run_page, bytes(RMI_REC_ENTER.pack()))
                    continue
                if ex["exit_reason"] != EXIT_HOST_CALL:
                    measurement_failed(f"unexpected exit {ex['exit_reason']} (esr {ex['esr']:#x})")
                gprs = ex["gprs"]
                if gprs[0] == 0:
                    irqs = 0
                else:
                    if gprs[3] != 0:
                        measurement_failed(f"token {len(samples)}: CONTINUE ended with status {gprs[3]}")
                    samples.append((clock() - t0, gprs[1], irqs, gprs[2]))
                m.ns_write(run_page, bytes(RMI_REC_ENTER.pack(gprs=list(gprs))))
                if gprs[0] == 0:
                    t0 = clock()            # the realm's next RSI call is INIT
        finally:
            gc.enable()
        cpu.flush_statistics()
        after = report.collect(m, [0])[0]
        destroy_realm(cpu, alloc, realm)
        alloc.free(run_page)
    timed = samples[warmup:]
    ns = sorted(s[0] for s in timed)
    hist = {name: window(before or {}, after, slot_named(name))
            for name in ("RSI_ATTESTATION_TOKEN_INIT", "RSI_ATTESTATION_TOKEN_CONTINUE")}
    cont = hist["RSI_ATTESTATION_TOKEN_CONTINUE"]
    return {
        "platform": platform, "time_slice": time_slice or "platform", "tokens": len(timed),
        "token_bytes": timed[0][3], "first_token_ns": samples[0][0],
        "p50_ns": percentile(ns, 50), "p99_ns": percentile(ns, 99), "mean_ns": sum(ns) / len(ns),
        "continue_calls": statistics.median(s[1] for s in timed), "continue_calls_max": max(s[1] for s in timed),
        "irq_exits": statistics.median(s[2] for s in timed), "irq_exits_max": max(s[2] for s in timed),
        "init_p50_ns": hist["RSI_ATTESTATION_TOKEN_INIT"].percentile(50),
        "continue_p50_ns": hist["RSI_ATTESTATION_TOKEN_CONTINUE"].percentile(50),
        "continue_mean_ns": cont.sum_ns / max(1, cont.count), "continue_count": cont.count,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=200, help="timed tokens per run (default 200)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed tokens first (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration, each on a fresh machine (default 3)")
    ap.add_argument("--chunk", type=int, default=4096, help="X3 upper bound per CONTINUE, bytes (default 4,096)")
    ap.add_argument("--short-slice", type=int, default=2500, help="the short time slice, instructions (default 2,500)")
    ap.add_argument("--platforms", default="fvp,host", help="comma-separated platforms (default fvp,host)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args(argv)
    check_json(ap, args.json)
    if min(args.tokens, args.repeat, args.warmup + 1) < 1 or not 1 <= args.chunk <= 4096:
        ap.error("--tokens and --repeat must be positive, --warmup not negative, --chunk in 1..4096")
    if args.short_slice < 1:
        ap.error(f"--short-slice {args.short_slice}: expected a number of guest instructions >= 1")
    # Every platform is loaded before any run: an unknown one was a ConfigError traceback, exit
    # status 1 (a missed target), after the runs of the platforms before it.
    platforms = args.platforms.split(",")
    for name in platforms:
        try:
            load_platform(name)
        except ConfigError as exc:
            ap.error(f"--platforms: {exc}")

    info = host_info()
    print(f"host: {info['machine']}, {info['cpu_count']} CPUs ({info['cpu_model']}), usable {info['usable_cpus']}, "
          f"{info['implementation']} {info['python']}, {info['date']}, rmm_mp {info['revision']}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{args.tokens} tokens per run after {args.warmup} untimed, {args.repeat} runs per configuration, "
          f"chunk {args.chunk} bytes; times are medians over the runs")
    print(f"\n{'platform':8} {'slice':>8} {'bytes':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
          f"{'CONTINUE/token':>15} {'IRQ/token':>10} {'INIT us':>8} {'CONT. us':>9} {'mean':>6} {'1st ms':>7}")
    figures = []
    for platform in platforms:
        for time_slice in (None, args.short_slice):
            runs = [run(platform, time_slice, args.tokens, args.warmup, args.chunk) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]
                   if isinstance(runs[0][k], (int, float)) and k != "time_slice"}
            med.update(platform=platform, time_slice=runs[0]["time_slice"], runs=runs)
            figures.append(med)
            shown = "default" if time_slice is None else f"{time_slice:,}"
            print(f"{platform:8} {shown:>8} {med['token_bytes']:6.0f} {med['p50_ns'] / 1e6:8.3f} "
                  f"{med['p99_ns'] / 1e6:8.3f} {med['mean_ns'] / 1e6:8.3f} "
                  f"{med['continue_calls']:8.0f} (max {max(r['continue_calls_max'] for r in runs)}) "
                  f"{med['irq_exits']:4.0f} (max {max(r['irq_exits_max'] for r in runs)}) "
                  f"{med['init_p50_ns'] / 1e3:8.1f} {med['continue_p50_ns'] / 1e3:9.1f} "
                  f"{med['continue_mean_ns'] / 1e3:6.1f} {med['first_token_ns'] / 1e6:7.2f}")
    print("\nslice: guest instructions per REC entry ('default' = the platform's rec_time_slice, 10,000); "
          "INIT us / CONT. us: the RMM's time per call, histogram p50 (mean: CONTINUE's mean); "
          "1st ms: the first token of a run, which includes fetching the RAK and the platform token from EL3")
    if args.json:
        write_json(args.json, {"benchmark": "bench_attest", "host": info, "options": vars(args),
                               "figures": figures})
    return 0


if __name__ == "__main__":
    tool_main(main)
