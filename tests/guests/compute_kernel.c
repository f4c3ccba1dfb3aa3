/* The compute kernel (see compute_kernel.h). Plain C, no library calls, so it
 * builds both freestanding (probe guest) and hosted (compute-host). */
#include "compute_kernel.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t compute_kernel(uint64_t *buf, size_t words, unsigned rounds, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = 0; i < words; i++)
        buf[i] = splitmix64(&state);
    const size_t mask = words - 1;
    uint64_t h = seed ^ 0x6a09e667f3bcc908ull;
    size_t idx = (size_t)h & mask;
    for (unsigned r = 0; r < rounds; r++) {
        for (size_t i = 0; i < words; i++) {
            uint64_t x = buf[idx];
            h = (h ^ x) * 0x100000001b3ull;
            h = (h << 27) | (h >> 37);
            buf[idx] = x + h;
            idx = (size_t)(h >> 11) & mask; /* the next address depends on this read */
        }
    }
    return h;
}
