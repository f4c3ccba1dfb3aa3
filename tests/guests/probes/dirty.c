/* Probe "dirty": a guest for save/restore tests. At CPL 3 it keeps a region of
 * RAM (`mib=N`, default 64) filled with a pattern that depends on each page's
 * number and generation (how often it was rewritten), rewrites pages round
 * robin at `rate_mib=R` MiB per second (default 8; paced by the TSC in 10 ms
 * slices), and after every pass over the region checks every page against its
 * last generation (a mismatch fails, naming the page, the word and what the
 * page says it holds). Every `tick_ms=` ms (default 200) it prints
 * `PROBE dirty: tick N pages=P` (N: a counter in guest memory, so a restored
 * domain carries on from where it was saved; P: pages written so far, the
 * first fill included). After
 * `ticks=T` ticks (default 100) it checks the whole region once more and
 * passes.
 *
 * A save pauses the guest and a restore moves its TSC on by the time the
 * domain stood saved: a slice whose deadline is more than 0.5 s behind (or
 * ahead of) the TSC starts afresh instead of catching up (counted as a
 * resync), and a tick that came more than max(1 s, 5 ticks) of TSC time after
 * the previous one is reported on a `dirty: tick gap` line (not a failure;
 * `gap_ms=G` reports every gap over G ms instead, to see a migration's pause).
 *
 * `corrupt=1` (a self-test of the checks): after tick 2, flips a bit in the
 * page written last; the probe must then fail naming that page. */
#include "probe.h"

const char probe_name[] = "dirty";

#define PAGE_SIZE 4096u
#define PAGE_WORDS (PAGE_SIZE / 8)
#define MIB ((uint64_t)1 << 20)
#define SLICE_MS 10
#define RESYNC_MS 500

/* The state: all of it in guest memory, so a restore carries it on. */
static uint64_t region;    /* address of the region */
static uint64_t npages;    /* pages in it */
static uint32_t *gen;      /* each page's generation: how often it was written */
static uint64_t cursor;    /* the next page to rewrite */
static volatile uint64_t tick_count;
static uint64_t pages_written, passes, pages_checked, resyncs, gaps;
static uint64_t per_ms, slice_tsc, pages_per_s, credit, deadline, active_tsc;
static uint64_t slices_per_tick;

/* A mismatch, as found at CPL 3. */
static volatile uint64_t bad_page, bad_word, bad_want, bad_got, bad_word0;
static volatile uint32_t bad_gen;

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Word 0 holds (page << 32 | generation) in the clear, so a wrong page says
 * which page and generation it holds; the others a mix of both and the word. */
static inline uint64_t page_tag(uint64_t page, uint32_t g) { return page << 32 | g; }

static void write_page(uint64_t page)
{
    uint32_t g = ++gen[page];
    uint64_t tag = page_tag(page, g), base = mix(tag);
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)(region + page * PAGE_SIZE);
    p[0] = tag;
    for (unsigned w = 1; w < PAGE_WORDS; w++)
        p[w] = base + w * 0x9e3779b97f4a7c15ull;
    pages_written++;
}

/* 0 when the page holds its last generation's pattern. */
static int check_page(uint64_t page)
{
    uint32_t g = gen[page];
    uint64_t tag = page_tag(page, g), base = mix(tag);
    const volatile uint64_t *p = (const volatile uint64_t *)(uintptr_t)(region + page * PAGE_SIZE);
    for (unsigned w = 0; w < PAGE_WORDS; w++) {
        uint64_t want = w ? base + w * 0x9e3779b97f4a7c15ull : tag, got = p[w];
        if (got != want) {
            bad_page = page;
            bad_word = w;
            bad_want = want;
            bad_got = got;
            bad_gen = g;
            bad_word0 = p[0];
            return 1;
        }
    }
    pages_checked++;
    return 0;
}

/* CPL 3: every page checked; 1 at the first mismatch. */
static uint64_t check_all(uint64_t unused)
{
    (void)unused;
    for (uint64_t p = 0; p < npages; p++)
        if (check_page(p))
            return 1;
    return 0;
}

/* CPL 3: fill the region (generation 1 everywhere), unpaced. */
static uint64_t fill_all(uint64_t unused)
{
    (void)unused;
    for (uint64_t p = 0; p < npages; p++)
        write_page(p);
    return 0;
}

/* CPL 3: one tick's slices. Each slice rewrites its share of pages (checking
 * the whole region whenever the cursor wraps), then waits for its deadline.
 * Returns 1 at a mismatch. */
static uint64_t run_tick(uint64_t unused)
{
    (void)unused;
    for (uint64_t s = 0; s < slices_per_tick; s++) {
        uint64_t start = rdtsc();
        credit += pages_per_s * SLICE_MS;
        uint64_t n = credit / 1000;
        credit -= n * 1000;
        for (uint64_t i = 0; i < n; i++) {
            write_page(cursor);
            if (++cursor == npages) {
                cursor = 0;
                passes++;
                if (check_all(0))
                    return 1;
            }
        }
        deadline += slice_tsc;
        uint64_t now = rdtsc();
        /* Far behind (a pause, a restore's TSC jump, a slow host) or ahead
         * (a TSC that went back): start afresh rather than catch up. */
        if ((int64_t)(now - deadline) > (int64_t)(RESYNC_MS * per_ms) ||
            (int64_t)(deadline - now) > (int64_t)(2 * slice_tsc)) {
            deadline = now;
            resyncs++;
        }
        while ((int64_t)(rdtsc() - deadline) < 0)
            cpu_relax();
        uint64_t took = rdtsc() - start;
        if (took < RESYNC_MS * per_ms)
            active_tsc += took;
    }
    return 0;
}

static __attribute__((noreturn)) void mismatch(const char *when)
{
    uint64_t page = bad_page, word0 = bad_word0;
    printf("dirty: mismatch %s (after tick %lu, pass %lu): page %lu should hold generation %u; "
           "its word 0 says page %lu generation %lu\n",
           when, tick_count, passes, page, bad_gen, word0 >> 32, word0 & 0xffffffffu);
    probe_fail("page %lu (0x%lx) word %lu: want 0x%016lx, read 0x%016lx", page,
               region + page * PAGE_SIZE, bad_word, bad_want, bad_got);
}

int probe_main(void)
{
    uint64_t mib = cmdline_u64("mib", 64), rate_mib = cmdline_u64("rate_mib", 8);
    uint64_t ticks = cmdline_u64("ticks", 100), tick_ms = cmdline_u64("tick_ms", 200);
    uint64_t corrupt = cmdline_u64("corrupt", 0);
    if (!mib)
        probe_fail("mib=0: nothing to dirty");
    if (tick_ms < SLICE_MS)
        tick_ms = SLICE_MS;
    per_ms = tsc_per_ms(); /* at ring 0: it may use the PIT */
    slice_tsc = SLICE_MS * per_ms;
    slices_per_tick = tick_ms / SLICE_MS;
    pages_per_s = rate_mib * (MIB / PAGE_SIZE);
    npages = mib * (MIB / PAGE_SIZE);

    gen = alloc_pages(npages * sizeof *gen);
    void *r = alloc_pages(mib * MIB);
    if (!gen || !r)
        probe_fail("no room for %lu MiB at 0x%lx below 4 GiB (RAM %lu MiB)", mib, probe_used_end(),
                   memmap_ram_bytes() / MIB);
    region = (uint64_t)(uintptr_t)r;
    memset(gen, 0, npages * sizeof *gen);
    printf("dirty: %lu MiB at 0x%lx (%lu pages), %lu MiB/s, a tick every %lu ms, %lu ticks; tsc %lu kHz from %s\n",
           mib, region, npages, rate_mib, tick_ms, ticks, per_ms, tsc_source());

    run_at_cpl3(fill_all, 0);
    if (run_at_cpl3(check_all, 0))
        mismatch("after the first fill");

    /* gap_ms=: report shorter gaps too (a migration's pause, seen from the guest). */
    uint64_t gap_limit = cmdline_u64("gap_ms", 5 * tick_ms < 1000 ? 1000 : 5 * tick_ms);
    uint64_t last_tick = rdtsc(), passes_shown = 0;
    deadline = last_tick;
    while (tick_count < ticks) {
        if (run_at_cpl3(run_tick, 0))
            mismatch("at the end of a pass");
        uint64_t now = rdtsc(), gap_ms = (now - last_tick) / per_ms;
        last_tick = now;
        tick_count++;
        if (gap_ms > gap_limit) {
            gaps++;
            printf("dirty: tick gap of %lu ms (TSC time) before tick %lu\n", gap_ms, tick_count);
        }
        printf("PROBE dirty: tick %lu pages=%lu\n", tick_count, pages_written);
        if (corrupt && tick_count == 2) {
            uint64_t page = (cursor ? cursor : npages) - 1;
            printf("dirty: self-test: flipping a bit of page %lu word 100\n", page);
            ((volatile uint64_t *)(uintptr_t)(region + page * PAGE_SIZE))[100] ^= 1u << 7;
        }
        if (passes != passes_shown) {
            passes_shown = passes;
            printf("dirty: pass %lu: all %lu pages match\n", passes, npages);
        }
    }
    if (run_at_cpl3(check_all, 0))
        mismatch("at the final check");
    uint64_t active_ms = active_tsc / per_ms;
    uint64_t kib_per_s = active_ms ? (pages_written - npages) * (PAGE_SIZE / 1024) * 1000 / active_ms : 0;
    probe_pass("ticks=%lu pages=%lu passes=%lu checked=%lu mib=%lu rate=%lu KiB/s (asked %lu MiB/s) "
               "gaps=%lu resyncs=%lu",
               tick_count, pages_written, passes, pages_checked, mib, kib_per_s, rate_mib, gaps,
               resyncs);
}
