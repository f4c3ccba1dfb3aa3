/* Local APIC access for the probes: xAPIC through its MMIO page (identity-
 * mapped, uncached, by boot.S), or x2APIC through MSRs when the VMM handed
 * over the CPU with x2APIC already enabled. */
#include "probe.h"

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_ENABLE (1u << 11)
#define APIC_BASE_X2APIC (1u << 10)

static int x2apic;
static volatile uint8_t *xapic_base = (volatile uint8_t *)0xfee00000;

int lapic_is_x2apic(void) { return x2apic; }

uint32_t lapic_read(uint32_t reg)
{
    if (x2apic)
        return (uint32_t)rdmsr(0x800 + (reg >> 4));
    return *(volatile uint32_t *)(xapic_base + reg);
}

void lapic_write(uint32_t reg, uint32_t value)
{
    if (x2apic)
        wrmsr(0x800 + (reg >> 4), value);
    else
        *(volatile uint32_t *)(xapic_base + reg) = value;
}

void lapic_enable(void)
{
    uint64_t base = rdmsr(MSR_APIC_BASE);
    if (!(base & APIC_BASE_ENABLE)) {
        base |= APIC_BASE_ENABLE;
        wrmsr(MSR_APIC_BASE, base);
    }
    x2apic = (base & APIC_BASE_X2APIC) != 0;
    if (!x2apic)
        xapic_base = (volatile uint8_t *)(uintptr_t)(base & 0xfffff000ull);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | 0xff); /* software-enabled, spurious vector 0xff */
}

/* Asks the CPU itself, so an AP may call it before (or without) lapic_enable(). */
uint32_t lapic_id(void)
{
    if (rdmsr(MSR_APIC_BASE) & APIC_BASE_X2APIC)
        return (uint32_t)rdmsr(0x802);
    return *(volatile uint32_t *)(xapic_base + LAPIC_ID) >> 24;
}

void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

int lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
    if (x2apic) {
        wrmsr(0x830, (uint64_t)apic_id << 32 | icr_low);
        return 0;
    }
    lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
    lapic_write(LAPIC_ICR_LOW, icr_low);
    for (int i = 0; i < 10000; i++) {
        if (!(lapic_read(LAPIC_ICR_LOW) & (1u << 12))) /* delivery status: idle */
            return 0;
        cpu_relax();
    }
    return -1;
}
