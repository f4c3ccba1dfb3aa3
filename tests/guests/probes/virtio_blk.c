/* Probe "virtio-blk": checks a virtio-blk device (vendor 0x1af4, device
 * 0x1042, the first on PCI bus 0) through the runtime's polling virtio-pci
 * driver (runtime/virtio_blk.c: discovery at ring 0, everything else at CPL 3,
 * where MMIO is cheap on hosts that emulate ring 0).
 *
 * Default: negotiate VERSION_1 only, queue 0 with 16 entries, then write a
 * pattern to sector 5 (OUT), read it back (IN), FLUSH and GET_ID, and read
 * sector 7 (with `check7=1` it must hold the host's pattern, see
 * run-virtio-blk.sh). PASS line: `capacity=N id=ID ...`.
 *
 * `hostile=1`: also accept INDIRECT_DESC when offered and submit malformed
 * chains (address outside RAM, length crossing the end of RAM, next index out
 * of range, a descriptor loop, a bad indirect table, no status descriptor, a
 * head index out of range). Each must either complete (used length 0 or an
 * IOERR status) or set DEVICE_NEEDS_RESET, after which the driver resets and
 * re-initialises the device. Finally a normal write/read must still work. */
#include "probe.h"
#include "virtio_blk.h"

const char probe_name[] = "virtio-blk";

#define SECTOR VBLK_SECTOR
#define QSIZE 16 /* small, so that the hostile indices below are out of range */

static struct vblk dev;
static uint64_t ram_end;
static int hostile;

static volatile struct vblk_desc *indirect;
static struct vblk_hdr *hdr;
static volatile uint8_t *status_byte;
static uint8_t *buf, *buf2;

static uint64_t u_init(uint64_t want_indirect) { return vblk_init(&dev, want_indirect ? VBLK_F_INDIRECT : 0, QSIZE); }

/* A well-formed request: header, optional data, status. */
static uint32_t rq_type, rq_len;
static uint64_t rq_sector;
static uint8_t *rq_buf;

static uint64_t u_request(uint64_t unused)
{
    (void)unused;
    vblk_build_request(&dev, 0, hdr, rq_type, rq_sector, rq_buf, rq_len, status_byte);
    return vblk_submit(&dev, 0);
}

/* Ring 0: one request, with a FAIL unless it completes with status OK and
 * the expected used length. */
static void request(const char *what, uint32_t type, uint64_t sector, uint8_t *b, uint32_t len, uint32_t want_used)
{
    rq_type = type;
    rq_sector = sector;
    rq_buf = b;
    rq_len = len;
    uint64_t r = run_at_cpl3(u_request, 0);
    if (r != VBLK_DONE)
        probe_fail("%s: %s", what, r == VBLK_NEEDS_RESET ? "device set DEVICE_NEEDS_RESET" : "timed out");
    if (dev.last_id != 0 || *status_byte != 0 || dev.last_len != want_used)
        probe_fail("%s: used id %u len %u (want %u), status 0x%02x", what, dev.last_id, dev.last_len, want_used,
                   *status_byte);
}

static void init_device(int want_indirect)
{
    uint64_t r = run_at_cpl3(u_init, (uint64_t)want_indirect);
    if (r)
        probe_fail("initialisation failed at step %d (features 0x%lx, status 0x%02x)", dev.init_step,
                   dev.dev_features, vblk_status(&dev));
}

static void fill_pattern(uint8_t *b, const char *s16)
{
    for (unsigned i = 0; i < SECTOR; i++)
        b[i] = (uint8_t)s16[i % 16];
}

/* Write the pattern to sector 5 and read it back. */
static void write_read_sector5(const char *when)
{
    char what[48];
    fill_pattern(buf, "kdom-vblk-sec05\n");
    snprintf(what, sizeof what, "%s OUT sector 5", when);
    request(what, VBLK_T_OUT, 5, buf, SECTOR, 1);
    memset(buf2, 0, SECTOR);
    snprintf(what, sizeof what, "%s IN sector 5", when);
    request(what, VBLK_T_IN, 5, buf2, SECTOR, SECTOR + 1);
    if (memcmp(buf, buf2, SECTOR))
        probe_fail("%s: sector 5 read back differs from what was written", when);
}

/* ------------------------------------------------------------ hostile cases */
static const char *const case_names[] = {
    "address outside RAM", "length crossing end of RAM", "next index >= queue size", "descriptor loop",
    "indirect table with bad length", "no status descriptor", "head index >= queue size",
};
#define NCASES (sizeof case_names / sizeof case_names[0])

static uint64_t u_case(uint64_t n)
{
    hdr->type = VBLK_T_IN;
    hdr->reserved = 0;
    hdr->sector = 0;
    *status_byte = 0xee;
    volatile struct vblk_desc *d = dev.desc;
    uint64_t H = (uint64_t)(uintptr_t)hdr, S = (uint64_t)(uintptr_t)status_byte, B = (uint64_t)(uintptr_t)buf2;
    switch (n) {
    case 0: /* data buffer far outside RAM */
        d[0] = (struct vblk_desc){H, 16, VBLK_D_NEXT, 1};
        d[1] = (struct vblk_desc){1ull << 40, SECTOR, VBLK_D_NEXT | VBLK_D_WRITE, 2};
        d[2] = (struct vblk_desc){S, 1, VBLK_D_WRITE, 0};
        return vblk_submit(&dev, 0);
    case 1: /* device-writable buffer crossing the end of RAM */
        d[0] = (struct vblk_desc){H, 16, VBLK_D_NEXT, 1};
        d[1] = (struct vblk_desc){ram_end - 256, SECTOR, VBLK_D_NEXT | VBLK_D_WRITE, 2};
        d[2] = (struct vblk_desc){S, 1, VBLK_D_WRITE, 0};
        return vblk_submit(&dev, 0);
    case 2: /* next beyond the table */
        d[0] = (struct vblk_desc){H, 16, VBLK_D_NEXT, 200};
        return vblk_submit(&dev, 0);
    case 3: /* 0 -> 1 -> 2 -> 1 */
        d[0] = (struct vblk_desc){H, 16, VBLK_D_NEXT, 1};
        d[1] = (struct vblk_desc){B, SECTOR, VBLK_D_NEXT | VBLK_D_WRITE, 2};
        d[2] = (struct vblk_desc){S, 1, VBLK_D_WRITE | VBLK_D_NEXT, 1};
        return vblk_submit(&dev, 0);
    case 4: /* indirect table whose length is not a multiple of 16 */
        indirect[0] = (struct vblk_desc){H, 16, VBLK_D_NEXT, 1};
        indirect[1] = (struct vblk_desc){B, SECTOR, VBLK_D_NEXT | VBLK_D_WRITE, 2};
        indirect[2] = (struct vblk_desc){S, 1, VBLK_D_WRITE, 0};
        d[0] = (struct vblk_desc){(uint64_t)(uintptr_t)indirect, 3 * 16 - 5, VBLK_D_INDIRECT, 0};
        return vblk_submit(&dev, 0);
    case 5: /* header and data, all device-readable: nowhere to put the status */
        hdr->type = VBLK_T_OUT;
        d[0] = (struct vblk_desc){H, 16, VBLK_D_NEXT, 1};
        d[1] = (struct vblk_desc){B, SECTOR, 0, 0};
        return vblk_submit(&dev, 0);
    case 6: /* the available ring names a descriptor beyond the table */
        return vblk_submit(&dev, 100);
    }
    return 0;
}

int probe_main(void)
{
    hostile = cmdline_has("hostile") && cmdline_u64("hostile", 0);
    ram_end = memmap_ram_end();

    vblk_find(&dev, 2000);

    uint8_t *mem = alloc_pages(3 * 4096);
    if (!mem)
        probe_fail("out of memory");
    hdr = (struct vblk_hdr *)mem;
    status_byte = mem + 64;
    indirect = (volatile struct vblk_desc *)(mem + 1024);
    buf = mem + 4096;
    buf2 = mem + 2 * 4096;

    init_device(hostile);
    uint64_t capacity = vblk_capacity(&dev);
    printf("features: device 0x%lx, driver 0x%lx; queue size %u, capacity %lu sectors\n", dev.dev_features,
           dev.drv_features, dev.qsize, capacity);
    if (capacity < 8)
        probe_fail("capacity %lu sectors: the test needs at least 8", capacity);

    if (!hostile) {
        write_read_sector5("");
        memset(buf2, 0, SECTOR);
        request("IN sector 7", VBLK_T_IN, 7, buf2, SECTOR, SECTOR + 1);
        if (cmdline_u64("check7", 0)) {
            fill_pattern(buf, "host-sector-07.\n");
            if (memcmp(buf, buf2, SECTOR))
                probe_fail("sector 7 does not hold the host's pattern (first bytes %02x %02x %02x %02x)", buf2[0],
                           buf2[1], buf2[2], buf2[3]);
        }
        request("FLUSH", VBLK_T_FLUSH, 0, 0, 0, 1);
        memset(buf2, 0, 32);
        request("GET_ID", VBLK_T_GET_ID, 0, buf2, 20, 21);
        char id[21];
        memcpy(id, buf2, 20);
        id[20] = 0;
        for (int i = 0; i < 20 && id[i]; i++)
            if (id[i] <= ' ' || id[i] > '~')
                id[i] = '?';
        probe_pass("capacity=%lu id=%s qsize=%u wrote+read sector 5, read sector 7%s, flush ok", capacity,
                   id[0] ? id : "(empty)", dev.qsize, cmdline_u64("check7", 0) ? " (host pattern ok)" : "");
    }

    write_read_sector5("before hostile:");
    unsigned resets = 0, tested = 0, bad = 0;
    for (unsigned c = 0; c < NCASES; c++) {
        if (c == 4 && !(dev.drv_features & VBLK_F_INDIRECT)) {
            printf("case %u (%s): skipped, INDIRECT_DESC not offered\n", c, case_names[c]);
            continue;
        }
        tested++;
        /* The malformed chains must not touch guest memory: the data buffer,
         * and the last 256 bytes of RAM (case 1's buffer), are sentinels. */
        volatile uint8_t *tail = (volatile uint8_t *)(uintptr_t)(ram_end - 256);
        memset(buf2, 0xa5, SECTOR);
        for (unsigned i = 0; i < 256; i++)
            tail[i] = 0x5a;
        uint64_t r = run_at_cpl3(u_case, c);
        for (unsigned i = 0; i < SECTOR; i++)
            if (buf2[i] != 0xa5) {
                printf("case %u: FAILED: the data buffer was written (byte %u = 0x%02x)\n", c, i, buf2[i]);
                bad++;
                break;
            }
        for (unsigned i = 0; i < 256; i++)
            if (tail[i] != 0x5a) {
                printf("case %u: FAILED: RAM at 0x%lx was written (0x%02x)\n", c, ram_end - 256 + i, tail[i]);
                bad++;
                break;
            }
        uint8_t st = vblk_status(&dev);
        if (r == VBLK_DONE) {
            printf("case %u (%s): completed, used id %u len %u, status byte 0x%02x%s, device status 0x%02x\n", c,
                   case_names[c], dev.last_id, dev.last_len, *status_byte,
                   *status_byte == 0xee ? " (untouched)" : "", st);
            if (dev.last_len != 0 && *status_byte != 1 /* IOERR */)
                bad++, printf("case %u: FAILED: completed with used len %u and status 0x%02x\n", c, dev.last_len,
                              *status_byte);
        } else {
            printf("case %u (%s): %s, device status 0x%02x\n", c, case_names[c],
                   r == VBLK_NEEDS_RESET ? "device set DEVICE_NEEDS_RESET" : "TIMED OUT (no completion, no reset)", st);
            if (r != VBLK_NEEDS_RESET)
                bad++;
        }
        if (r != VBLK_DONE || (st & (VBLK_ST_NEEDS_RESET | VBLK_ST_FAILED))) {
            init_device(1);
            resets++;
        }
    }
    write_read_sector5("after hostile:");
    if (bad)
        probe_fail("%u of %u hostile cases misbehaved (see above)", bad, tested);
    probe_pass("hostile: %u cases survived, %u device resets, final write/read ok", tested, resets);
}
