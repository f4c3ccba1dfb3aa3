#!/usr/bin/env python3
"""Writes the small seed inputs in tests/fuzz/seeds/ (layout: tests/fuzz/fuzz_ring.h): well-formed
rings with a few requests each, so the fuzzers start from chains the devices accept."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
NEXT, WRITE, INDIRECT = 1, 2, 4


def ring(log2_size, descs, heads, event_idx=False, indirect=False, data=(), length=0x1000):
    """Byte 0/1 header, then guest RAM: descriptor table, avail ring, used ring, data."""
    size = 1 << log2_size
    mode = log2_size | (0x10 if event_idx else 0) | (0x20 if indirect else 0)
    mem = bytearray(length)
    for i, (addr, ln, flags, nxt) in enumerate(descs):
        struct.pack_into("<QIHH", mem, 16 * i, addr, ln, flags, nxt)
    avail = 16 * size
    struct.pack_into("<HH", mem, avail, 0, len(heads))
    for i, head in enumerate(heads):
        struct.pack_into("<H", mem, avail + 4 + 2 * i, head)
    if event_idx:  # used_event: interrupt after the first used entry
        struct.pack_into("<H", mem, avail + 4 + 2 * size, 0)
    for gpa, blob in data:
        mem[gpa:gpa + len(blob)] = blob
    return bytes([mode, 0]) + bytes(mem)


def blk_header(kind, sector):
    return struct.pack("<IIQ", kind, 0, sector)


def write(target, name, blob):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


# virtio-rng / plain queue: two writable buffers, one chained, one through an indirect table.
rng = ring(3, [(0x400, 64, WRITE, 0), (0x500, 16, NEXT | WRITE, 2), (0x510, 32, WRITE, 0), (0x600, 32, INDIRECT, 0)],
           [0, 1, 3], indirect=True, event_idx=True,
           data=[(0x600, struct.pack("<QIHHQIHH", 0x700, 8, NEXT | WRITE, 1, 0x708, 8, WRITE, 0))])
write("fuzz_entropy", "three-requests", rng)
write("fuzz_virtqueue", "three-chains", rng)
write("fuzz_virtqueue", "one-readable", ring(0, [(0x100, 4, 0, 0)], [0]))
# virtio-console: output from a readable buffer, then room for host input in a writable one.
write("fuzz_console", "output-then-input",
      ring(2, [(0x400, 16, 0, 0), (0x500, 64, WRITE, 0)], [0, 1], data=[(0x400, b"hello from hvc0\n")]))

# virtio-blk: IN, OUT, FLUSH, GET_ID, DISCARD and WRITE_ZEROES requests.
descs, heads, data = [], [], []
def request(header_gpa, header, middle, status_gpa):
    heads.append(len(descs))
    data.append((header_gpa, header))
    chain = [(header_gpa, 16, 0)] + middle + [(status_gpa, 1, WRITE)]
    base = len(descs)
    for i, (addr, ln, flags) in enumerate(chain):
        last = i == len(chain) - 1
        descs.append((addr, ln, flags | (0 if last else NEXT), 0 if last else base + i + 1))

request(0x800, blk_header(0, 3), [(0x1000, 1024, WRITE)], 0x7f0)
request(0x810, blk_header(1, 5), [(0x1400, 512, 0)], 0x7f1)
request(0x820, blk_header(4, 0), [], 0x7f2)
request(0x830, blk_header(8, 0), [(0x1800, 20, WRITE)], 0x7f3)
request(0x840, blk_header(11, 0), [(0x900, 16, 0)], 0x7f4)
request(0x850, blk_header(13, 0), [(0x910, 16, 0)], 0x7f5)
data += [(0x900, struct.pack("<QII", 8, 8, 0)), (0x910, struct.pack("<QII", 16, 8, 1))]
write("fuzz_block", "six-requests", ring(5, descs, heads, data=data, length=0x1a00))
write("fuzz_block", "six-requests-ro", bytes([0x45]) + ring(5, descs, heads, data=data, length=0x1a00)[1:])

# virtio-vsock (guest CID 3, fuzz_vsock's host listener on port 1): REQUEST, RW with 8 bytes,
# CREDIT_REQUEST, SHUTDOWN(both), then a REQUEST to a port nobody listens on and an unknown op.
def vsock_packet(op, src_port=7000, dst_port=1, payload=b"", flags=0, dst_cid=2):
    return struct.pack("<QQIIIHHIII", 3, dst_cid, src_port, dst_port, len(payload), 1, op, flags,
                       65536, 0) + payload

packets = [vsock_packet(1), vsock_packet(5, payload=b"kdom-rw!"), vsock_packet(7), vsock_packet(4, flags=3),
           vsock_packet(1, src_port=7001, dst_port=99), vsock_packet(42, src_port=7002)]
descs, data, gpa = [], [], 0x800
for p in packets:
    descs.append((gpa, len(p), 0, 0))
    data.append((gpa, p))
    gpa += 0x80
write("fuzz_vsock", "stream-lifecycle", ring(3, descs, list(range(len(packets))), data=data, length=0xc00))
# virtio-balloon: byte 1 picks the queue role (0 inflate, 1 deflate, 2 report, 3 stats).
pfns = struct.pack("<6I", 1, 2, 3, 15, 16, 0xFFFFFFFF)
balloon_pages = ring(2, [(0x800, len(pfns), 0, 0), (0x900, 7, 0, 0)], [0, 1], data=[(0x800, pfns), (0x900, pfns[:7])])
for role, name in enumerate(["inflate", "deflate"]):
    write("fuzz_balloon", name, balloon_pages[:1] + bytes([role]) + balloon_pages[2:])
report = ring(1, [(0x1000, 0x1000, WRITE, 0), (0x100, 0x80, WRITE, 0)], [0, 1], length=0x1f00)
write("fuzz_balloon", "report", report[:1] + bytes([2]) + report[2:])
stats = b"".join(struct.pack("<HQ", tag, 1000 * tag) for tag in range(11)) + b"\x01"
stats_ring = ring(1, [(0x800, len(stats), 0, 0), (0x900, len(stats), 0, 0)], [0, 1], data=[(0x800, stats), (0x900, stats)])
write("fuzz_balloon", "stats", stats_ring[:1] + bytes([3]) + stats_ring[2:])
# virtio-net transmit: a header and a frame in two readable buffers, and one in a single buffer.
net_header = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 0)
write("fuzz_net", "two-frames-tx",
      ring(3, [(0x400, 12, NEXT, 1), (0x500, 60, 0, 0), (0x600, 72, 0, 0)], [0, 2],
           data=[(0x400, net_header), (0x600, net_header)]) + bytes([0x00]))
# virtio-net receive (byte 0 bit 6): four writable buffers, mergeable (last byte bit 0).
rx = bytearray(ring(3, [(0x400, 1526, WRITE, 0), (0xa00, 1526, WRITE, 0), (0x1000, 64, WRITE, 0),
                        (0x1100, 2048, WRITE, 0)], [0, 1, 2, 3], event_idx=True, length=0x1200))
rx[0] |= 0x40
write("fuzz_net", "four-buffers-rx-mergeable", bytes(rx) + bytes([0x0b]))
write("fuzz_net", "four-buffers-rx", bytes(rx) + bytes([0x0a]))


# virtio PCI transport (tests/fuzz/fuzz_virtio_pci.cc): 12-byte operations, the set-up a Linux
# driver makes, then a request in guest RAM and its notification.
def op(kind, offset, size, value=0):
    return struct.pack("<BHBQ", kind, offset, {1: 0, 2: 1, 4: 2, 8: 3}[size], value)


CFG_WRITE, CFG_READ, BAR_WRITE, BAR_READ, RAM = range(5)
ACK, DRIVER, DRIVER_OK, FEATURES_OK = 1, 2, 4, 8
QUEUE = 0x1000  # descriptors at 0x1000, available ring at 0x1100, used ring at 0x1200
pci_ops = [op(CFG_WRITE, 0x04, 2, 0x6),                     # command: memory space, bus master
           op(CFG_READ, 0x34, 1),                           # capabilities pointer
           op(BAR_WRITE, 0x14, 1, 0), op(BAR_WRITE, 0x14, 1, ACK), op(BAR_WRITE, 0x14, 1, ACK | DRIVER),
           op(BAR_WRITE, 0x00, 4, 1), op(BAR_READ, 0x04, 4),  # device features, high half
           op(BAR_WRITE, 0x08, 4, 1), op(BAR_WRITE, 0x0c, 4, 1),  # VERSION_1
           op(BAR_WRITE, 0x14, 1, ACK | DRIVER | FEATURES_OK), op(BAR_READ, 0x14, 1),
           op(BAR_WRITE, 0x16, 2, 0), op(BAR_WRITE, 0x18, 2, 8), op(BAR_WRITE, 0x1a, 2, 0),
           op(BAR_WRITE, 0x20, 8, QUEUE), op(BAR_WRITE, 0x28, 8, QUEUE + 0x100),
           op(BAR_WRITE, 0x30, 8, QUEUE + 0x200), op(BAR_WRITE, 0x1c, 2, 1),
           op(BAR_WRITE, 0x4000, 4, 0xfee00000), op(BAR_WRITE, 0x4008, 4, 0x41), op(BAR_WRITE, 0x400c, 4, 0),
           op(BAR_WRITE, 0x14, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK),
           # descriptor 0: 64 writable bytes at 0x2000; avail ring: flags 0, idx 1, ring[0] = 0
           op(RAM, QUEUE // 8, 8, 0x2000), op(RAM, QUEUE // 8 + 1, 8, 64 | WRITE << 32),
           op(RAM, (QUEUE + 0x100) // 8, 8, 1 << 16),
           op(BAR_WRITE, 0x3000, 2, 0), op(BAR_READ, 0x1000, 1), op(BAR_READ, 0x4800, 8)]
write("fuzz_virtio_pci", "linux-setup-and-one-request", b"".join(pci_ops))
