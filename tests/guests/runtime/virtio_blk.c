/* The polling virtio-blk driver shared by the disk probes (see virtio_blk.h):
 * PCI discovery at ring 0, device initialisation and queue 0 at CPL 3. */
#include "virtio_blk.h"

#include "probe.h"

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

/* Common configuration (virtio 1.x, 4.1.4.3). */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX 0x10
#define CC_NUMQ 0x12
#define CC_QSELECT 0x16
#define CC_QSIZE 0x18
#define CC_QMSIX 0x1a
#define CC_QENABLE 0x1c
#define CC_QNOTIFYOFF 0x1e
#define CC_QDESC 0x20
#define CC_QDRIVER 0x28
#define CC_QDEVICE 0x30

#define barrier() __asm__ volatile("" ::: "memory")

void vblk_find(struct vblk *d, uint64_t timeout_ms)
{
    memset(d, 0, sizeof *d);
    d->timeout_ticks = tsc_per_ms() * timeout_ms;

    /* Bus 0, function 0 of each slot. */
    int slot = -1;
    for (unsigned s = 0; s < 32 && slot < 0; s++)
        if (pci_read32(s, 0) == 0x10421af4)
            slot = (int)s;
    if (slot < 0)
        probe_fail("no virtio-blk (1af4:1042) on PCI bus 0");
    d->slot = (unsigned)slot;
    if (!(pci_read32(slot, 0x04) & (1u << 20)))
        probe_fail("no capability list");
    /* Memory space, bus master, INTx off. */
    pci_write16(slot, 0x04, (1 << 1) | (1 << 2) | (1 << 10));

    /* The vendor capabilities say which BAR holds each structure: kdom uses
     * BAR 0, QEMU BAR 4; all three must be in the same one here. */
    unsigned found = 0, guard = 0, bar = 6;
    uint32_t offsets[5] = {0};
    for (unsigned p = pci_read8(slot, 0x34) & 0xfc; p && guard < 48; p = pci_read8(slot, p + 1) & 0xfc, guard++) {
        uint32_t w0 = pci_read32(slot, p);
        if ((w0 & 0xff) != 0x09)
            continue;
        unsigned type = (w0 >> 24) & 0xff, cap_bar = pci_read8(slot, p + 4);
        if (type < 1 || type > 4 || type == 3 || (found & (1u << type)) || cap_bar > 5)
            continue;
        if (bar == 6)
            bar = cap_bar;
        else if (cap_bar != bar)
            probe_fail("virtio structures in BARs %u and %u: this driver wants one", bar, cap_bar);
        offsets[type] = pci_read32(slot, p + 8);
        if (type == 2)
            d->notify_mult = pci_read32(slot, p + 16);
        found |= 1u << type;
    }
    if (found != ((1u << 1) | (1u << 2) | (1u << 4)))
        probe_fail("missing virtio capabilities (found mask 0x%x)", found);
    uint32_t bar_lo = pci_read32(slot, 0x10 + 4 * bar);
    if ((bar_lo & 0x1) || (bar_lo & 0x6) == 0x2)
        probe_fail("BAR %u is not a 32- or 64-bit memory BAR (0x%x)", bar, bar_lo);
    d->bar_base = bar_lo & ~0xfull;
    if ((bar_lo & 0x6) == 0x4)
        d->bar_base |= (uint64_t)pci_read32(slot, 0x14 + 4 * bar) << 32;
    if (!d->bar_base || d->bar_base + 0x8000 > (4ull << 30))
        probe_fail("BAR %u at 0x%lx is unassigned or above 4 GiB", bar, d->bar_base);
    d->common = (volatile uint8_t *)(uintptr_t)(d->bar_base + offsets[1]);
    d->notify_base = (volatile uint8_t *)(uintptr_t)(d->bar_base + offsets[2]);
    d->devcfg = (volatile uint8_t *)(uintptr_t)(d->bar_base + offsets[4]);
    printf("virtio-blk at 00:%02x.0 BAR%u 0x%lx: common +0x%x notify +0x%x (x%u) device +0x%x\n", slot, bar,
           d->bar_base, offsets[1], offsets[2], d->notify_mult, offsets[4]);

    uint8_t *rings = alloc_pages(3 * 4096);
    if (!rings)
        probe_fail("out of memory for the virtqueue");
    d->desc = (volatile struct vblk_desc *)rings;
    d->avail = (volatile struct vblk_avail *)(rings + 4096);
    d->used = (volatile struct vblk_used *)(rings + 2 * 4096);
}

static uint8_t cr8(const struct vblk *d, unsigned o) { return *(volatile uint8_t *)(d->common + o); }
static uint16_t cr16(const struct vblk *d, unsigned o) { return *(volatile uint16_t *)(d->common + o); }
static uint32_t cr32(const struct vblk *d, unsigned o) { return *(volatile uint32_t *)(d->common + o); }
static void cw8(struct vblk *d, unsigned o, uint8_t v) { *(volatile uint8_t *)(d->common + o) = v; }
static void cw16(struct vblk *d, unsigned o, uint16_t v) { *(volatile uint16_t *)(d->common + o) = v; }
static void cw32(struct vblk *d, unsigned o, uint32_t v) { *(volatile uint32_t *)(d->common + o) = v; }
static void cw64(struct vblk *d, unsigned o, uint64_t v)
{
    cw32(d, o, (uint32_t)v);
    cw32(d, o + 4, (uint32_t)(v >> 32));
}

uint8_t vblk_status(const struct vblk *d) { return cr8(d, VBLK_CC_STATUS); }

uint64_t vblk_init(struct vblk *d, uint64_t extra_features, uint16_t want_qsize)
{
    uint64_t deadline = rdtsc() + d->timeout_ticks;
    d->init_step = 1; /* reset */
    cw8(d, VBLK_CC_STATUS, 0);
    while (cr8(d, VBLK_CC_STATUS) != 0)
        if ((int64_t)(rdtsc() - deadline) > 0)
            return 1;
    d->init_step = 2;
    cw8(d, VBLK_CC_STATUS, VBLK_ST_ACK);
    cw8(d, VBLK_CC_STATUS, VBLK_ST_ACK | VBLK_ST_DRIVER);
    cw32(d, CC_DFSELECT, 0);
    uint64_t lo = cr32(d, CC_DF);
    cw32(d, CC_DFSELECT, 1);
    d->dev_features = lo | (uint64_t)cr32(d, CC_DF) << 32;
    if (!(d->dev_features & VBLK_F_VERSION_1))
        return 2;
    d->drv_features = VBLK_F_VERSION_1 | (d->dev_features & extra_features);
    cw32(d, CC_GFSELECT, 0);
    cw32(d, CC_GF, (uint32_t)d->drv_features);
    cw32(d, CC_GFSELECT, 1);
    cw32(d, CC_GF, (uint32_t)(d->drv_features >> 32));
    d->init_step = 3;
    cw8(d, VBLK_CC_STATUS, VBLK_ST_ACK | VBLK_ST_DRIVER | VBLK_ST_FEATURES_OK);
    if (!(cr8(d, VBLK_CC_STATUS) & VBLK_ST_FEATURES_OK))
        return 3;
    d->init_step = 4;
    cw16(d, CC_MSIX, 0xffff);
    if (cr16(d, CC_NUMQ) < 1)
        return 4;
    cw16(d, CC_QSELECT, 0);
    uint16_t max = cr16(d, CC_QSIZE);
    if (max == 0 || want_qsize == 0)
        return 4;
    if (want_qsize > VBLK_QSIZE_MAX)
        want_qsize = VBLK_QSIZE_MAX;
    d->qsize = max < want_qsize ? max : want_qsize;
    memset((void *)d->desc, 0, 4096);
    memset((void *)d->avail, 0, 4096);
    memset((void *)d->used, 0, 4096);
    d->avail_idx = d->used_seen = 0;
    cw16(d, CC_QSIZE, d->qsize);
    cw16(d, CC_QMSIX, 0xffff);
    d->notify_off = cr16(d, CC_QNOTIFYOFF);
    cw64(d, CC_QDESC, (uint64_t)(uintptr_t)d->desc);
    cw64(d, CC_QDRIVER, (uint64_t)(uintptr_t)d->avail);
    cw64(d, CC_QDEVICE, (uint64_t)(uintptr_t)d->used);
    cw16(d, CC_QENABLE, 1);
    d->init_step = 5;
    cw8(d, VBLK_CC_STATUS, VBLK_ST_ACK | VBLK_ST_DRIVER | VBLK_ST_FEATURES_OK | VBLK_ST_DRIVER_OK);
    uint8_t s = cr8(d, VBLK_CC_STATUS);
    if (!(s & VBLK_ST_DRIVER_OK) || (s & (VBLK_ST_NEEDS_RESET | VBLK_ST_FAILED)))
        return 5;
    return 0;
}

uint64_t vblk_capacity(const struct vblk *d)
{
    return *(volatile uint32_t *)d->devcfg | (uint64_t) * (volatile uint32_t *)(d->devcfg + 4) << 32;
}

void vblk_make_avail(struct vblk *d, uint16_t head)
{
    d->avail->ring[d->avail_idx % d->qsize] = head;
    barrier();
    d->avail->idx = ++d->avail_idx;
    barrier();
}

void vblk_notify(struct vblk *d)
{
    /* As Linux's driver: skip the notification while the device says it is polling the ring
     * (used flags NO_NOTIFY). The fence orders our avail idx store before the flag load, as
     * the device orders its flag store before its avail idx load. */
    __asm__ volatile("mfence" ::: "memory");
    if (d->used->flags & 1)
        return;
    *(volatile uint16_t *)(d->notify_base + (uint64_t)d->notify_off * d->notify_mult) = 0;
}

int vblk_poll(struct vblk *d)
{
    if (d->used->idx == d->used_seen)
        return 0;
    barrier();
    d->last_id = d->used->ring[d->used_seen % d->qsize].id;
    d->last_len = d->used->ring[d->used_seen % d->qsize].len;
    d->used_seen++;
    return 1;
}

uint64_t vblk_submit(struct vblk *d, uint16_t head)
{
    vblk_make_avail(d, head);
    vblk_notify(d);
    uint64_t deadline = rdtsc() + d->timeout_ticks;
    for (unsigned spins = 1;; spins++) {
        if (vblk_poll(d))
            return VBLK_DONE;
        /* The status register is MMIO (a VM exit per read): look now and then, not per spin. */
        if ((spins & 0xff) == 0 && (cr8(d, VBLK_CC_STATUS) & VBLK_ST_NEEDS_RESET))
            return VBLK_NEEDS_RESET;
        if ((int64_t)(rdtsc() - deadline) > 0)
            return VBLK_TIMEOUT;
        cpu_relax();
    }
}

unsigned vblk_build_request(struct vblk *d, uint16_t first, struct vblk_hdr *hdr, uint32_t type, uint64_t sector,
                            void *data, uint32_t len, volatile uint8_t *status)
{
    hdr->type = type;
    hdr->reserved = 0;
    hdr->sector = sector;
    *status = 0xee;
    int device_writes = type == VBLK_T_IN || type == VBLK_T_GET_ID;
    uint16_t n = first;
    d->desc[n] = (struct vblk_desc){(uint64_t)(uintptr_t)hdr, sizeof *hdr, VBLK_D_NEXT, (uint16_t)(n + 1)};
    n++;
    if (len) {
        d->desc[n] = (struct vblk_desc){(uint64_t)(uintptr_t)data, len,
                                        (uint16_t)(VBLK_D_NEXT | (device_writes ? VBLK_D_WRITE : 0)),
                                        (uint16_t)(n + 1)};
        n++;
    }
    d->desc[n] = (struct vblk_desc){(uint64_t)(uintptr_t)status, 1, VBLK_D_WRITE, 0};
    return (unsigned)(n + 1 - first);
}
