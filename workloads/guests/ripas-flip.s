// ripas-flip: private memory given back and taken again, MMIO, and a page shared with the host.
//
//  1. RSI_REALM_CONFIG; the shared bit is 1 << (ipa_width - 1) (computed by doubling).
//  2. Writes PATTERN into each page of RANGE (RIPAS RAM outside the image: the host faults the
//     pages in).
//  3. RSI_IPA_STATE_SET(RANGE, EMPTY), repeated from the returned progress until the top;
//     RSI_IPA_STATE_GET, repeated from each run's top, must then say EMPTY up to the top. The
//     host destroys the pages.
//  4. Through the unprotected alias of RANGE's first page (which the host backs with an NS page
//     on the first access): writes SHARED_PATTERN and reads it back.
//  5. MMIO through the host's device window (shared bit + DEVICE_OFFSET): writes CONSOLE_TEXT's
//     bytes to the console DATA register, rings the doorbell with DOORBELL_VALUE and reads the
//     ring count (1) and the last value back, writes and reads the scratch register, reads ID.
//  6. RSI_IPA_STATE_SET(RANGE, RAM) to the top; RSI_IPA_STATE_GET (likewise) must say RAM.
//  7. Reads RANGE's first page: zero (its old page was destroyed; the host faults in a new one).
//  8. REPORT and SYSTEM_OFF.
// REPORT code: 0 pass, else the step that failed (1..7); detail: the value that was wrong.

    .equ IMAGE_BASE, .
    .equ RANGE, IMAGE_BASE + 0x100000        // 1 MiB into RAM, outside the image
    .equ RANGE_PAGES, 4
    .equ PATTERN, 0x0123456789ABCDEF
    .equ SHARED_PATTERN, 0x5AA5F00DCAFE0001
    .equ DOORBELL_VALUE, 0x1234
    .equ SCRATCH_VALUE, 0xDEADBEEF
    .equ DEVICE_OFFSET, 0x09000000
    .equ DEVICE_ID, 0x524D4D50
    .equ CONSOLE_DATA, 0x0000
    .equ DOORBELL_RING, 0x1000
    .equ DOORBELL_LAST, 0x1008
    .equ DOORBELL_SCRATCH, 0x1010
    .equ DOORBELL_ID, 0x1018
    .equ RSI_REALM_CONFIG, 0xC4000196
    .equ RSI_IPA_STATE_SET, 0xC4000197
    .equ RSI_IPA_STATE_GET, 0xC4000198
    .equ RSI_HOST_CALL, 0xC4000199
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ RIPAS_EMPTY, 0
    .equ RIPAS_RAM, 1
    .equ HOST_REPORT, 3

start:
    mov x19, #1                     // step 1: the shared bit
    mov x20, #0
    mov x0, =RSI_REALM_CONFIG
    adr x1, config
    smc #0
    mov x20, x0
    cbnz x0, report
    adr x1, config
    ldr x2, [x1]
    sub x2, x2, #1
    mov x27, #1
shift:
    cbz x2, touch
    add x27, x27, x27
    sub x2, x2, #1
    b shift

touch:                              // step 2
    mov x19, #2
    mov x21, =RANGE
    mov x22, =PATTERN
    mov x23, #RANGE_PAGES
touch_loop:
    str x22, [x21]
    ldr x20, [x21]
    cmp x20, x22
    b.ne report
    add x21, x21, #0x1000
    sub x23, x23, #1
    cbnz x23, touch_loop

    mov x19, #3                     // step 3: EMPTY
    mov x3, #RIPAS_EMPTY
    bl set_range
    cbnz x0, report
    mov x3, #RIPAS_EMPTY
    bl check_range
    cbnz x0, report

    mov x19, #4                     // step 4: the shared alias
    mov x21, =RANGE
    orr x21, x21, x27
    mov x22, =SHARED_PATTERN
    str x22, [x21]
    ldr x20, [x21]
    cmp x20, x22
    b.ne report

    mov x19, #5                     // step 5: MMIO
    mov x24, =DEVICE_OFFSET
    add x24, x24, x27               // the device window
    adr x21, text
print:
    ldrb x2, [x21]
    cbz x2, printed
    strb x2, [x24, #CONSOLE_DATA]
    add x21, x21, #1
    b print
printed:
    mov x2, #DOORBELL_VALUE
    str x2, [x24, #DOORBELL_RING]
    ldr x20, [x24, #DOORBELL_RING]
    cmp x20, #1
    b.ne report
    ldr x20, [x24, #DOORBELL_LAST]
    cmp x20, #DOORBELL_VALUE
    b.ne report
    mov x2, =SCRATCH_VALUE
    str x2, [x24, #DOORBELL_SCRATCH]
    ldrw x20, [x24, #DOORBELL_SCRATCH]
    cmp x20, x2
    b.ne report
    ldrw x20, [x24, #DOORBELL_ID]
    mov x2, =DEVICE_ID
    cmp x20, x2
    b.ne report

    mov x19, #6                     // step 6: RAM again
    mov x3, #RIPAS_RAM
    bl set_range
    cbnz x0, report
    mov x3, #RIPAS_RAM
    bl check_range
    cbnz x0, report

    mov x19, #7                     // step 7: the old contents are gone
    mov x21, =RANGE
    ldr x20, [x21]
    cbnz x20, report
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

// set_range: RSI_IPA_STATE_SET(RANGE, RANGE + RANGE_PAGES pages, x3) from the progress the RMM
// returns until the top; x0 = 0, or 1 with x20 = the RSI status or 0x100 + the response.
// What must survive the call is kept in x17 and x18: an RSI command returns X1..X16 as its
// outputs or 0 (spec B1.2).
set_range:
    mov x17, x3
    mov x18, =RANGE + RANGE_PAGES * 0x1000
    mov x1, =RANGE
set_loop:
    mov x0, =RSI_IPA_STATE_SET
    mov x2, x18
    mov x3, x17
    mov x4, #0
    smc #0
    mov x20, x0
    cbnz x0, set_failed
    add x20, x2, #0x100
    cbnz x2, set_failed             // REJECT
    cmp x1, x18
    b.lo set_loop
    mov x0, #0
    ret
set_failed:
    mov x0, #1
    ret

// check_range: RSI_IPA_STATE_GET from RANGE to the top must return (SUCCESS, run top, x3) for
// every run; a run ends at the end of the last-level table of its base (B5.3.5: out_top may be
// less than the top asked for), so the guest asks again from each run's top. x0 = 0 or 1
// (x20 = what came back wrong: the status, the RIPAS, or a run top past the top).
check_range:
    mov x17, x3
    mov x1, =RANGE
check_loop:
    mov x0, =RSI_IPA_STATE_GET
    mov x2, =RANGE + RANGE_PAGES * 0x1000
    smc #0
    mov x20, x0
    cbnz x0, check_failed
    mov x20, x2
    cmp x2, x17
    b.ne check_failed
    mov x11, =RANGE + RANGE_PAGES * 0x1000
    cmp x1, x11
    b.lo check_loop                 // X1: where the run ended, the next base
    mov x20, x1
    b.ne check_failed
    mov x0, #0
    ret
check_failed:
    mov x0, #1
    ret

text:
    .asciz "ripas-flip ok\n"

    .align 4096
config:
    .zero 4096
hostcall:
    .zero 256
