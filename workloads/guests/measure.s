// measure: extend REM1 and read it back, compared in the realm with what the host computed.
//
// RSI_MEASUREMENT_EXTEND(REM_INDEX, SIZE, VALUE0..7 in X3..X10), then RSI_MEASUREMENT_READ
// (REM_INDEX): X1..X8 must equal EXPECTED0..7, the REM the host computed, H(zeros || value)
// zero padded to 64 bytes, and placed in this image (the `expected` table). The defaults below
// are SHA-256 of the default value for a fresh REM; for another value or a SHA-512 realm the
// host recomputes them (rmm_mp.host.guests.measure_constants) and load_guest rewrites these
// lines. REPORT code: 0 pass; 1 EXTEND failed; 2 READ failed; 3..10 word 0..7 of the
// measurement differs (detail: the word read). Then SYSTEM_OFF.

    .equ REM_INDEX, 1
    .equ SIZE, 64
    .equ VALUE0, 0x6d20706d2d6d6d72         // "rmm-mp measure guest: REM1 += this 64-byte value, then read back"
    .equ VALUE1, 0x6720657275736165
    .equ VALUE2, 0x4552203a74736575
    .equ VALUE3, 0x6874203d2b20314d
    .equ VALUE4, 0x79622d3436207369
    .equ VALUE5, 0x65756c6176206574
    .equ VALUE6, 0x72206e656874202c
    .equ VALUE7, 0x6b63616220646165
    .equ EXPECTED0, 0xc73ad445693b29e1       // SHA-256(32 zero bytes || value), little-endian words
    .equ EXPECTED1, 0x81b906a64b759c3f
    .equ EXPECTED2, 0x2e1e28ebb78a0b7d
    .equ EXPECTED3, 0x7a0ea367c81fdd18
    .equ EXPECTED4, 0
    .equ EXPECTED5, 0
    .equ EXPECTED6, 0
    .equ EXPECTED7, 0
    .equ RSI_MEASUREMENT_READ, 0xC4000192
    .equ RSI_MEASUREMENT_EXTEND, 0xC4000193
    .equ RSI_HOST_CALL, 0xC4000199
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ HOST_REPORT, 3

start:
    mov x19, #1
    mov x20, #0
    mov x0, =RSI_MEASUREMENT_EXTEND
    mov x1, #REM_INDEX
    mov x2, #SIZE
    mov x3, =VALUE0
    mov x4, =VALUE1
    mov x5, =VALUE2
    mov x6, =VALUE3
    mov x7, =VALUE4
    mov x8, =VALUE5
    mov x9, =VALUE6
    mov x10, =VALUE7
    smc #0
    mov x20, x0
    cbnz x0, report

    mov x19, #2
    mov x0, =RSI_MEASUREMENT_READ
    mov x1, #REM_INDEX
    smc #0
    mov x20, x0
    cbnz x0, report

    adr x11, expected
    mov x19, #3
    mov x20, x1
    ldr x12, [x11]
    cmp x1, x12
    b.ne report
    mov x19, #4
    mov x20, x2
    ldr x12, [x11, #8]
    cmp x2, x12
    b.ne report
    mov x19, #5
    mov x20, x3
    ldr x12, [x11, #16]
    cmp x3, x12
    b.ne report
    mov x19, #6
    mov x20, x4
    ldr x12, [x11, #24]
    cmp x4, x12
    b.ne report
    mov x19, #7
    mov x20, x5
    ldr x12, [x11, #32]
    cmp x5, x12
    b.ne report
    mov x19, #8
    mov x20, x6
    ldr x12, [x11, #40]
    cmp x6, x12
    b.ne report
    mov x19, #9
    mov x20, x7
    ldr x12, [x11, #48]
    cmp x7, x12
    b.ne report
    mov x19, #10
    mov x20, x8
    ldr x12, [x11, #56]
    cmp x8, x12
    b.ne report
    mov x19, #0
    mov x20, #0

report:
    adr x1, hostcall
    mov x2, #HOST_REPORT
    strh x2, [x1]
    str x19, [x1, #8]
    str x20, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .

    .align 8
expected:                           // the measurement the host expects, little-endian words
    .quad EXPECTED0, EXPECTED1, EXPECTED2, EXPECTED3, EXPECTED4, EXPECTED5, EXPECTED6, EXPECTED7

    .align 256
hostcall:
    .zero 256
