/* Probe "idle-after-touch": at CPL 3 writes one word in every 4 KiB page of
 * RAM (writing back what it read, so the probe's own pages survive), reports,
 * writes 0x20 to the boot-timer port and halts forever with interrupts off:
 * the VMM process then holds all guest RAM and does nothing, for RSS
 * measurements. */
#include "probe.h"

const char probe_name[] = "idle-after-touch";

static uint64_t touch_all(uint64_t unused)
{
    (void)unused;
    uint64_t pages = 0;
    for (unsigned i = 0; i < memmap_count; i++) {
        if (memmap[i].type != MEMMAP_RAM)
            continue;
        uint64_t start = (memmap[i].addr + 4095) & ~4095ull;
        uint64_t end = (memmap[i].addr + memmap[i].size) & ~4095ull;
        for (uint64_t a = start; a < end; a += 4096) {
            volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)a;
            *p = *p;
            pages++;
        }
    }
    return pages;
}

int probe_main(void)
{
    uint64_t pages = run_at_cpl3(touch_all, 0);
    probe_report_pass("touched %lu pages (%lu MiB); halting", pages, pages >> 8);
    boot_timer_mark(0x20);
    halt_forever();
}
