/* Probe "virtio-blk": a minimal polling virtio-pci (modern) driver for the
 * first virtio-blk function (vendor 0x1af4, device 0x1042) on PCI bus 0.
 *
 * Ring 0 (port I/O) only scans bus 0 through 0xcf8/0xcfc, walks the
 * capability list for the common (cfg_type 1), notify (2) and device (4)
 * configuration and reads BAR 0; everything else (negotiation, queue set-up,
 * requests, polling the used ring with a TSC timeout) runs at CPL 3, where
 * MMIO is cheap on hosts that emulate ring 0. The runtime identity-maps
 * 0..4 GiB with user-accessible pages, so the BAR (0xc0000000+) is reachable.
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

const char probe_name[] = "virtio-blk";

/* ------------------------------------------------------------ PCI (ring 0) */
static uint32_t pci_read32(unsigned slot, unsigned off)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    return inl(0xcfc);
}
static uint8_t pci_read8(unsigned slot, unsigned off) { return (uint8_t)(pci_read32(slot, off) >> ((off & 3) * 8)); }
static void pci_write16(unsigned slot, unsigned off, uint16_t v)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (off & 0xfc));
    outw(0xcfc + (off & 2), v);
}

/* -------------------------------------------------------- virtio layout */
#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8
#define ST_NEEDS_RESET 0x40
#define ST_FAILED 0x80

#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX 0x10
#define CC_NUMQ 0x12
#define CC_STATUS 0x14
#define CC_QSELECT 0x16
#define CC_QSIZE 0x18
#define CC_QMSIX 0x1a
#define CC_QENABLE 0x1c
#define CC_QNOTIFYOFF 0x1e
#define CC_QDESC 0x20
#define CC_QDRIVER 0x28
#define CC_QDEVICE 0x30

#define F_INDIRECT (1ull << 28)
#define F_VERSION_1 (1ull << 32)

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8

#define QSIZE_MAX 16
#define SECTOR 512

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
struct avail {
    uint16_t flags, idx, ring[QSIZE_MAX], used_event;
};
struct used {
    uint16_t flags, idx;
    struct {
        uint32_t id, len;
    } ring[QSIZE_MAX];
    uint16_t avail_event;
};
struct blk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

/* Found at ring 0. */
static uint64_t bar_base;
static volatile uint8_t *common, *devcfg, *notify_base;
static uint32_t notify_mult;
static uint64_t timeout_ticks, ram_end;
static int hostile;

/* Driver state (CPL 3). */
static volatile struct desc *desc;
static volatile struct avail *avail;
static volatile struct used *used;
static volatile struct desc *indirect;
static struct blk_hdr *hdr;
static volatile uint8_t *status_byte;
static uint8_t *buf, *buf2;
static uint16_t qsize, avail_idx, used_seen, notify_off;
static uint64_t dev_features, drv_features;
static uint32_t last_id, last_len;
static int init_step;

#define barrier() __asm__ volatile("" ::: "memory")

static uint8_t cr8(unsigned o) { return *(volatile uint8_t *)(common + o); }
static uint16_t cr16(unsigned o) { return *(volatile uint16_t *)(common + o); }
static uint32_t cr32(unsigned o) { return *(volatile uint32_t *)(common + o); }
static void cw8(unsigned o, uint8_t v) { *(volatile uint8_t *)(common + o) = v; }
static void cw16(unsigned o, uint16_t v) { *(volatile uint16_t *)(common + o) = v; }
static void cw32(unsigned o, uint32_t v) { *(volatile uint32_t *)(common + o) = v; }
static void cw64(unsigned o, uint64_t v)
{
    cw32(o, (uint32_t)v);
    cw32(o + 4, (uint32_t)(v >> 32));
}

/* Init (CPL 3): returns 0, or the failing step (init_step says which). */
static uint64_t u_init(uint64_t want_indirect)
{
    uint64_t deadline = rdtsc() + timeout_ticks;
    init_step = 1; /* reset */
    cw8(CC_STATUS, 0);
    while (cr8(CC_STATUS) != 0)
        if ((int64_t)(rdtsc() - deadline) > 0)
            return 1;
    init_step = 2;
    cw8(CC_STATUS, ST_ACK);
    cw8(CC_STATUS, ST_ACK | ST_DRIVER);
    cw32(CC_DFSELECT, 0);
    uint64_t lo = cr32(CC_DF);
    cw32(CC_DFSELECT, 1);
    dev_features = lo | (uint64_t)cr32(CC_DF) << 32;
    if (!(dev_features & F_VERSION_1))
        return 2;
    drv_features = F_VERSION_1 | (want_indirect ? dev_features & F_INDIRECT : 0);
    cw32(CC_GFSELECT, 0);
    cw32(CC_GF, (uint32_t)drv_features);
    cw32(CC_GFSELECT, 1);
    cw32(CC_GF, (uint32_t)(drv_features >> 32));
    init_step = 3;
    cw8(CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    if (!(cr8(CC_STATUS) & ST_FEATURES_OK))
        return 3;
    init_step = 4;
    cw16(CC_MSIX, 0xffff);
    if (cr16(CC_NUMQ) < 1)
        return 4;
    cw16(CC_QSELECT, 0);
    uint16_t max = cr16(CC_QSIZE);
    if (max == 0)
        return 4;
    qsize = max < QSIZE_MAX ? max : QSIZE_MAX;
    memset((void *)desc, 0, 4096);
    memset((void *)avail, 0, 4096);
    memset((void *)used, 0, 4096);
    avail_idx = used_seen = 0;
    cw16(CC_QSIZE, qsize);
    cw16(CC_QMSIX, 0xffff);
    notify_off = cr16(CC_QNOTIFYOFF);
    cw64(CC_QDESC, (uint64_t)(uintptr_t)desc);
    cw64(CC_QDRIVER, (uint64_t)(uintptr_t)avail);
    cw64(CC_QDEVICE, (uint64_t)(uintptr_t)used);
    cw16(CC_QENABLE, 1);
    init_step = 5;
    cw8(CC_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    uint8_t s = cr8(CC_STATUS);
    if (!(s & ST_DRIVER_OK) || (s & (ST_NEEDS_RESET | ST_FAILED)))
        return 5;
    return 0;
}

/* Outcomes of one submission. */
#define R_DONE 1
#define R_NEEDS_RESET 2
#define R_TIMEOUT 3

/* Makes `head` available, notifies queue 0 and polls the used ring. */
static uint64_t submit(uint16_t head)
{
    avail->ring[avail_idx % qsize] = head;
    barrier();
    avail->idx = ++avail_idx;
    barrier();
    *(volatile uint16_t *)(notify_base + (uint64_t)notify_off * notify_mult) = 0;
    uint64_t deadline = rdtsc() + timeout_ticks;
    for (;;) {
        if (used->idx != used_seen) {
            barrier();
            last_id = used->ring[used_seen % qsize].id;
            last_len = used->ring[used_seen % qsize].len;
            used_seen++;
            return R_DONE;
        }
        if (cr8(CC_STATUS) & ST_NEEDS_RESET)
            return R_NEEDS_RESET;
        if ((int64_t)(rdtsc() - deadline) > 0)
            return R_TIMEOUT;
        cpu_relax();
    }
}

/* A well-formed request: header, optional data, status. */
static uint32_t rq_type, rq_len;
static uint64_t rq_sector;
static uint8_t *rq_buf;

static uint64_t u_request(uint64_t unused)
{
    (void)unused;
    hdr->type = rq_type;
    hdr->reserved = 0;
    hdr->sector = rq_sector;
    *status_byte = 0xee;
    int device_writes = rq_type == T_IN || rq_type == T_GET_ID;
    unsigned n = 0;
    desc[n] = (struct desc){(uint64_t)(uintptr_t)hdr, sizeof *hdr, D_NEXT, (uint16_t)(n + 1)};
    n++;
    if (rq_len) {
        desc[n] = (struct desc){(uint64_t)(uintptr_t)rq_buf, rq_len,
                                (uint16_t)(D_NEXT | (device_writes ? D_WRITE : 0)), (uint16_t)(n + 1)};
        n++;
    }
    desc[n] = (struct desc){(uint64_t)(uintptr_t)status_byte, 1, D_WRITE, 0};
    return submit(0);
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
    if (r != R_DONE)
        probe_fail("%s: %s", what, r == R_NEEDS_RESET ? "device set DEVICE_NEEDS_RESET" : "timed out");
    if (last_id != 0 || *status_byte != 0 || last_len != want_used)
        probe_fail("%s: used id %u len %u (want %u), status 0x%02x", what, last_id, last_len, want_used,
                   *status_byte);
}

static void init_device(int want_indirect)
{
    uint64_t r = run_at_cpl3(u_init, (uint64_t)want_indirect);
    if (r)
        probe_fail("initialisation failed at step %d (features 0x%lx, status 0x%02x)", init_step, dev_features,
                   *(volatile uint8_t *)(common + CC_STATUS));
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
    request(what, T_OUT, 5, buf, SECTOR, 1);
    memset(buf2, 0, SECTOR);
    snprintf(what, sizeof what, "%s IN sector 5", when);
    request(what, T_IN, 5, buf2, SECTOR, SECTOR + 1);
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
    hdr->type = T_IN;
    hdr->reserved = 0;
    hdr->sector = 0;
    *status_byte = 0xee;
    volatile struct desc *d = desc;
    uint64_t H = (uint64_t)(uintptr_t)hdr, S = (uint64_t)(uintptr_t)status_byte, B = (uint64_t)(uintptr_t)buf2;
    switch (n) {
    case 0: /* data buffer far outside RAM */
        d[0] = (struct desc){H, 16, D_NEXT, 1};
        d[1] = (struct desc){1ull << 40, SECTOR, D_NEXT | D_WRITE, 2};
        d[2] = (struct desc){S, 1, D_WRITE, 0};
        return submit(0);
    case 1: /* device-writable buffer crossing the end of RAM */
        d[0] = (struct desc){H, 16, D_NEXT, 1};
        d[1] = (struct desc){ram_end - 256, SECTOR, D_NEXT | D_WRITE, 2};
        d[2] = (struct desc){S, 1, D_WRITE, 0};
        return submit(0);
    case 2: /* next beyond the table */
        d[0] = (struct desc){H, 16, D_NEXT, 200};
        return submit(0);
    case 3: /* 0 -> 1 -> 2 -> 1 */
        d[0] = (struct desc){H, 16, D_NEXT, 1};
        d[1] = (struct desc){B, SECTOR, D_NEXT | D_WRITE, 2};
        d[2] = (struct desc){S, 1, D_WRITE | D_NEXT, 1};
        return submit(0);
    case 4: /* indirect table whose length is not a multiple of 16 */
        indirect[0] = (struct desc){H, 16, D_NEXT, 1};
        indirect[1] = (struct desc){B, SECTOR, D_NEXT | D_WRITE, 2};
        indirect[2] = (struct desc){S, 1, D_WRITE, 0};
        d[0] = (struct desc){(uint64_t)(uintptr_t)indirect, 3 * 16 - 5, D_INDIRECT, 0};
        return submit(0);
    case 5: /* header and data, all device-readable: nowhere to put the status */
        hdr->type = T_OUT;
        d[0] = (struct desc){H, 16, D_NEXT, 1};
        d[1] = (struct desc){B, SECTOR, 0, 0};
        return submit(0);
    case 6: /* the available ring names a descriptor beyond the table */
        return submit(100);
    }
    return 0;
}

int probe_main(void)
{
    hostile = cmdline_has("hostile") && cmdline_u64("hostile", 0);
    timeout_ticks = tsc_per_ms() * 2000;
    ram_end = memmap_ram_end();

    /* Bus 0, function 0 of each slot. */
    int slot = -1;
    for (unsigned s = 0; s < 32 && slot < 0; s++)
        if (pci_read32(s, 0) == 0x10421af4)
            slot = (int)s;
    if (slot < 0)
        probe_fail("no virtio-blk (1af4:1042) on PCI bus 0");
    uint32_t bar_lo = pci_read32(slot, 0x10), bar_hi = pci_read32(slot, 0x14);
    if ((bar_lo & 0x7) != 0x4)
        probe_fail("BAR 0 is not a 64-bit memory BAR (0x%x)", bar_lo);
    bar_base = (bar_lo & ~0xfull) | (uint64_t)bar_hi << 32;
    if (!bar_base || bar_base + 0x8000 > (4ull << 30))
        probe_fail("BAR 0 at 0x%lx is unassigned or above 4 GiB", bar_base);
    if (!(pci_read32(slot, 0x04) & (1u << 20)))
        probe_fail("no capability list");
    /* Memory space, bus master, INTx off. */
    pci_write16(slot, 0x04, (1 << 1) | (1 << 2) | (1 << 10));

    unsigned found = 0, guard = 0;
    for (unsigned p = pci_read8(slot, 0x34) & 0xfc; p && guard < 48; p = pci_read8(slot, p + 1) & 0xfc, guard++) {
        uint32_t w0 = pci_read32(slot, p);
        if ((w0 & 0xff) != 0x09)
            continue;
        unsigned type = (w0 >> 24) & 0xff, bar = pci_read8(slot, p + 4);
        uint32_t off = pci_read32(slot, p + 8);
        if (bar != 0 || type < 1 || type > 4 || type == 3)
            continue;
        volatile uint8_t *at = (volatile uint8_t *)(uintptr_t)(bar_base + off);
        if (type == 1 && !common)
            common = at;
        else if (type == 4 && !devcfg)
            devcfg = at;
        else if (type == 2 && !notify_base) {
            notify_base = at;
            notify_mult = pci_read32(slot, p + 16);
        } else
            continue;
        found |= 1u << type;
    }
    if (found != ((1u << 1) | (1u << 2) | (1u << 4)))
        probe_fail("missing virtio capabilities (found mask 0x%x)", found);
    printf("virtio-blk at 00:%02x.0 BAR0 0x%lx: common +0x%lx notify +0x%lx (x%u) device +0x%lx\n", slot,
           bar_base, (uint64_t)(uintptr_t)common - bar_base, (uint64_t)(uintptr_t)notify_base - bar_base,
           notify_mult, (uint64_t)(uintptr_t)devcfg - bar_base);

    uint8_t *mem = alloc_pages(8 * 4096);
    if (!mem)
        probe_fail("out of memory");
    desc = (volatile struct desc *)mem;
    avail = (volatile struct avail *)(mem + 4096);
    used = (volatile struct used *)(mem + 2 * 4096);
    hdr = (struct blk_hdr *)(mem + 3 * 4096);
    status_byte = mem + 3 * 4096 + 64;
    indirect = (volatile struct desc *)(mem + 3 * 4096 + 1024);
    buf = mem + 4 * 4096;
    buf2 = mem + 5 * 4096;

    init_device(hostile);
    uint64_t capacity = *(volatile uint32_t *)devcfg | (uint64_t) * (volatile uint32_t *)(devcfg + 4) << 32;
    printf("features: device 0x%lx, driver 0x%lx; queue size %u, capacity %lu sectors\n", dev_features,
           drv_features, qsize, capacity);
    if (capacity < 8)
        probe_fail("capacity %lu sectors: the test needs at least 8", capacity);

    if (!hostile) {
        write_read_sector5("");
        memset(buf2, 0, SECTOR);
        request("IN sector 7", T_IN, 7, buf2, SECTOR, SECTOR + 1);
        if (cmdline_u64("check7", 0)) {
            fill_pattern(buf, "host-sector-07.\n");
            if (memcmp(buf, buf2, SECTOR))
                probe_fail("sector 7 does not hold the host's pattern (first bytes %02x %02x %02x %02x)", buf2[0],
                           buf2[1], buf2[2], buf2[3]);
        }
        request("FLUSH", T_FLUSH, 0, 0, 0, 1);
        memset(buf2, 0, 32);
        request("GET_ID", T_GET_ID, 0, buf2, 20, 21);
        char id[21];
        memcpy(id, buf2, 20);
        id[20] = 0;
        for (int i = 0; i < 20 && id[i]; i++)
            if (id[i] <= ' ' || id[i] > '~')
                id[i] = '?';
        probe_pass("capacity=%lu id=%s qsize=%u wrote+read sector 5, read sector 7%s, flush ok", capacity,
                   id[0] ? id : "(empty)", qsize, cmdline_u64("check7", 0) ? " (host pattern ok)" : "");
    }

    write_read_sector5("before hostile:");
    unsigned resets = 0, tested = 0, bad = 0;
    for (unsigned c = 0; c < NCASES; c++) {
        if (c == 4 && !(drv_features & F_INDIRECT)) {
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
        uint8_t st = *(volatile uint8_t *)(common + CC_STATUS);
        if (r == R_DONE) {
            printf("case %u (%s): completed, used id %u len %u, status byte 0x%02x%s, device status 0x%02x\n", c,
                   case_names[c], last_id, last_len, *status_byte,
                   *status_byte == 0xee ? " (untouched)" : "", st);
            if (last_len != 0 && *status_byte != 1 /* IOERR */)
                bad++, printf("case %u: FAILED: completed with used len %u and status 0x%02x\n", c, last_len,
                              *status_byte);
        } else {
            printf("case %u (%s): %s, device status 0x%02x\n", c, case_names[c],
                   r == R_NEEDS_RESET ? "device set DEVICE_NEEDS_RESET" : "TIMED OUT (no completion, no reset)", st);
            if (r != R_NEEDS_RESET)
                bad++;
        }
        if (r != R_DONE || (st & (ST_NEEDS_RESET | ST_FAILED))) {
            init_device(1);
            resets++;
        }
    }
    write_read_sector5("after hostile:");
    if (bad)
        probe_fail("%u of %u hostile cases misbehaved (see above)", bad, tested);
    probe_pass("hostile: %u cases survived, %u device resets, final write/read ok", tested, resets);
}
