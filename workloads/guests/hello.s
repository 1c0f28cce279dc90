// hello: the smallest realm that does something.
//
// RSI_VERSION (asks for RSI 1.0), RSI_REALM_CONFIG (into a page of its image), one LOG host
// call with what it learnt, one REPORT host call with the outcome, then PSCI SYSTEM_OFF.
// REPORT code: 0 pass; 1 RSI_VERSION failed or is not 1.0; 2 REALM_CONFIG failed; 3 the LOG
// host call failed. LOG values: X0 = RSI version, X1 = IPA width, X2 = hash algorithm.
// Host-call and device conventions: rmm_mp/host/devices.py (workloads/guests/README.md).

    .equ RSI_VERSION, 0xC4000190
    .equ RSI_REALM_CONFIG, 0xC4000196
    .equ RSI_HOST_CALL, 0xC4000199
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ RSI_ABI_1_0, 0x10000
    .equ HOST_LOG, 1
    .equ HOST_REPORT, 3

start:
    mov x19, #1                     // failure code while RSI_VERSION is checked
    mov x20, #0
    mov x0, =RSI_VERSION
    mov x1, =RSI_ABI_1_0
    smc #0
    cbnz x0, report
    mov x2, =RSI_ABI_1_0
    cmp x1, x2                      // lower revision
    b.ne report

    mov x19, #2
    mov x0, =RSI_REALM_CONFIG
    adr x1, config
    smc #0
    cbnz x0, report
    adr x1, config
    ldr x20, [x1]                   // RsiRealmConfig.ipa_width
    ldrb x21, [x1, #8]              // RsiRealmConfig.hash_algo

    mov x19, #3
    adr x1, hostcall
    mov x2, #HOST_LOG
    strh x2, [x1]                   // RsiHostCall.imm
    mov x2, =RSI_ABI_1_0
    str x2, [x1, #8]                // gprs[0]
    str x20, [x1, #16]              // gprs[1]
    str x21, [x1, #24]              // gprs[2]
    mov x0, =RSI_HOST_CALL
    smc #0
    cbnz x0, report
    mov x19, #0                     // pass

report:
    adr x1, hostcall
    mov x2, #HOST_REPORT
    strh x2, [x1]
    str x19, [x1, #8]               // gprs[0] = result code
    str x20, [x1, #16]              // gprs[1] = detail: the IPA width
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .                             // SYSTEM_OFF does not return

    .align 4096
config:                             // RsiRealmConfig (4 KiB aligned)
    .zero 4096
hostcall:                           // RsiHostCall (256 bytes aligned)
    .zero 256
