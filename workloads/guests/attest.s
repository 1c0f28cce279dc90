// attest: ask the RMM for a CCA attestation token and hand it to the host.
//
// DEN0137 1.0-rel0 A7.2.2, B5.3.1, B5.3.2; rsi-attest.md 1.7. In order:
//
// 1. RSI_REALM_CONFIG into the `config` page of this image: the IPA width gives the shared bit
//    (2^(ipa_width-1)), the lowest unprotected IPA.
// 2. Only if EXTEND_REM is 1..4: RSI_MEASUREMENT_EXTEND(EXTEND_REM, EXTEND_SIZE, EXTEND0..7 in
//    X3..X10), so that the token's REMs show it. EXTEND_REM 0 skips this step.
// 3. RSI_ATTESTATION_TOKEN_INIT with the challenge from the `challenge` table of this image,
//    CHALLENGE0..7 as X1..X8 (bytes 8n..8n+7 of the challenge, little-endian, in X(n+1)): the host
//    placed it, so it knows what the token must carry. X1 back = the token's upper bound, INIT_SIZE.
// 4. RSI_ATTESTATION_TOKEN_CONTINUE in a loop; the token goes to the protected buffer that starts
//    BUFFER_OFFSET + OFFSET bytes after the image's first byte (OFFSET 0..4095 puts its start
//    inside the first buffer granule). Each call names the granule holding the next byte (X1),
//    the offset of that byte in it (X2) and min(CHUNK, bytes left in that granule) (X3); X1 back
//    is the number of bytes written. RSI_INCOMPLETE: call again (also after an IRQ exit taken
//    while the RMM signs, when X1 is 0); once a granule is full the next call names the next
//    granule. RSI_SUCCESS: the last byte is written. The buffer lies in RAM outside the image,
//    so the host faults its pages in when the RMM reports them unmapped (an emulated stage-2
//    data abort exit; the call is repeated).
// 5. The token is copied, byte by byte, to the unprotected alias (shared bit | IPA) of the IPA
//    SHARED_OFFSET bytes after the image's first byte. The host backs that range with NS pages
//    (RTT_MAP_UNPROTECTED) when the realm first touches it: the rmm_mp host does so for the
//    unprotected alias of the realm's RAM (rmm_mp/host/exits.py).
// 6. Host call LOG (imm 1) tells the host where the token is:
//        X0 = TOKEN_TAG ("TOKEN", 0x4e454b4f54)
//        X1 = unprotected IPA of the copy (shared bit | (image start + SHARED_OFFSET))
//        X2 = token length in bytes
//        X3 = protected IPA where RSI_ATTESTATION_TOKEN_CONTINUE wrote its first byte
//    then REPORT (imm 3) with code 0 and detail = the token length, then PSCI SYSTEM_OFF.
//
// REPORT codes (detail in brackets): 0 pass [token length]; 1 REALM_CONFIG failed [X0];
// 2 MEASUREMENT_EXTEND failed [X0]; 3 TOKEN_INIT failed [X0]; 4 TOKEN_CONTINUE failed [X0];
// 5 the token did not fit the INIT_SIZE bytes INIT promised [bytes received]; 6 the LOG host
// call failed [X0]. After failures 1 to 5 no LOG is made.
//
// Constants (`.equ`, rewritten by rmm_mp.host.load_guest): CHALLENGE0..7; EXTEND_REM (0, or
// 1..4), EXTEND_SIZE (0..64), EXTEND0..7; CHUNK (1..4096 bytes per call; 0 would never
// finish); OFFSET (0..4095); BUFFER_OFFSET (granule aligned) and SHARED_OFFSET (any byte: the
// copy may start inside a page and cross into the next), with room for OFFSET + 4096 bytes and
// for the token inside the realm's RAM (the defaults need 2 MiB + 4 KiB of RAM after the image's
// start). Registers: x19 report code, x20 detail, x21 shared bit,
// x22 token start, x23 next byte, x24 end of the promised buffer, x25 CHUNK, x26 the shared
// copy, x27 token length.

    .equ CHALLENGE0, 0x6120706d2d6d6d72     // "rmm-mp attest guest: 64-byte challenge the host put in its image"
    .equ CHALLENGE1, 0x7567207473657474
    .equ CHALLENGE2, 0x2d3436203a747365
    .equ CHALLENGE3, 0x6168632065747962
    .equ CHALLENGE4, 0x742065676e656c6c
    .equ CHALLENGE5, 0x2074736f68206568
    .equ CHALLENGE6, 0x69206e6920747570
    .equ CHALLENGE7, 0x6567616d69207374
    .equ EXTEND_REM, 0
    .equ EXTEND_SIZE, 64
    .equ EXTEND0, 0x6720747365747461        // "attest guest: extends a REM with this before it asks for a token"
    .equ EXTEND1, 0x7865203a74736575
    .equ EXTEND2, 0x20612073646e6574
    .equ EXTEND3, 0x68746977204d4552
    .equ EXTEND4, 0x6562207369687420
    .equ EXTEND5, 0x2074692065726f66
    .equ EXTEND6, 0x726f6620736b7361
    .equ EXTEND7, 0x6e656b6f74206120
    .equ CHUNK, 512
    .equ OFFSET, 0xC00                      // the token crosses into the buffer's second granule
    .equ BUFFER_OFFSET, 0x10_0000
    .equ SHARED_OFFSET, 0x20_0000

    .equ RSI_ATTESTATION_TOKEN_INIT, 0xC4000194
    .equ RSI_ATTESTATION_TOKEN_CONTINUE, 0xC4000195
    .equ RSI_MEASUREMENT_EXTEND, 0xC4000193
    .equ RSI_REALM_CONFIG, 0xC4000196
    .equ RSI_HOST_CALL, 0xC4000199
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ RSI_INCOMPLETE, 3
    .equ HOST_LOG, 1
    .equ HOST_REPORT, 3
    .equ TOKEN_TAG, 0x4e454b4f54            // "TOKEN"

start:
    mov x19, #1
    mov x0, =RSI_REALM_CONFIG
    adr x1, config
    smc #0
    mov x20, x0
    cbnz x0, report
    adr x1, config
    ldr x2, [x1]                    // ipa_width
    sub x2, x2, #1
    mov x21, #1                     // 1 << (ipa_width - 1); lsl takes immediate shifts only
shared_bit:
    cbz x2, extend
    add x21, x21, x21
    sub x2, x2, #1
    b shared_bit

extend:
    mov x19, #2
    mov x1, #EXTEND_REM
    cbz x1, init
    mov x2, #EXTEND_SIZE
    adr x11, extend_value
    ldr x3, [x11]
    ldr x4, [x11, #8]
    ldr x5, [x11, #16]
    ldr x6, [x11, #24]
    ldr x7, [x11, #32]
    ldr x8, [x11, #40]
    ldr x9, [x11, #48]
    ldr x10, [x11, #56]
    mov x0, =RSI_MEASUREMENT_EXTEND
    smc #0
    mov x20, x0
    cbnz x0, report

init:
    mov x19, #3
    adr x11, challenge
    ldr x1, [x11]
    ldr x2, [x11, #8]
    ldr x3, [x11, #16]
    ldr x4, [x11, #24]
    ldr x5, [x11, #32]
    ldr x6, [x11, #40]
    ldr x7, [x11, #48]
    ldr x8, [x11, #56]
    mov x0, =RSI_ATTESTATION_TOKEN_INIT
    smc #0
    mov x20, x0
    cbnz x0, report
    adr x22, start
    mov x9, =BUFFER_OFFSET + OFFSET
    add x22, x22, x9                // the token's first byte
    mov x23, x22
    add x24, x22, x1                // INIT_SIZE bytes from there
    mov x25, =CHUNK

    mov x19, #4
next:
    and x1, x23, #-4096             // the granule of the next byte
    and x2, x23, #4095              // its offset there
    mov x3, #4096
    sub x3, x3, x2                  // room left in the granule
    cmp x3, x25
    b.ls sized
    mov x3, x25
sized:
    mov x0, =RSI_ATTESTATION_TOKEN_CONTINUE
continue_call:
    smc #0
    add x23, x23, x1
    cmp x0, #RSI_INCOMPLETE
    b.ne finished
    cmp x23, x24
    b.lo next
    mov x19, #5                     // more to come, but the promised buffer is full
    sub x20, x23, x22
    b report
finished:
    mov x20, x0
    cbnz x0, report

    adr x9, start                   // copy to the shared alias of start + SHARED_OFFSET
    mov x10, =SHARED_OFFSET
    add x9, x9, x10
    orr x26, x9, x21
    sub x27, x23, x22               // token length
    mov x10, #0
copy:
    cmp x10, x27
    b.hs copied
    add x11, x22, x10
    ldrb x12, [x11]
    add x11, x26, x10
    strb x12, [x11]
    add x10, x10, #1
    b copy

copied:
    mov x19, #6
    adr x1, hostcall
    mov x2, #HOST_LOG
    strh x2, [x1]
    mov x2, =TOKEN_TAG
    str x2, [x1, #8]
    str x26, [x1, #16]
    str x27, [x1, #24]
    str x22, [x1, #32]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x20, x0
    cbnz x0, report
    mov x19, #0
    mov x20, x27

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
challenge:                          // the challenge the host placed, little-endian words
    .quad CHALLENGE0, CHALLENGE1, CHALLENGE2, CHALLENGE3, CHALLENGE4, CHALLENGE5, CHALLENGE6, CHALLENGE7
extend_value:                       // the value of the optional MEASUREMENT_EXTEND
    .quad EXTEND0, EXTEND1, EXTEND2, EXTEND3, EXTEND4, EXTEND5, EXTEND6, EXTEND7

    .align 256
hostcall:
    .zero 256

    .align 4096
config:                             // RsiRealmConfig
    .zero 4096
