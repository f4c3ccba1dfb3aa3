// MC146818 register model.
#include "devices/legacy/cmos_rtc.h"

namespace kdom::devices {

namespace {
enum Index : uint8_t {
  kSeconds = 0x00,
  kMinutes = 0x02,
  kHours = 0x04,
  kDayOfWeek = 0x06,
  kDayOfMonth = 0x07,
  kMonth = 0x08,
  kYear = 0x09,
  kStatusA = 0x0a,
  kStatusB = 0x0b,
  kStatusC = 0x0c,
  kStatusD = 0x0d,
};
constexpr uint8_t kStatusBSet = 0x80;
constexpr uint8_t kStatusBBinary = 0x04;
constexpr uint8_t kStatusB24Hour = 0x02;
constexpr uint8_t kStatusDValidRam = 0x80;
constexpr uint8_t kStatusADefault = 0x26;  // 32.768 kHz time base, 1024 Hz rate; UIP clear
constexpr uint8_t kIndexMask = 0x7f;       // bit 7 of the index port masks NMIs
constexpr uint8_t kHourPm = 0x80;
}  // namespace

CmosRtc::CmosRtc(Clock clock) : clock_(std::move(clock)) {
  ram_[kStatusA] = kStatusADefault;
  ram_[kStatusB] = kStatusB24Hour;
  ram_[kStatusD] = kStatusDValidRam;
}

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (auto& byte : data) byte = offset == 0 ? index_ : read_register(index_);
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (uint8_t byte : data) {
    if (offset == 0)
      index_ = byte & kIndexMask;
    else
      write_register(index_, byte);
  }
}

uint8_t CmosRtc::encode(int value) const {
  if (ram_[kStatusB] & kStatusBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) << 4) | (value % 10));
}

int CmosRtc::decode(uint8_t value) const {
  if (ram_[kStatusB] & kStatusBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

tm CmosRtc::current_time() const {
  if (frozen_) return *frozen_;
  time_t now = clock_() + offset_seconds_;
  tm utc{};
  gmtime_r(&now, &utc);
  return utc;
}

uint8_t CmosRtc::read_register(uint8_t index) {
  if (index > kStatusD && index != kCenturyIndex) return ram_[index];
  if (index == kStatusA || index == kStatusB || index == kStatusD) return ram_[index];
  if (index == kStatusC) return 0;
  tm utc = current_time();
  switch (index) {
    case kSeconds: return encode(utc.tm_sec);
    case kMinutes: return encode(utc.tm_min);
    case kHours: {
      if (ram_[kStatusB] & kStatusB24Hour) return encode(utc.tm_hour);
      int hour12 = utc.tm_hour % 12 == 0 ? 12 : utc.tm_hour % 12;
      return static_cast<uint8_t>(encode(hour12) | (utc.tm_hour >= 12 ? kHourPm : 0));
    }
    case kDayOfWeek: return encode(utc.tm_wday + 1);
    case kDayOfMonth: return encode(utc.tm_mday);
    case kMonth: return encode(utc.tm_mon + 1);
    case kYear: return encode((utc.tm_year + 1900) % 100);
    case kCenturyIndex: return encode((utc.tm_year + 1900) / 100);
    default: return ram_[index];  // alarm registers
  }
}

void CmosRtc::set_time_field(tm& time, uint8_t index, uint8_t value) const {
  int decoded = decode(static_cast<uint8_t>(index == kHours ? value & 0x7f : value));
  switch (index) {
    case kSeconds: time.tm_sec = decoded; break;
    case kMinutes: time.tm_min = decoded; break;
    case kHours:
      time.tm_hour = decoded;
      if (!(ram_[kStatusB] & kStatusB24Hour)) time.tm_hour = decoded % 12 + ((value & kHourPm) ? 12 : 0);
      break;
    case kDayOfMonth: time.tm_mday = decoded; break;
    case kMonth: time.tm_mon = decoded - 1; break;
    case kYear: time.tm_year = (time.tm_year + 1900) / 100 * 100 + decoded - 1900; break;
    case kCenturyIndex: time.tm_year = decoded * 100 + (time.tm_year + 1900) % 100 - 1900; break;
    default: break;
  }
}

void CmosRtc::commit_time(tm time) {
  time_t wanted = timegm(&time);
  if (wanted != static_cast<time_t>(-1)) offset_seconds_ = wanted - clock_();
}

void CmosRtc::write_register(uint8_t index, uint8_t value) {
  bool is_time = index == kSeconds || index == kMinutes || index == kHours || index == kDayOfMonth ||
                 index == kMonth || index == kYear || index == kCenturyIndex;
  if (index == kStatusC || index == kStatusD) return;  // read-only
  if (index == kStatusB) {
    bool set_before = (ram_[kStatusB] & kStatusBSet) != 0, set_now = (value & kStatusBSet) != 0;
    if (!set_before && set_now) frozen_ = current_time();
    if (set_before && !set_now && frozen_) {
      commit_time(*frozen_);
      frozen_.reset();
    }
    ram_[kStatusB] = value;
    return;
  }
  if (!is_time) {
    ram_[index] = index == kStatusA ? static_cast<uint8_t>(value & 0x7f) : value;
    return;
  }
  if (frozen_) {
    set_time_field(*frozen_, index, value);
    return;
  }
  // Without SET, each write takes effect at once.
  tm time = current_time();
  set_time_field(time, index, value);
  commit_time(time);
}

}  // namespace kdom::devices
