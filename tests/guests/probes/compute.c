/* Probe "compute": runs compute_kernel() (../compute_kernel.c) at CPL 3 over a
 * buffer of `mib=M` MiB (power of two, default 8) for `rounds=R` passes
 * (default 4) with `seed=S` (default 1), and reports the hash and the TSC
 * cycles it took (measured at CPL 3). Writes 0x10 / 0x11 to the boot-timer
 * port just before and after the switch to CPL 3 and back, so the VMM's log
 * brackets it in wall-clock time too. */
#include "compute_kernel.h"
#include "probe.h"

const char probe_name[] = "compute";

static uint64_t *buf;
static uint64_t words, rounds, seed, cycles;

static uint64_t run_kernel(uint64_t unused)
{
    (void)unused;
    uint64_t t0 = rdtsc();
    uint64_t h = compute_kernel(buf, words, (unsigned)rounds, seed);
    cycles = rdtsc() - t0;
    return h;
}

int probe_main(void)
{
    uint64_t mib = cmdline_u64("mib", 8);
    rounds = cmdline_u64("rounds", 4);
    seed = cmdline_u64("seed", 1);
    if (!mib || (mib & (mib - 1)))
        probe_fail("mib=%lu is not a power of two", mib);
    words = mib << 17;
    buf = alloc_pages(mib << 20);
    if (!buf)
        probe_fail("no %lu MiB buffer after the image (RAM too small?)", mib);
    boot_timer_mark(0x10); /* at ring 0: kvm_pvm allows no port I/O at CPL 3 */
    uint64_t hash = run_at_cpl3(run_kernel, 0);
    boot_timer_mark(0x11);
    probe_pass("hash=0x%016lx mib=%lu rounds=%lu seed=%lu cycles=%lu", hash, mib, rounds, seed,
               cycles);
}
