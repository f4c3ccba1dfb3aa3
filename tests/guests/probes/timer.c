/* Probe "timer": programs the local APIC timer in periodic mode and counts its
 * interrupts, first while the CPU runs at CPL 3 (interrupt -> ring-0 handler
 * through the TSS -> iretq back), then while it sits in `hlt` at ring 0.
 * Passes when `ticks=N` (default 100) interrupts arrive, half in each phase.
 * Writes 0x30 / 0x31 to the boot-timer port when the timer starts / after
 * the last tick, so the VMM's log gives the wall-clock time of the n ticks. */
#include "probe.h"

const char probe_name[] = "timer";

#define TIMER_VECTOR 0x40

static volatile uint64_t ticks;

static void on_timer(struct trap_frame *f)
{
    (void)f;
    ticks++;
    lapic_eoi();
}

/* CPL 3: spin until the tick count reaches arg, or give up after ~5 s. */
static uint64_t wait_ticks_user(uint64_t target)
{
    uint64_t deadline = rdtsc() + 5000 * tsc_per_ms();
    while (ticks < target)
        if ((int64_t)(rdtsc() - deadline) > 0)
            return 1;
    return 0;
}

int probe_main(void)
{
    uint64_t n = cmdline_u64("ticks", 100), period_us = cmdline_u64("period_us", 1000);
    if (n < 2)
        n = 2;
    tsc_per_ms(); /* calibrate at ring 0 (may use the PIT) before timing anything */
    irq_register(TIMER_VECTOR, on_timer);
    lapic_enable();
    /* Divide by 16. KVM and QEMU clock the APIC timer at 1 GHz, so one count is 16 ns. */
    lapic_write(LAPIC_TIMER_DIVIDE, 0x3);
    lapic_write(LAPIC_LVT_TIMER, TIMER_VECTOR | (1u << 17)); /* periodic */
    boot_timer_mark(0x30); /* the VMM's log brackets the n ticks in wall-clock time */
    uint64_t t0 = rdtsc();
    lapic_write(LAPIC_TIMER_INITIAL, (uint32_t)(period_us * 1000 / 16));

    if (run_at_cpl3(wait_ticks_user, n / 2)) {
        lapic_write(LAPIC_LVT_TIMER, 1u << 16);
        probe_fail("only %lu of %lu timer interrupts at CPL3 within 5 s (LVT 0x%x, current count %u)",
                   ticks, n / 2, lapic_read(LAPIC_LVT_TIMER), lapic_read(LAPIC_TIMER_CURRENT));
    }
    uint64_t user_ticks = ticks, halts = 0;
    while (ticks < n) {
        halt_once();
        halts++;
    }
    uint64_t elapsed = rdtsc() - t0;
    boot_timer_mark(0x31);
    lapic_write(LAPIC_LVT_TIMER, 1u << 16); /* masked */
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    uint64_t us = elapsed * 1000 / tsc_per_ms();
    probe_pass("%lu interrupts (%lu at CPL3, %lu in hlt, %lu halts), %lu us per tick (programmed %lu us; tsc %lu kHz from %s)",
               ticks, user_ticks, ticks - user_ticks, halts, us / ticks, period_us, tsc_per_ms(),
               tsc_source());
}
