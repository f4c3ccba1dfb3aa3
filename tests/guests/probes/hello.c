/* Probe "hello": the smallest end-to-end check of the boot path (PVH or 64-bit
 * entry), the serial console, a round trip to CPL 3 and back, and the
 * debug-exit port. */
#include "layout.h"
#include "probe.h"

const char probe_name[] = "hello";

static uint64_t at_cpl3(uint64_t x) { return x * 3 + current_cpl(); }

int probe_main(void)
{
    printf("hello from probe guest\n");
    uint64_t r = run_at_cpl3(at_cpl3, 14);
    if (r != 45)
        probe_fail("ring-3 call returned %lu, expected 45", r);
    probe_pass("boot=%s cpl3=ok (back via %s) cmdline=\"%s\"",
               boot_kind == BOOT_KIND_PVH ? "pvh" : "entry64",
               user_leave_by_fault ? "fault" : "int 0x80", cmdline());
}
