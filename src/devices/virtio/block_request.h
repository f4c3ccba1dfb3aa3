// virtio-blk wire formats (virtio 1.x section 5.2) and the parsing of one request chain: the
// 16-byte header from the start of the readable bytes (split across buffers or not), the data
// after it, and the status byte as the last writable byte. Parsing only reads and checks; the
// device (block.h) does the I/O.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace kdom::devices::virtio {

inline constexpr uint64_t kBlockSectorSize = 512;
inline constexpr uint32_t kBlockIdBytes = 20;

// Device feature bits (5.2.3).
inline constexpr uint64_t kBlockFeatureSizeMax = 1ULL << 1;
inline constexpr uint64_t kBlockFeatureSegMax = 1ULL << 2;
inline constexpr uint64_t kBlockFeatureGeometry = 1ULL << 4;
inline constexpr uint64_t kBlockFeatureRo = 1ULL << 5;
inline constexpr uint64_t kBlockFeatureBlkSize = 1ULL << 6;
inline constexpr uint64_t kBlockFeatureFlush = 1ULL << 9;
inline constexpr uint64_t kBlockFeatureTopology = 1ULL << 10;
inline constexpr uint64_t kBlockFeatureConfigWce = 1ULL << 11;
inline constexpr uint64_t kBlockFeatureMq = 1ULL << 12;
inline constexpr uint64_t kBlockFeatureDiscard = 1ULL << 13;
inline constexpr uint64_t kBlockFeatureWriteZeroes = 1ULL << 14;

// Request types (5.2.6).
inline constexpr uint32_t kBlockRequestIn = 0;
inline constexpr uint32_t kBlockRequestOut = 1;
inline constexpr uint32_t kBlockRequestFlush = 4;
inline constexpr uint32_t kBlockRequestGetId = 8;
inline constexpr uint32_t kBlockRequestDiscard = 11;
inline constexpr uint32_t kBlockRequestWriteZeroes = 13;

// Status byte values.
inline constexpr uint8_t kBlockStatusOk = 0;
inline constexpr uint8_t kBlockStatusIoErr = 1;
inline constexpr uint8_t kBlockStatusUnsupp = 2;

// Flags of a discard / write-zeroes segment.
inline constexpr uint32_t kBlockSegmentFlagUnmap = 1;

#pragma pack(push, 1)
struct BlockRequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
struct BlockDiscardSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
// struct virtio_blk_config (5.2.4), up to the secure-erase fields (zoned ones are not offered).
struct BlockConfigSpace {
  uint64_t capacity;
  uint32_t size_max;
  uint32_t seg_max;
  uint16_t geometry_cylinders;
  uint8_t geometry_heads;
  uint8_t geometry_sectors;
  uint32_t blk_size;
  uint8_t topology_physical_block_exp;
  uint8_t topology_alignment_offset;
  uint16_t topology_min_io_size;
  uint32_t topology_opt_io_size;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
  uint32_t max_secure_erase_sectors;
  uint32_t max_secure_erase_seg;
  uint32_t secure_erase_sector_alignment;
};
#pragma pack(pop)
static_assert(sizeof(BlockRequestHeader) == 16);
static_assert(sizeof(BlockDiscardSegment) == 16);
static_assert(offsetof(BlockConfigSpace, capacity) == 0);
static_assert(offsetof(BlockConfigSpace, size_max) == 8);
static_assert(offsetof(BlockConfigSpace, seg_max) == 12);
static_assert(offsetof(BlockConfigSpace, geometry_cylinders) == 16);
static_assert(offsetof(BlockConfigSpace, blk_size) == 20);
static_assert(offsetof(BlockConfigSpace, topology_physical_block_exp) == 24);
static_assert(offsetof(BlockConfigSpace, writeback) == 32);
static_assert(offsetof(BlockConfigSpace, num_queues) == 34);
static_assert(offsetof(BlockConfigSpace, max_discard_sectors) == 36);
static_assert(offsetof(BlockConfigSpace, max_discard_seg) == 40);
static_assert(offsetof(BlockConfigSpace, discard_sector_alignment) == 44);
static_assert(offsetof(BlockConfigSpace, max_write_zeroes_sectors) == 48);
static_assert(offsetof(BlockConfigSpace, max_write_zeroes_seg) == 52);
static_assert(offsetof(BlockConfigSpace, write_zeroes_may_unmap) == 56);
static_assert(offsetof(BlockConfigSpace, max_secure_erase_sectors) == 60);
static_assert(sizeof(BlockConfigSpace) == 72);

// One request chain, split into its parts. Offsets count bytes within the readable (or the
// writable) part of the chain, in buffer order.
struct BlockRequest {
  BlockRequestHeader header{};
  // Readable bytes after the header: data to write (OUT) or segments (DISCARD/WRITE_ZEROES).
  uint64_t readable_data_bytes = 0;
  // Writable bytes before the status byte: room for data read (IN) or the id (GET_ID).
  uint64_t writable_data_bytes = 0;
  // Guest-physical address of the status byte; absent when the chain has no writable byte.
  std::optional<uint64_t> status_gpa;
  // Set when the chain cannot be served (header too short, no status byte); the request then
  // fails with IOERR where status_gpa exists.
  std::optional<std::string> malformed;
};

// Splits `chain` (whose buffers the Virtqueue has bounds-checked) into a BlockRequest. Reads
// the header from guest memory; never throws for guest-controlled content.
BlockRequest parse_block_request(const GuestMemory& memory, const DescriptorChain& chain);

// Copies `length` bytes starting `offset` bytes into the chain's readable part to `out`.
// Returns false (copying nothing certain) when the readable part is too short.
bool read_chain_bytes(const GuestMemory& memory, const DescriptorChain& chain, uint64_t offset, void* out,
                      uint64_t length);

// Host iovecs for `length` bytes starting `offset` bytes into the chain's readable
// (device_writable false) or writable part; empty plus false when the part is too short.
bool chain_iovecs(const GuestMemory& memory, const DescriptorChain& chain, bool device_writable, uint64_t offset,
                  uint64_t length, std::vector<iovec>& out);

}  // namespace kdom::devices::virtio
