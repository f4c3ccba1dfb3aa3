// VirtioPci: the virtio 1.x modern PCI transport (common configuration, ISR, notifications,
// device configuration, MSI-X) around one VirtioDevice.
#include "devices/virtio/virtio_pci.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/error.h"
#include "base/log.h"
#include "snapshot/state_json.h"

namespace kdom::devices::virtio {
namespace {

uint32_t class_code_for(DeviceType type) {
  switch (type) {
    case DeviceType::kNet:
      return 0x020000;  // network controller, Ethernet
    case DeviceType::kBlock:
      return 0x018000;  // mass storage, other
    case DeviceType::kConsole:
      return 0x078000;  // simple communication controller, other
    default:
      return 0xff0000;  // unassigned class
  }
}

uint16_t queue_count(const VirtioDevice& device) {
  const size_t count = device.queue_max_sizes().size();
  if (count == 0 || count > VirtioPci::kMaxQueues) {
    throw Error("a virtio device needs 1 to " + std::to_string(VirtioPci::kMaxQueues) + " queues, not " +
                std::to_string(count));
  }
  return static_cast<uint16_t>(count);
}

uint64_t align_page(uint64_t value) { return (value + 0xfff) & ~uint64_t{0xfff}; }

// struct virtio_pci_cap after cap_vndr and cap_next (spec 4.1.4), and the notify cap's
// extra notify_off_multiplier.
std::vector<uint8_t> virtio_cap_body(uint8_t cfg_type, uint8_t bar, uint32_t offset, uint32_t length,
                                     std::optional<uint32_t> multiplier = std::nullopt) {
  std::vector<uint8_t> body;
  body.push_back(static_cast<uint8_t>(multiplier ? 20 : 16));  // cap_len
  body.push_back(cfg_type);
  body.push_back(bar);
  body.push_back(0);  // id
  body.push_back(0);  // padding
  body.push_back(0);
  auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) body.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  put32(offset);
  put32(length);
  if (multiplier) put32(*multiplier);
  return body;
}

uint64_t load_le(const uint8_t* bytes, size_t size) {
  uint64_t value = 0;
  for (size_t i = 0; i < size; ++i) value |= uint64_t{bytes[i]} << (8 * i);
  return value;
}

void store_le(uint8_t* bytes, size_t size, uint64_t value) {
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
}

}  // namespace

VirtioPci::VirtioPci(std::shared_ptr<VirtioDevice> device, const GuestMemory& memory,
                     std::shared_ptr<pci::MsixInterrupts> msix, std::shared_ptr<InterruptLine> intx)
    : pci::PciDevice(pci::PciIds{kVirtioPciVendorId,
                                 static_cast<uint16_t>(kVirtioPciDeviceIdBase + static_cast<uint16_t>(device->type())),
                                 1, class_code_for(device->type()), kVirtioPciVendorId, kVirtioPciSubsystemId,
                                 static_cast<uint8_t>(intx ? 1 : 0)}),
      device_(std::move(device)),
      memory_(memory),
      intx_(std::move(intx)),
      offered_features_(device_->offered_features() | kFeatureVersion1),
      num_queues_(queue_count(*device_)),
      msix_(static_cast<uint16_t>(num_queues_ + 1), std::move(msix)),
      queues_(num_queues_) {
  const std::vector<uint16_t> sizes = device_->queue_max_sizes();
  for (size_t i = 0; i < sizes.size(); ++i) {
    queues_[i].max_size = sizes[i];
    queues_[i].size = sizes[i];
  }
  pba_offset_ = kMsixTableOffset + align_page(msix_.table_bytes());
  bar_size_ = std::bit_ceil(pba_offset_ + align_page(msix_.pba_bytes()));
  add_bar(kBarIndex, pci::PciBar{pci::PciBarKind::kMemory64, bar_size_, false});
  add_capabilities();
  device_->set_failure_handler([this](const std::string& reason) { fail(reason); });
}

VirtioPci::~VirtioPci() {
  // The device's threads call back into this transport: stop them before it goes.
  std::lock_guard lock(mutex_);
  if (activated_) device_->reset();
  device_->set_failure_handler(nullptr);
}

void VirtioPci::add_capabilities() {
  const auto bar = static_cast<uint8_t>(kBarIndex);
  add_capability(pci::kCapabilityIdVendor, virtio_cap_body(kCapCommonCfg, bar, kCommonConfigOffset, common::kSize));
  add_capability(pci::kCapabilityIdVendor,
                 virtio_cap_body(kCapNotifyCfg, bar, kNotifyOffset, num_queues_ * kNotifyOffMultiplier,
                                 kNotifyOffMultiplier));
  add_capability(pci::kCapabilityIdVendor, virtio_cap_body(kCapIsrCfg, bar, kIsrOffset, 1));
  add_capability(pci::kCapabilityIdVendor,
                 virtio_cap_body(kCapDeviceCfg, bar, kDeviceConfigOffset, kDeviceConfigSize));
  // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and pci_cfg_data are the driver's to write.
  std::vector<uint8_t> cfg_body = virtio_cap_body(kCapPciCfg, 0, 0, 0, 0);
  std::vector<uint8_t> cfg_writable(cfg_body.size(), 0);
  cfg_writable[2] = 0xff;  // bar
  std::fill(cfg_writable.begin() + 6, cfg_writable.end(), 0xff);  // offset, length, pci_cfg_data
  pci_cfg_capability_ = add_capability(pci::kCapabilityIdVendor, cfg_body, cfg_writable);
  const std::vector<uint8_t> msix_body = msix_.capability_body(bar, static_cast<uint32_t>(kMsixTableOffset), bar,
                                                               static_cast<uint32_t>(pba_offset_));
  msix_capability_ = add_capability(pci::kCapabilityIdMsix, msix_body, pci::MsixTable::capability_writable());
}

void VirtioPci::config_written(uint32_t offset, uint32_t length) {
  // Message control of the MSI-X capability (config lock held).
  const uint32_t control = msix_capability_ + 2u;
  if (offset < control + 2 && offset + length > control) msix_.set_control(config_u16(control));
  // A write to pci_cfg_data is a write to the BAR (spec 4.1.4.9).
  const uint32_t window = pci_cfg_capability_ + 16u;
  if (offset < window + 4 && offset + length > window) {
    if (const auto access = pci_cfg_access()) {
      const uint32_t value = config_u32(window);
      uint8_t bytes[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                          static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
      write(access->first, std::span<const uint8_t>(bytes, access->second));
    }
  }
}

void VirtioPci::config_before_read(uint32_t offset, uint32_t length) {
  const uint32_t window = pci_cfg_capability_ + 16u;
  if (offset >= window + 4 || offset + length <= window) return;
  uint8_t bytes[4] = {};
  if (const auto access = pci_cfg_access()) read(access->first, std::span<uint8_t>(bytes, access->second));
  set_config_u32(window, uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 |
                             uint32_t{bytes[3]} << 24);
}

std::optional<std::pair<uint64_t, uint32_t>> VirtioPci::pci_cfg_access() const {
  const uint32_t cap = pci_cfg_capability_;
  const uint8_t bar = config_u8(cap + 4);
  const uint32_t offset = config_u32(cap + 8);
  const uint32_t length = config_u32(cap + 12);
  if (bar != kBarIndex || (length != 1 && length != 2 && length != 4) || offset % length != 0 ||
      offset + uint64_t{length} > bar_size_) {
    return std::nullopt;
  }
  return std::make_pair(uint64_t{offset}, length);
}

uint64_t VirtioPci::driver_features() const {
  std::lock_guard lock(mutex_);
  return driver_features_;
}

void VirtioPci::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (data.empty() || offset >= bar_size_ || data.size() > bar_size_ - offset) return;
  if (offset < kCommonConfigOffset + common::kSize) {
    read_common(offset - kCommonConfigOffset, data);
  } else if (offset == kIsrOffset) {
    // Reading the ISR clears it and deasserts INTx (spec 4.1.4.5.1).
    std::lock_guard lock(irq_mutex_);
    data[0] = isr_;
    isr_ = 0;
    if (intx_) intx_->set_level(false);
  } else if (offset >= kDeviceConfigOffset && offset + data.size() <= kDeviceConfigOffset + kDeviceConfigSize) {
    device_->read_config(offset - kDeviceConfigOffset, data);
  } else if (offset >= kMsixTableOffset && offset < kMsixTableOffset + msix_.table_bytes()) {
    msix_.read_table(offset - kMsixTableOffset, data);
  } else if (offset >= pba_offset_ && offset < pba_offset_ + msix_.pba_bytes()) {
    msix_.read_pba(offset - pba_offset_, data);
  }
  // The notification region and the gaps read as zero.
}

void VirtioPci::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty() || offset >= bar_size_ || data.size() > bar_size_ - offset) return;
  if (offset < kCommonConfigOffset + common::kSize) {
    write_common(offset - kCommonConfigOffset, data);
  } else if (offset >= kNotifyOffset && offset < kNotifyOffset + uint64_t{num_queues_} * kNotifyOffMultiplier) {
    const auto queue = static_cast<uint16_t>((offset - kNotifyOffset) / kNotifyOffMultiplier);
    if (notify_forwarder_)
      notify_forwarder_(queue);
    else
      notify(queue);
  } else if (offset >= kDeviceConfigOffset && offset + data.size() <= kDeviceConfigOffset + kDeviceConfigSize) {
    device_->write_config(offset - kDeviceConfigOffset, data);
  } else if (offset >= kMsixTableOffset && offset < kMsixTableOffset + msix_.table_bytes()) {
    msix_.write_table(offset - kMsixTableOffset, data);
  }
  // ISR and PBA are read-only.
}

VirtioPci::Queue* VirtioPci::selected_queue() {
  return queue_select_ < num_queues_ ? &queues_[queue_select_] : nullptr;
}

uint16_t VirtioPci::checked_vector(uint16_t vector) const {
  // A vector the table does not have reads back as NO_VECTOR (spec 4.1.5.1.2).
  return vector < msix_.size() ? vector : pci::kMsixNoVector;
}

void VirtioPci::common_image(uint8_t (&image)[common::kSize]) const {
  std::memset(image, 0, sizeof(image));
  using namespace common;
  const uint64_t device_word =
      device_feature_select_ < 2 ? (offered_features_ >> (32 * device_feature_select_)) & 0xffffffff : 0;
  const uint64_t driver_word =
      driver_feature_select_ < 2 ? (driver_features_ >> (32 * driver_feature_select_)) & 0xffffffff : 0;
  store_le(image + kDeviceFeatureSelect, 4, device_feature_select_);
  store_le(image + kDeviceFeature, 4, device_word);
  store_le(image + kDriverFeatureSelect, 4, driver_feature_select_);
  store_le(image + kDriverFeature, 4, driver_word);
  store_le(image + kMsixConfig, 2, msix_config_.load());
  store_le(image + kNumQueues, 2, num_queues_);
  image[kDeviceStatus] = status_.load();
  image[kConfigGeneration] = config_generation_.load();
  store_le(image + kQueueSelect, 2, queue_select_);
  if (queue_select_ < num_queues_) {
    const Queue& queue = queues_[queue_select_];
    store_le(image + kQueueSize, 2, queue.size);
    store_le(image + kQueueMsixVector, 2, queue.msix_vector.load());
    store_le(image + kQueueEnable, 2, queue.enabled ? 1 : 0);
    store_le(image + kQueueNotifyOff, 2, queue_select_);
    store_le(image + kQueueDesc, 8, queue.desc);
    store_le(image + kQueueDriver, 8, queue.driver);
    store_le(image + kQueueDevice, 8, queue.device);
  }
}

void VirtioPci::read_common(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  uint8_t image[common::kSize];
  common_image(image);
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < common::kSize ? image[offset + i] : 0;
}

void VirtioPci::write_common(uint64_t offset, std::span<const uint8_t> data) {
  using namespace common;
  std::lock_guard lock(mutex_);
  uint8_t image[kSize];
  common_image(image);
  const uint64_t end = std::min<uint64_t>(offset + data.size(), kSize);
  for (uint64_t at = offset; at < end; ++at) image[at] = data[at - offset];
  auto touched = [&](uint32_t field, uint32_t size) { return offset < field + size && end > field; };
  auto field = [&](uint32_t at, uint32_t size) { return load_le(image + at, size); };

  if (touched(kDeviceFeatureSelect, 4)) device_feature_select_ = static_cast<uint32_t>(field(kDeviceFeatureSelect, 4));
  if (touched(kDriverFeatureSelect, 4)) driver_feature_select_ = static_cast<uint32_t>(field(kDriverFeatureSelect, 4));
  if (touched(kDriverFeature, 4) && !(status_.load() & kStatusFeaturesOk) && driver_feature_select_ < 2) {
    const uint32_t shift = 32 * driver_feature_select_;
    driver_features_ = (driver_features_ & ~(uint64_t{0xffffffff} << shift)) | field(kDriverFeature, 4) << shift;
  }
  if (touched(kMsixConfig, 2)) msix_config_ = checked_vector(static_cast<uint16_t>(field(kMsixConfig, 2)));
  if (touched(kQueueSelect, 2)) queue_select_ = static_cast<uint16_t>(field(kQueueSelect, 2));
  if (Queue* queue = selected_queue()) {
    // Queue configuration is frozen once the driver has set DRIVER_OK.
    const bool configurable = !(status_.load() & kStatusDriverOk);
    if (touched(kQueueMsixVector, 2)) queue->msix_vector = checked_vector(static_cast<uint16_t>(field(kQueueMsixVector, 2)));
    if (configurable) {
      if (touched(kQueueSize, 2)) queue->size = static_cast<uint16_t>(field(kQueueSize, 2));
      if (touched(kQueueEnable, 2) && field(kQueueEnable, 2) == 1) queue->enabled = true;
      if (touched(kQueueDesc, 8)) queue->desc = field(kQueueDesc, 8);
      if (touched(kQueueDriver, 8)) queue->driver = field(kQueueDriver, 8);
      if (touched(kQueueDevice, 8)) queue->device = field(kQueueDevice, 8);
    }
  }
  // Status last: a write covering it and other fields applies them first.
  if (touched(kDeviceStatus, 1)) set_status(image[kDeviceStatus]);
}

bool VirtioPci::features_acceptable() const {
  return (driver_features_ & ~offered_features_) == 0 && (driver_features_ & kFeatureVersion1) != 0;
}

void VirtioPci::set_status(uint8_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  const uint8_t old = status_.load();
  // DEVICE_NEEDS_RESET is the device's to set, and sticks until reset.
  value = static_cast<uint8_t>((value & ~kStatusDeviceNeedsReset) | (old & kStatusDeviceNeedsReset));
  if ((value & kStatusFeaturesOk) && !(old & kStatusFeaturesOk) && !features_acceptable()) {
    value = static_cast<uint8_t>(value & ~kStatusFeaturesOk);
  }
  status_ = value;
  if ((value & kStatusDriverOk) && !(old & kStatusDriverOk) && !(value & kStatusDeviceNeedsReset) && !unplugged_)
    activate();
}

void VirtioPci::activate() {
  if (!(status_.load() & kStatusFeaturesOk)) {
    fail("the driver set DRIVER_OK without FEATURES_OK");
    return;
  }
  std::vector<std::shared_ptr<Virtqueue>> queues(num_queues_);
  try {
    for (uint16_t i = 0; i < num_queues_; ++i) {
      const Queue& queue = queues_[i];
      if (!queue.enabled) continue;
      if (queue.size == 0 || queue.size > queue.max_size) {
        throw VirtqueueError("queue " + std::to_string(i) + " has size " + std::to_string(queue.size) +
                             " (maximum " + std::to_string(queue.max_size) + ")");
      }
      VirtqueueConfig config;
      config.size = queue.size;
      config.descriptor_table = queue.desc;
      config.avail_ring = queue.driver;
      config.used_ring = queue.device;
      config.event_idx = (driver_features_ & kFeatureRingEventIdx) != 0;
      config.indirect_desc = (driver_features_ & kFeatureRingIndirectDesc) != 0;
      auto virtqueue = std::make_shared<Virtqueue>(memory_, config);
      virtqueue->validate();
      queues[i] = std::move(virtqueue);
    }
  } catch (const Error& error) {
    fail(error.what());
    return;
  }
  start_device(std::move(queues));
}

void VirtioPci::start_device(std::vector<std::shared_ptr<Virtqueue>> queues) {
  active_queues_ = queues;
  activated_ = true;
  try {
    device_->activate(memory_, driver_features_, std::move(queues),
                      [this](uint16_t queue) { queue_interrupt(queue); }, [this] { config_interrupt(); });
  } catch (const Error& error) {
    fail(error.what());
  }
}

void VirtioPci::notify(uint16_t queue) {
  const uint8_t status = status_.load();
  if (!(status & kStatusDriverOk) || (status & kStatusDeviceNeedsReset)) return;
  try {
    device_->notify_queue(queue);
  } catch (const std::exception& error) {
    fail(error.what());  // e.g. a queue the driver broke: the driver must reset the device
  }
}

void VirtioPci::fail(const std::string& reason) {
  failure_log_.line("virtio-pci device " + std::to_string(static_cast<int>(device_->type())) +
           " needs reset: " + reason);
  status_ = static_cast<uint8_t>(status_.load() | kStatusDeviceNeedsReset);
  config_generation_.fetch_add(1);
  signal(msix_config_.load(), kIsrConfig);
}

void VirtioPci::unplug() {
  std::lock_guard lock(mutex_);
  reset_locked();
  unplugged_ = true;
  device_->release_host_side();
}

void VirtioPci::reset_locked() {
  if (activated_) device_->reset();
  activated_ = false;
  active_queues_.clear();
  status_ = 0;
  device_feature_select_ = 0;
  driver_feature_select_ = 0;
  driver_features_ = 0;
  msix_config_ = pci::kMsixNoVector;
  queue_select_ = 0;
  for (Queue& queue : queues_) {
    queue.size = queue.max_size;
    queue.msix_vector = pci::kMsixNoVector;
    queue.enabled = false;
    queue.desc = queue.driver = queue.device = 0;
  }
  std::lock_guard lock(irq_mutex_);
  isr_ = 0;
  if (intx_) intx_->set_level(false);
}

std::vector<std::string> VirtioPci::describe_state() const {
  std::lock_guard lock(mutex_);
  const std::string name = "virtio device type " + std::to_string(static_cast<int>(device_->type()));
  char status[64];
  std::snprintf(status, sizeof(status), " status=%#x features=%#llx msix=%s", status_.load(),
                static_cast<unsigned long long>(driver_features_), msix_.enabled() ? "on" : "off");
  std::vector<std::string> lines{name + status};
  auto vector_state = [this](uint16_t vector) -> std::string {
    if (vector == pci::kMsixNoVector) return "none";
    return std::to_string(vector) + (msix_.masked(vector) ? " masked" : "") + (msix_.pending(vector) ? " pending" : "");
  };
  for (size_t i = 0; i < active_queues_.size(); ++i) {
    if (!active_queues_[i]) continue;
    lines.push_back("  queue " + std::to_string(i) + " vector " + vector_state(queues_[i].msix_vector.load()) + ": " +
                    active_queues_[i]->describe());
  }
  {
    std::lock_guard irq_lock(irq_mutex_);
    lines.push_back("  config vector " + vector_state(msix_config_.load()) + ", isr=" + std::to_string(isr_));
  }
  const std::string own = device_->describe_state();
  if (!own.empty()) lines.push_back("  " + own);
  return lines;
}

void VirtioPci::queue_interrupt(uint16_t queue) {
  if (queue >= active_queues_.size() || !active_queues_[queue]) return;
  if (!active_queues_[queue]->needs_notification()) return;
  signal(queues_[queue].msix_vector.load(), kIsrQueue);
}

void VirtioPci::config_interrupt() {
  config_generation_.fetch_add(1);
  signal(msix_config_.load(), kIsrConfig);
}

void VirtioPci::signal(uint16_t vector, uint8_t isr_bit) {
  std::lock_guard lock(irq_mutex_);
  if (msix_.signal(vector)) return;
  // MSI-X disabled: INTx, with the cause in the ISR. The line stays asserted until the driver
  // reads the ISR, so only the first cause since then raises it.
  const bool asserted = isr_ != 0;
  isr_ = static_cast<uint8_t>(isr_ | isr_bit);
  if (intx_ && !asserted) intx_->set_level(true);
}

void VirtioPci::quiesce() {
  std::lock_guard lock(mutex_);
  if (activated_) device_->quiesce();
}

void VirtioPci::resume() {
  std::lock_guard lock(mutex_);
  if (activated_) device_->resume();
}

bool VirtioPci::active() const {
  std::lock_guard lock(mutex_);
  return activated_;
}

bool VirtioPci::unplugged() const {
  std::lock_guard lock(mutex_);
  return unplugged_;
}

nlohmann::json VirtioPci::save_state() const {
  nlohmann::json state;
  state["device_type"] = static_cast<uint16_t>(device_->type());
  state["pci"] = PciDevice::save_state();
  state["msix"] = msix_.save_state();
  std::lock_guard lock(mutex_);
  state["device_feature_select"] = device_feature_select_;
  state["driver_feature_select"] = driver_feature_select_;
  state["driver_features"] = driver_features_;
  state["msix_config"] = msix_config_.load();
  state["status"] = status_.load();
  state["config_generation"] = config_generation_.load();
  state["queue_select"] = queue_select_;
  {
    std::lock_guard irq_lock(irq_mutex_);
    state["isr"] = isr_;
  }
  nlohmann::json queues = nlohmann::json::array();
  for (size_t i = 0; i < queues_.size(); ++i) {
    const Queue& queue = queues_[i];
    nlohmann::json ring = nullptr;
    if (i < active_queues_.size() && active_queues_[i]) {
      const VirtqueueState indices = active_queues_[i]->save();
      ring = {{"next_avail", indices.next_avail}, {"next_used", indices.next_used}};
    }
    queues.push_back({{"size", queue.size},
                      {"msix_vector", queue.msix_vector.load()},
                      {"enabled", queue.enabled},
                      {"desc", queue.desc},
                      {"driver", queue.driver},
                      {"device", queue.device},
                      {"ring", std::move(ring)}});
  }
  state["queues"] = std::move(queues);
  state["device"] = device_->save_state();
  return state;
}

namespace {

// Everything a load changes in the common configuration, checked before any of it is.
struct SavedQueue {
  uint16_t size = 0;
  uint16_t msix_vector = pci::kMsixNoVector;
  bool enabled = false;
  uint64_t desc = 0, driver = 0, device = 0;
};

std::string hex64(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof(text), "%#llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace

void VirtioPci::load_state(const nlohmann::json& state, const std::string& what) {
  using snapshot::StateError;
  {
    std::lock_guard lock(mutex_);
    if (activated_ || status_.load() != 0 || unplugged_)
      throw Error("the state of " + what + " can only be loaded into a freshly built device");
  }
  const uint64_t saved_type = snapshot::state_u64(state, "device_type", what, UINT16_MAX);
  if (saved_type != static_cast<uint16_t>(device_->type()))
    throw StateError("saved state of " + what + ": 'device_type' is " + std::to_string(saved_type) + ", this device is " +
                     std::to_string(static_cast<int>(device_->type())));

  const ConfigImage config = checked_config_state(snapshot::state_object(state, "pci", what), what);
  const pci::MsixTable::SavedState msix = msix_.checked_state(snapshot::state_object(state, "msix", what), what);
  // The capability's message control is the guest's view of the same two bits.
  const uint16_t control = static_cast<uint16_t>(config[msix_capability_ + 2u] | config[msix_capability_ + 3u] << 8);
  if (msix.enabled != ((control & pci::kMsixControlEnable) != 0) ||
      msix.function_masked != ((control & pci::kMsixControlFunctionMask) != 0))
    throw StateError("saved state of " + what + ": 'msix' enable and function mask differ from its config space's");

  auto vector_field = [&](const nlohmann::json& from, const std::string& key, const std::string& where) {
    const auto vector = static_cast<uint16_t>(snapshot::state_u64(from, key, where, UINT16_MAX));
    if (vector != pci::kMsixNoVector && vector >= msix_.size())
      throw StateError("saved state of " + where + ": '" + key + "' is vector " + std::to_string(vector) +
                       ", the MSI-X table has " + std::to_string(msix_.size()));
    return vector;
  };
  const auto device_feature_select =
      static_cast<uint32_t>(snapshot::state_u64(state, "device_feature_select", what, UINT32_MAX));
  const auto driver_feature_select =
      static_cast<uint32_t>(snapshot::state_u64(state, "driver_feature_select", what, UINT32_MAX));
  const uint64_t driver_features = snapshot::state_u64(state, "driver_features", what);
  const uint16_t msix_config = vector_field(state, "msix_config", what);
  const auto status = static_cast<uint8_t>(snapshot::state_u64(state, "status", what, UINT8_MAX));
  const auto config_generation = static_cast<uint8_t>(snapshot::state_u64(state, "config_generation", what, UINT8_MAX));
  const auto queue_select = static_cast<uint16_t>(snapshot::state_u64(state, "queue_select", what, UINT16_MAX));
  const auto isr = static_cast<uint8_t>(snapshot::state_u64(state, "isr", what, kIsrQueue | kIsrConfig));

  constexpr uint8_t kKnownStatus =
      kStatusAcknowledge | kStatusDriver | kStatusDriverOk | kStatusFeaturesOk | kStatusDeviceNeedsReset | kStatusFailed;
  if (status & ~kKnownStatus)
    throw StateError("saved state of " + what + ": 'status' " + hex64(status) + " has bits virtio does not define");
  // The live transport never lets these through (set_status), so a state that has them was
  // not saved by it.
  if ((status & kStatusFeaturesOk) && (driver_features & ~offered_features_))
    throw StateError("saved state of " + what + ": 'driver_features' has " + hex64(driver_features & ~offered_features_) +
                     ", which the device does not offer");
  if ((status & kStatusFeaturesOk) && !(driver_features & kFeatureVersion1))
    throw StateError("saved state of " + what + ": 'driver_features' lacks VERSION_1 with FEATURES_OK set");
  const bool starts = (status & kStatusDriverOk) && !(status & (kStatusDeviceNeedsReset | kStatusFailed));
  if (starts && !(status & kStatusFeaturesOk))
    throw StateError("saved state of " + what + ": 'status' has DRIVER_OK without FEATURES_OK");

  const nlohmann::json& saved_queues = snapshot::state_array(state, "queues", what);
  if (saved_queues.size() != num_queues_)
    throw StateError("saved state of " + what + ": 'queues' has " + std::to_string(saved_queues.size()) +
                     " queues, the device " + std::to_string(num_queues_));
  std::vector<SavedQueue> queues(num_queues_);
  std::vector<std::shared_ptr<Virtqueue>> virtqueues(num_queues_);
  for (uint16_t i = 0; i < num_queues_; ++i) {
    const nlohmann::json& saved = saved_queues[i];
    const std::string where = what + " queue " + std::to_string(i);
    SavedQueue& queue = queues[i];
    queue.size = static_cast<uint16_t>(snapshot::state_u64(saved, "size", where, UINT16_MAX));
    queue.msix_vector = vector_field(saved, "msix_vector", where);
    queue.enabled = snapshot::state_bool(saved, "enabled", where);
    queue.desc = snapshot::state_u64(saved, "desc", where);
    queue.driver = snapshot::state_u64(saved, "driver", where);
    queue.device = snapshot::state_u64(saved, "device", where);
    const bool served = starts && queue.enabled;
    const auto ring = saved.find("ring");
    if (!served) {
      if (ring != saved.end() && !ring->is_null())
        throw StateError("saved state of " + where + ": 'ring' is given for a queue the device does not serve");
      continue;
    }
    const uint16_t max_size = queues_[i].max_size;
    if (queue.size == 0 || queue.size > max_size)
      throw StateError("saved state of " + where + ": 'size' is " + std::to_string(queue.size) + " (maximum " +
                       std::to_string(max_size) + ")");
    const nlohmann::json& indices = snapshot::state_object(saved, "ring", where);
    VirtqueueState ring_state;
    ring_state.config.size = queue.size;
    ring_state.config.descriptor_table = queue.desc;
    ring_state.config.avail_ring = queue.driver;
    ring_state.config.used_ring = queue.device;
    ring_state.config.event_idx = (driver_features & kFeatureRingEventIdx) != 0;
    ring_state.config.indirect_desc = (driver_features & kFeatureRingIndirectDesc) != 0;
    ring_state.next_avail = static_cast<uint16_t>(snapshot::state_u64(indices, "next_avail", where, UINT16_MAX));
    ring_state.next_used = static_cast<uint16_t>(snapshot::state_u64(indices, "next_used", where, UINT16_MAX));
    auto virtqueue = std::make_shared<Virtqueue>(memory_, ring_state.config);
    try {
      virtqueue->restore(ring_state);  // checks the size and the rings against guest memory
    } catch (const VirtqueueError& error) {
      throw StateError("saved state of " + where + ": " + error.what());
    }
    virtqueues[i] = std::move(virtqueue);
  }
  // The device checks its own state and keeps it only when all of it is good; after this
  // nothing can fail.
  device_->load_state(snapshot::state_object(state, "device", what));

  apply_config_state(config);
  msix_.apply_state(msix);
  std::lock_guard lock(mutex_);
  device_feature_select_ = device_feature_select;
  driver_feature_select_ = driver_feature_select;
  driver_features_ = driver_features;
  msix_config_ = msix_config;
  status_ = status;
  config_generation_ = config_generation;
  queue_select_ = queue_select;
  for (uint16_t i = 0; i < num_queues_; ++i) {
    queues_[i].size = queues[i].size;
    queues_[i].msix_vector = queues[i].msix_vector;
    queues_[i].enabled = queues[i].enabled;
    queues_[i].desc = queues[i].desc;
    queues_[i].driver = queues[i].driver;
    queues_[i].device = queues[i].device;
  }
  {
    std::lock_guard irq_lock(irq_mutex_);
    isr_ = isr;
    // INTx stays asserted until the driver reads the ISR.
    if (intx_ && isr_ != 0 && !msix.enabled) intx_->set_level(true);
  }
  if (starts) start_device(std::move(virtqueues));
}

}  // namespace kdom::devices::virtio
