/* compute-host: runs compute_kernel() natively, with the same parameters and
 * output format as the "compute" probe guest, for benchmarks and for the test
 * that checks the guest computed the right hash.
 * Usage: compute-host [mib [rounds [seed]]] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "compute_kernel.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    unsigned long mib = argc > 1 ? strtoul(argv[1], 0, 0) : 8;
    unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], 0, 0) : 4;
    uint64_t seed = argc > 3 ? strtoull(argv[3], 0, 0) : 1;
    if (!mib || (mib & (mib - 1))) {
        fprintf(stderr, "compute-host: mib must be a power of two\n");
        return 2;
    }
    size_t words = (size_t)mib << 17;
    uint64_t *buf = malloc(words * sizeof *buf);
    if (!buf) {
        perror("compute-host: malloc");
        return 2;
    }
    uint64_t t0 = now_ns();
    uint64_t hash = compute_kernel(buf, words, rounds, seed);
    uint64_t t1 = now_ns();
    printf("compute-host: hash=0x%016llx mib=%lu rounds=%u seed=%llu ns=%llu\n",
           (unsigned long long)hash, mib, rounds, (unsigned long long)seed,
           (unsigned long long)(t1 - t0));
    free(buf);
    return 0;
}
