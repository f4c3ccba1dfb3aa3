/* A minimal polling virtio-pci (modern) driver for a virtio-blk function
 * (vendor 0x1af4, device 0x1042) on PCI bus 0, shared by the probes that use a
 * disk (probes/virtio_blk.c checks the device, probes/virtio_blk_bench.c
 * measures it).
 *
 * vblk_find() runs at ring 0 (port I/O: bus 0 scan through 0xcf8/0xcfc, the
 * capability list, BAR 0). Everything else only touches the BAR and guest RAM
 * and is meant to run at CPL 3 (run_at_cpl3), where MMIO is cheap on hosts
 * that emulate ring 0. No interrupts: the driver polls the used ring.
 *
 * One queue (queue 0). The caller builds descriptor chains in vblk.desc and
 * makes their heads available; vblk_submit() does one chain synchronously,
 * vblk_make_avail()/vblk_notify()/vblk_poll() keep several in flight. */
#ifndef PROBE_VIRTIO_BLK_H
#define PROBE_VIRTIO_BLK_H

#include <stdint.h>

/* Device status bits. */
#define VBLK_ST_ACK 1
#define VBLK_ST_DRIVER 2
#define VBLK_ST_DRIVER_OK 4
#define VBLK_ST_FEATURES_OK 8
#define VBLK_ST_NEEDS_RESET 0x40
#define VBLK_ST_FAILED 0x80

/* Offsets in the common configuration structure. */
#define VBLK_CC_STATUS 0x14

#define VBLK_F_INDIRECT (1ull << 28)
#define VBLK_F_VERSION_1 (1ull << 32)

/* Descriptor flags. */
#define VBLK_D_NEXT 1
#define VBLK_D_WRITE 2
#define VBLK_D_INDIRECT 4

/* Request types. */
#define VBLK_T_IN 0
#define VBLK_T_OUT 1
#define VBLK_T_FLUSH 4
#define VBLK_T_GET_ID 8

/* The rings fit one 4 KiB page each up to this size. */
#define VBLK_QSIZE_MAX 256
#define VBLK_SECTOR 512

/* Outcomes of vblk_submit(). */
#define VBLK_DONE 1
#define VBLK_NEEDS_RESET 2
#define VBLK_TIMEOUT 3

struct vblk_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
struct vblk_avail {
    uint16_t flags, idx, ring[VBLK_QSIZE_MAX], used_event;
};
struct vblk_used {
    uint16_t flags, idx;
    struct {
        uint32_t id, len;
    } ring[VBLK_QSIZE_MAX];
    uint16_t avail_event;
};
struct vblk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
};

struct vblk {
    /* Found at ring 0 by vblk_find(). */
    unsigned slot;
    uint64_t bar_base;
    volatile uint8_t *common, *devcfg, *notify_base;
    uint32_t notify_mult;
    /* Rings: three pages from alloc_pages(), set by vblk_find(). */
    volatile struct vblk_desc *desc;
    volatile struct vblk_avail *avail;
    volatile struct vblk_used *used;
    /* Negotiated by vblk_init(). */
    uint64_t timeout_ticks; /* TSC ticks vblk_submit() and the reset wait at most */
    uint64_t dev_features, drv_features;
    uint16_t qsize, notify_off;
    /* Ring state. */
    uint16_t avail_idx, used_seen;
    /* The last completion vblk_submit() or vblk_poll() saw. */
    uint32_t last_id, last_len;
    int init_step; /* where vblk_init() stopped: 1 reset, 2 features, 3 FEATURES_OK, 4 queue, 5 DRIVER_OK */
};

/* Ring 0: finds the first virtio-blk on bus 0, enables memory space and bus
 * mastering, locates the common, notify and device configuration, allocates
 * the rings, and prints where it found them. Fails the probe when anything is
 * missing. timeout_ms bounds every later wait. */
void vblk_find(struct vblk *d, uint64_t timeout_ms);

/* CPL 3: resets the device and brings it to DRIVER_OK with VERSION_1 plus the
 * offered subset of `extra_features`, and queue 0 with min(device maximum,
 * want_qsize) entries (want_qsize <= VBLK_QSIZE_MAX). Returns 0, or the step
 * that failed (also in d->init_step). */
uint64_t vblk_init(struct vblk *d, uint64_t extra_features, uint16_t want_qsize);

/* The capacity in 512-byte sectors (device configuration). */
uint64_t vblk_capacity(const struct vblk *d);
/* The device status register. */
uint8_t vblk_status(const struct vblk *d);

/* Puts a chain head in the available ring (no notification). */
void vblk_make_avail(struct vblk *d, uint16_t head);
/* Tells the device that queue 0 has new entries, unless it asked not to be told
 * (VIRTQ_USED_F_NO_NOTIFY: it polls the ring). */
void vblk_notify(struct vblk *d);
/* Takes the next used entry if there is one: returns 1 and sets last_id and
 * last_len, else 0. */
int vblk_poll(struct vblk *d);
/* One chain: make available, notify, poll until it is used (VBLK_DONE), the
 * device sets DEVICE_NEEDS_RESET, or the timeout (VBLK_TIMEOUT). */
uint64_t vblk_submit(struct vblk *d, uint16_t head);

/* Fills descriptors first, first+1 (and first+2 with data) with a
 * well-formed request: header, data buffer (device-writable for IN and
 * GET_ID), status byte. Returns the number of descriptors used. */
unsigned vblk_build_request(struct vblk *d, uint16_t first, struct vblk_hdr *hdr, uint32_t type, uint64_t sector,
                            void *data, uint32_t len, volatile uint8_t *status);

#endif
