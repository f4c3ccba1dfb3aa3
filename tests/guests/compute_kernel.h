/* A deterministic, integer-only, memory-bound compute kernel shared by the
 * "compute" probe guest and the host program compute-host, so that a benchmark
 * can run the very same code inside a guest and natively and compare. */
#ifndef COMPUTE_KERNEL_H
#define COMPUTE_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fills buf (words 64-bit words; words must be a power of two) from seed, then
 * makes `rounds` passes of `words` dependent, data-driven random reads and
 * writes over it. Returns a hash of everything it read; the same arguments
 * always give the same hash. */
uint64_t compute_kernel(uint64_t *buf, size_t words, unsigned rounds, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif
