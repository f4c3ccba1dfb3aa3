/* Probe "memory": at CPL 3, writes and verifies an address-dependent pattern
 * (then its complement) over every byte of RAM in the memmap except what the
 * probe itself occupies. Passes when (a) the tested total is within a few MiB
 * of the RAM the memmap reports, (b) that RAM agrees with `mem_mib=N` when
 * given, and (c) no ACPI table the probe can find lies in RAM. */
#include "probe.h"

const char probe_name[] = "memory";

#define MIB ((uint64_t)1 << 20)
#define SLACK_MIB 4

struct range {
    uint64_t start, end;
};

static struct range ranges[MEMMAP_MAX * 2];
static unsigned range_count;

/* Filled in at CPL 3 when a word does not read back. */
static volatile uint64_t bad_addr, bad_expected, bad_seen;

static inline uint64_t pattern(uint64_t addr, uint64_t salt)
{
    uint64_t x = (addr ^ salt) * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

static uint64_t test_ranges(uint64_t salt)
{
    for (unsigned r = 0; r < range_count; r++) {
        volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)ranges[r].start;
        volatile uint64_t *end = (volatile uint64_t *)(uintptr_t)ranges[r].end;
        for (volatile uint64_t *q = p; q < end; q++)
            *q = pattern((uint64_t)(uintptr_t)q, salt);
    }
    for (unsigned r = 0; r < range_count; r++) {
        volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)ranges[r].start;
        volatile uint64_t *end = (volatile uint64_t *)(uintptr_t)ranges[r].end;
        for (volatile uint64_t *q = p; q < end; q++) {
            uint64_t want = pattern((uint64_t)(uintptr_t)q, salt), got = *q;
            if (got != want) {
                bad_addr = (uint64_t)(uintptr_t)q;
                bad_expected = want;
                bad_seen = got;
                return 1;
            }
        }
    }
    return 0;
}

static void add_range(uint64_t start, uint64_t end)
{
    start = (start + 7) & ~7ull;
    end &= ~7ull;
    if (end > start && range_count < sizeof ranges / sizeof ranges[0])
        ranges[range_count++] = (struct range){start, end};
}

static int in_ram(uint64_t addr)
{
    return addr && memmap_is_ram(addr, 1);
}

int probe_main(void)
{
    uint64_t ram = memmap_ram_bytes();
    uint64_t skip_start = (uint64_t)(uintptr_t)__image_start, skip_end = probe_used_end();

    /* ACPI tables must not sit in memory the OS may reuse. Checked before the
     * test overwrites RAM. */
    uint64_t rsdp = acpi_find_rsdp(), madt = acpi_find_table("APIC");
    if (in_ram(rsdp))
        probe_fail("RSDP at 0x%lx lies in a RAM memmap entry", rsdp);
    if (in_ram(madt))
        probe_fail("MADT at 0x%lx lies in a RAM memmap entry", madt);

    for (unsigned i = 0; i < memmap_count; i++) {
        printf("memmap: 0x%016lx-0x%016lx type %u\n", memmap[i].addr,
               memmap[i].addr + memmap[i].size - 1, memmap[i].type);
        if (memmap[i].type != MEMMAP_RAM)
            continue;
        uint64_t s = memmap[i].addr, e = memmap[i].addr + memmap[i].size;
        if (e <= skip_start || s >= skip_end) {
            add_range(s, e);
        } else {
            add_range(s, skip_start);
            add_range(skip_end, e);
        }
    }
    uint64_t tested = 0;
    for (unsigned r = 0; r < range_count; r++)
        tested += ranges[r].end - ranges[r].start;

    uint64_t t0 = rdtsc();
    for (uint64_t salt = 0; salt < 2; salt++)
        if (run_at_cpl3(test_ranges, salt ? ~0ull : 0x5a5a5a5a5a5a5a5aull))
            probe_fail("mismatch at 0x%lx: wrote 0x%016lx, read 0x%016lx", bad_addr,
                       bad_expected, bad_seen);
    uint64_t cycles = rdtsc() - t0;

    if (ram - tested > SLACK_MIB * MIB)
        probe_fail("tested %lu KiB but the memmap reports %lu KiB of RAM", tested >> 10, ram >> 10);
    if (cmdline_has("mem_mib")) {
        uint64_t want = cmdline_u64("mem_mib", 0) * MIB;
        if (ram > want || want - ram > SLACK_MIB * MIB)
            probe_fail("memmap reports %lu KiB of RAM, mem_mib=%lu asks for %lu KiB", ram >> 10,
                       want / MIB, want >> 10);
    }
    probe_pass("tested %lu MiB of %lu MiB RAM (%lu KiB), 2 patterns at CPL3, %lu Mcycles",
               tested / MIB, (ram + MIB / 2) / MIB, ram >> 10, cycles / 1000000);
}
