/* Probe "virtio-blk-bench": read throughput of a virtio-blk device through the
 * runtime's polling driver (runtime/virtio_blk.c), for bench/virtio-blk.sh.
 *
 * The disk must hold the benchmark pattern (kdom-bench disk-pattern): every
 * 4 KiB block starts with its block number (64-bit little endian), so each
 * read is checked, not just counted. Five phases, all at CPL 3, each timed
 * with rdtsc around the phase alone (the TSC is the host's, so the host turns
 * cycles into time with its own TSC rate), with boot-timer marks (port 0x440,
 * ring 0, values 0x30 + 2 * phase before and + 1 after) around it for a
 * wall-clock cross-check where the VMM has that port:
 *   rand4k qd=1    `rand=N` reads (default 20000) of one 4 KiB block at a
 *                  random block number (xorshift64, `seed=S`), one at a time;
 *   rand4k qd=Q    the same with Q requests in flight (`qd=Q`, default 32):
 *                  every completion is checked and replaced by a new request,
 *                  and the device is notified once per batch of replacements;
 *   seq128k qd=1   the whole disk in 128 KiB reads, in order (`seq_passes=P`
 *                  passes, default 1);
 *   seq128k qd=Q   the same with Q in flight;
 *   getid qd=1     `getid=N` GET_ID requests (default: as many as `rand`), one at
 *                  a time: the same round trip through the device as rand4k qd=1
 *                  but without file I/O (the transport's share of a request).
 * One line per phase: `vblk-bench <phase> qd=Q ops=N bytes=B cycles=C`, then
 * `PROBE virtio-blk-bench: PASS ...`. A wrong block number, a bad status or
 * used length, or a request that takes over 2 s fails the probe. */
#include "probe.h"
#include "virtio_blk.h"

const char probe_name[] = "virtio-blk-bench";

#define BLOCK 4096u
#define SEQ_BYTES (128u * 1024u)
#define QD_MAX 64 /* three descriptors each: fits the 256-entry queue */

static struct vblk dev;
static uint64_t nblocks;         /* 4 KiB blocks on the disk */
static struct vblk_hdr *hdrs;    /* one per slot */
static volatile uint8_t *status; /* one byte per slot, 64 apart */
static uint8_t *bufs;            /* SEQ_BYTES per slot */
static uint64_t rng;

/* What a phase does, and what went wrong (reported at ring 0). */
struct phase {
    uint32_t type; /* VBLK_T_IN or VBLK_T_GET_ID */
    int random;
    uint32_t bytes; /* per request */
    unsigned qd;
    uint64_t ops;
    uint64_t cycles;
    /* On failure: */
    const char *error;
    uint64_t bad_block, bad_value;
    uint32_t bad_len;
    uint8_t bad_status;
};
static struct phase ph;
static uint64_t next_seq_block;

static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The next block number for a request of ph.bytes. */
static uint64_t next_block(void)
{
    uint64_t per = ph.bytes / BLOCK;
    if (ph.random)
        return xorshift() % (nblocks / per) * per;
    uint64_t b = next_seq_block;
    next_seq_block += per;
    if (next_seq_block + per > nblocks)
        next_seq_block = 0;
    return b;
}

static uint64_t slot_block[QD_MAX];

static void issue(unsigned slot)
{
    uint64_t block = next_block();
    slot_block[slot] = block;
    vblk_build_request(&dev, (uint16_t)(slot * 3), &hdrs[slot], ph.type, block * (BLOCK / VBLK_SECTOR),
                       bufs + (uint64_t)slot * SEQ_BYTES, ph.bytes, &status[slot * 64]);
    vblk_make_avail(&dev, (uint16_t)(slot * 3));
}

/* Checks the completion of `slot`; 0 when it is right. */
static int check(unsigned slot)
{
    if (dev.last_len != ph.bytes + 1 || status[slot * 64] != 0) {
        ph.error = "bad completion";
        ph.bad_block = slot_block[slot];
        ph.bad_len = dev.last_len;
        ph.bad_status = status[slot * 64];
        return 1;
    }
    if (ph.type != VBLK_T_IN)
        return 0;
    const uint8_t *b = bufs + (uint64_t)slot * SEQ_BYTES;
    for (uint32_t off = 0; off < ph.bytes; off += BLOCK) {
        uint64_t want = slot_block[slot] + off / BLOCK, got = *(const volatile uint64_t *)(b + off);
        if (got != want) {
            ph.error = "wrong data (is the disk made by kdom-bench disk-pattern?)";
            ph.bad_block = want;
            ph.bad_value = got;
            return 1;
        }
    }
    return 0;
}

/* CPL 3: runs the phase in `ph`; 0 on success. */
static uint64_t u_phase(uint64_t unused)
{
    (void)unused;
    uint64_t issued = 0, done = 0, t0 = rdtsc();
    unsigned qd = ph.qd;
    for (unsigned s = 0; s < qd && issued < ph.ops; s++, issued++)
        issue(s);
    vblk_notify(&dev);
    int pending_notify = 0;
    unsigned idle_spins = 0;
    uint64_t deadline = rdtsc() + dev.timeout_ticks;
    while (done < ph.ops) {
        if (vblk_poll(&dev)) {
            unsigned slot = dev.last_id / 3;
            if (dev.last_id % 3 || slot >= qd) {
                ph.error = "used ring names a head the driver never made available";
                ph.bad_value = dev.last_id;
                return 1;
            }
            if (check(slot))
                return 1;
            done++;
            if (issued < ph.ops) {
                issue(slot);
                issued++;
                pending_notify = 1;
            }
            deadline = rdtsc() + dev.timeout_ticks;
            continue;
        }
        /* Nothing more has completed: hand the device what was replaced so far. */
        if (pending_notify) {
            vblk_notify(&dev);
            pending_notify = 0;
            continue;
        }
        /* The status register is MMIO: every read is a VM exit, and an exit in every wait
         * would be most of what this measures. A device that gave up shows soon enough. */
        if ((++idle_spins & 0xfff) == 0 && (vblk_status(&dev) & VBLK_ST_NEEDS_RESET)) {
            ph.error = "device set DEVICE_NEEDS_RESET";
            return 1;
        }
        if ((int64_t)(rdtsc() - deadline) > 0) {
            ph.error = "timed out (2 s without a completion)";
            return 1;
        }
        cpu_relax();
    }
    ph.cycles = rdtsc() - t0;
    return 0;
}

static uint64_t u_init(uint64_t qsize) { return vblk_init(&dev, 0, (uint16_t)qsize); }

static void run_phase(unsigned index, const char *name, uint32_t type, int random, uint32_t bytes, unsigned qd,
                      uint64_t ops)
{
    ph = (struct phase){.type = type, .random = random, .bytes = bytes, .qd = qd, .ops = ops};
    next_seq_block = 0;
    boot_timer_mark((uint8_t)(0x30 + 2 * index));
    uint64_t r = run_at_cpl3(u_phase, 0);
    boot_timer_mark((uint8_t)(0x31 + 2 * index));
    if (r)
        probe_fail("%s qd=%u: %s (block %lu, value 0x%lx, used len %u, status 0x%02x)", name, qd, ph.error,
                   ph.bad_block, ph.bad_value, ph.bad_len, ph.bad_status);
    printf("vblk-bench %s qd=%u ops=%lu bytes=%lu cycles=%lu\n", name, qd, ph.ops,
           type == VBLK_T_IN ? ph.ops * bytes : 0, ph.cycles);
}

int probe_main(void)
{
    uint64_t rand_ops = cmdline_u64("rand", 20000);
    uint64_t qd = cmdline_u64("qd", 32);
    uint64_t passes = cmdline_u64("seq_passes", 1);
    uint64_t getid_ops = cmdline_u64("getid", rand_ops);
    rng = cmdline_u64("seed", 1) | 1;
    if (qd < 2 || qd > QD_MAX)
        probe_fail("qd=%lu: between 2 and %u", qd, QD_MAX);

    vblk_find(&dev, 2000);
    hdrs = alloc_pages(QD_MAX * sizeof *hdrs);
    status = alloc_pages(QD_MAX * 64);
    bufs = alloc_pages((uint64_t)QD_MAX * SEQ_BYTES);
    if (!hdrs || !status || !bufs)
        probe_fail("out of memory for %u request buffers", QD_MAX);
    uint64_t r = run_at_cpl3(u_init, VBLK_QSIZE_MAX);
    if (r)
        probe_fail("initialisation failed at step %d (features 0x%lx, status 0x%02x)", dev.init_step,
                   dev.dev_features, vblk_status(&dev));
    if (dev.qsize < 3 * qd)
        probe_fail("queue size %u is too small for qd=%lu (3 descriptors a request)", dev.qsize, qd);
    uint64_t capacity = vblk_capacity(&dev);
    nblocks = capacity / (BLOCK / VBLK_SECTOR);
    if (nblocks < SEQ_BYTES / BLOCK)
        probe_fail("capacity %lu sectors: the benchmark needs at least 128 KiB", capacity);
    uint64_t seq_ops = nblocks / (SEQ_BYTES / BLOCK) * passes;
    printf("vblk-bench disk: capacity=%lu sectors, queue size %u, tsc_khz=%lu (%s)\n", capacity, dev.qsize,
           tsc_per_ms(), tsc_source());

    run_phase(0, "rand4k", VBLK_T_IN, 1, BLOCK, 1, rand_ops);
    run_phase(1, "rand4k", VBLK_T_IN, 1, BLOCK, (unsigned)qd, rand_ops);
    run_phase(2, "seq128k", VBLK_T_IN, 0, SEQ_BYTES, 1, seq_ops);
    run_phase(3, "seq128k", VBLK_T_IN, 0, SEQ_BYTES, (unsigned)qd, seq_ops);
    if (getid_ops)
        run_phase(4, "getid", VBLK_T_GET_ID, 0, 20, 1, getid_ops);
    probe_pass("rand=%lu qd=%lu seq_ops=%lu every block checked", rand_ops, qd, seq_ops);
}
