/* Probe "smp": counts the processors in the MADT and starts every application
 * processor with INIT-SIPI-SIPI through a real-mode trampoline below 1 MiB.
 * Each AP goes real mode -> protected mode -> long mode (boot.S), then checks
 * in here: it records its APIC id and bumps an atomic counter. Passes when all
 * APs check in, each within 2 s, and (with `cpus=N`) the MADT lists N CPUs. */
#include "layout.h"
#include "probe.h"

const char probe_name[] = "smp";

#define MAX_CPUS 64
#define AP_STACK_SIZE 8192

static uint8_t ap_stacks[MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(16)));
static volatile uint32_t slots_taken;
static volatile uint32_t checked_in;
static volatile uint32_t checkin_ids[MAX_CPUS];

/* The AP takes a slot, writes its id there, and only then counts itself in:
 * the BSP reads the id as soon as the count moves, so the id must be there first. */
void ap_main(void)
{
    uint32_t id = lapic_id();
    uint32_t slot = __atomic_fetch_add(&slots_taken, 1, __ATOMIC_SEQ_CST);
    if (slot < MAX_CPUS)
        checkin_ids[slot] = id;
    __atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
    halt_forever();
}

int probe_main(void)
{
    uint32_t ids[MAX_CPUS];
    int cpus = acpi_madt_cpus(ids, MAX_CPUS);
    if (cpus < 0)
        probe_fail("no MADT (RSDP %s)", acpi_find_rsdp() ? "found" : "not found");
    if (cpus > MAX_CPUS)
        probe_fail("MADT lists %d CPUs, the probe handles %d", cpus, MAX_CPUS);
    if (cmdline_has("cpus") && (uint64_t)cpus != cmdline_u64("cpus", 0))
        probe_fail("MADT lists %d CPUs, expected cpus=%lu", cpus, cmdline_u64("cpus", 0));

    lapic_enable();
    uint32_t bsp = lapic_id();
    int bsp_listed = 0;
    for (int i = 0; i < cpus; i++)
        bsp_listed |= ids[i] == bsp;
    if (!bsp_listed)
        probe_fail("the BSP's APIC id %u is not in the MADT", bsp);

    size_t tramp_len = (size_t)(ap_trampoline_end - ap_trampoline_start);
    if (cpus > 1) {
        if (!memmap_is_ram(AP_TRAMPOLINE_ADDR, 4096))
            probe_fail("trampoline page 0x%x is not RAM in the memmap", AP_TRAMPOLINE_ADDR);
        memcpy((void *)AP_TRAMPOLINE_ADDR, ap_trampoline_start, tramp_len);
    }
    uint64_t per_ms = tsc_per_ms();

    int started = 0;
    for (int i = 0; i < cpus; i++) {
        if (ids[i] == bsp)
            continue;
        uint32_t before = checked_in;
        ap_stack_top = (uint64_t)(uintptr_t)(ap_stacks[started + 1] + AP_STACK_SIZE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        uint64_t t0 = rdtsc();
        if (lapic_send_ipi(ids[i], 0x4500)) /* INIT, level assert */
            probe_fail("INIT to APIC %u not delivered", ids[i]);
        delay_us(10000);
        for (int sipi = 0; sipi < 2 && checked_in == before; sipi++) {
            if (lapic_send_ipi(ids[i], 0x4600 | (AP_TRAMPOLINE_ADDR >> 12))) /* SIPI */
                probe_fail("SIPI to APIC %u not delivered", ids[i]);
            delay_us(200);
        }
        uint64_t deadline = t0 + 2000 * per_ms;
        while (checked_in == before && (int64_t)(rdtsc() - deadline) < 0)
            cpu_relax();
        if (checked_in == before)
            probe_fail("AP with APIC id %u did not check in within 2 s (%u of %d CPUs up)", ids[i],
                       checked_in + 1, cpus);
        uint32_t got = checkin_ids[checked_in - 1];
        if (got != ids[i])
            probe_fail("started APIC id %u but APIC id %u checked in", ids[i], got);
        printf("smp: AP %u up after %lu us\n", got, (rdtsc() - t0) * 1000 / per_ms);
        started++;
    }
    char list[160];
    int n = snprintf(list, sizeof list, "%u", bsp);
    for (uint32_t i = 0; i < checked_in && n < (int)sizeof list; i++)
        n += snprintf(list + n, sizeof list - n, ",%u", checkin_ids[i]);
    probe_pass("%u of %d CPUs online (APIC ids %s)", checked_in + 1, cpus, list);
}
