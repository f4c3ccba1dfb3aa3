/* Probe "exit-code": exits through the debug-exit port with the code given as
 * `exit=N` on the command line (default 42), so a test can check that the VMM
 * reports (N << 1) | 1. */
#include "probe.h"

const char probe_name[] = "exit-code";

int probe_main(void)
{
    uint64_t code = cmdline_u64("exit", 42);
    if (code > 255)
        probe_fail("exit=%lu does not fit in a byte", code);
    probe_report_pass("exiting with code %lu (expect status %lu)", code, (code << 1) | 1);
    exit_code((unsigned)code);
}
