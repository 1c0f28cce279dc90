// smp-boot: REC 0 starts every secondary REC with PSCI CPU_ON and waits until they are all off.
//
// REC 0 (the only runnable REC at activation) asks the host how many vCPUs it runs (QUERY 0,
// at most MAX_RECS are used), CPU_ONs RECs 1..N-1 at `secondary` with the REC index as context
// id, polls AFFINITY_INFO for each until it reports OFF, checks every secondary's slot, REPORTs
// and calls SYSTEM_OFF. REC i's MPIDR is Aff1 = i / 16, Aff0 = i % 16 (the host's REC_CREATE
// MPIDRs, as KVM assigns them). Each secondary writes a pattern into its own page (PAGES +
// index * 4 KiB, RIPAS RAM outside the image, so the host faults it in), reads it back, LOGs
// (index, the index its MPIDR names, value read), writes SLOT_MAGIC + index into its slot (no
// atomics in the ISA: one slot per REC), and calls CPU_OFF. Every REC has its own RsiHostCall (hostcalls + index * 256).
// REPORT code: 0 pass; 1 the QUERY host call failed; 2 a CPU_ON failed (detail: its X0);
// 3 a slot is wrong (detail: the REC index); detail of a pass: N.

    .equ IMAGE_BASE, .
    .equ PAGES, IMAGE_BASE + 0x100000       // per-secondary pages, 1 MiB into RAM
    .equ MAX_RECS, 32                       // the run queue's limit of vCPUs per realm
    .equ SLOT_MAGIC, 0x5EC0DA7A00000000
    .equ PATTERN, 0x0DDBA11000000000
    .equ WORK, 0                            // loop iterations (3 instructions each) a secondary
                                            // spends before its page: time slices, IRQ exits
    .equ RSI_HOST_CALL, 0xC4000199
    .equ PSCI_CPU_OFF, 0x84000002
    .equ PSCI_CPU_ON, 0xC4000003
    .equ PSCI_AFFINITY_INFO, 0xC4000004
    .equ PSCI_SYSTEM_OFF, 0x84000008
    .equ AFFINITY_OFF, 1
    .equ HOST_LOG, 1
    .equ HOST_QUERY, 2
    .equ HOST_REPORT, 3
    .equ QUERY_VCPUS, 0

start:
    mov x19, #1
    mov x20, #0
    adr x1, hostcalls               // REC 0's RsiHostCall
    mov x2, #HOST_QUERY
    strh x2, [x1]
    mov x2, #QUERY_VCPUS
    str x2, [x1, #8]
    mov x0, =RSI_HOST_CALL
    smc #0
    cbnz x0, report
    adr x1, hostcalls
    ldr x20, [x1, #8]               // N: the vCPUs the host runs
    cmp x20, #MAX_RECS
    b.ls boot
    mov x20, #MAX_RECS

boot:
    mov x19, #2
    mov x21, #1
on_loop:
    cmp x21, x20
    b.hs wait
    mov x0, =PSCI_CPU_ON
    bl mpidr_of_x21                 // x1: the target's MPIDR
    adr x2, secondary               // entry point
    mov x3, x21                     // context id: the REC index
    smc #0
    cbnz x0, cpu_on_failed
    add x21, x21, #1
    b on_loop
cpu_on_failed:
    mov x20, x0
    b report

wait:
    mov x21, #1
wait_loop:
    cmp x21, x20
    b.hs check
poll:
    mov x0, =PSCI_AFFINITY_INFO
    bl mpidr_of_x21
    mov x2, #0
    smc #0
    cmp x0, #AFFINITY_OFF
    b.ne poll
    add x21, x21, #1
    b wait_loop

check:
    mov x19, #3
    mov x21, #1
    adr x22, slots
check_loop:
    cmp x21, x20
    b.hs all_good
    lsl x23, x21, #3
    add x23, x22, x23
    ldr x24, [x23]
    mov x25, =SLOT_MAGIC
    add x25, x25, x21
    cmp x24, x25
    b.ne slot_wrong
    add x21, x21, #1
    b check_loop
slot_wrong:
    mov x20, x21
    b report
all_good:
    mov x19, #0

report:
    adr x1, hostcalls
    mov x2, #HOST_REPORT
    strh x2, [x1]
    str x19, [x1, #8]
    str x20, [x1, #16]
    mov x0, =RSI_HOST_CALL
    smc #0
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    b .

secondary:                          // X0 = context id = this REC's index
    mov x19, x0
    mov x9, =WORK
work:
    cbz x9, worked
    sub x9, x9, #1
    b work
worked:
    mrs x20, mpidr
    and x9, x20, #0xF               // Aff0
    lsr x20, x20, #8
    and x20, x20, #0xFF             // Aff1
    lsl x20, x20, #4
    orr x20, x20, x9                // the REC index the MPIDR names
    mov x21, =PAGES
    lsl x22, x19, #12
    add x21, x21, x22               // this REC's page
    mov x23, =PATTERN
    add x23, x23, x19
    str x23, [x21]
    ldr x24, [x21]
    adr x1, hostcalls
    lsl x2, x19, #8
    add x1, x1, x2                  // this REC's RsiHostCall
    mov x2, #HOST_LOG
    strh x2, [x1]
    str x19, [x1, #8]
    str x20, [x1, #16]
    str x24, [x1, #24]
    mov x0, =RSI_HOST_CALL
    smc #0
    adr x25, slots
    lsl x2, x19, #3
    add x25, x25, x2                // this REC's slot
    cmp x24, x23
    b.ne bad_page
    cmp x20, x19
    b.ne bad_page
    mov x26, =SLOT_MAGIC
    add x26, x26, x19
    str x26, [x25]
    b off
bad_page:
    str x24, [x25]
off:
    mov x0, =PSCI_CPU_OFF
    smc #0
    b off                           // CPU_OFF does not return

mpidr_of_x21:                       // x1 = MPIDR of REC x21: Aff1 = x21 / 16, Aff0 = x21 % 16
    and x1, x21, #0xF
    lsr x9, x21, #4
    lsl x9, x9, #8
    orr x1, x1, x9
    ret

    .align 4096
slots:                              // one u64 per REC
    .zero 8 * MAX_RECS
    .align 256
hostcalls:                          // one RsiHostCall per REC
    .zero 256 * MAX_RECS
