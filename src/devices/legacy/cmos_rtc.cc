// MC146818 register model.
#include "devices/legacy/cmos_rtc.h"

#include <string>

#include "snapshot/state_json.h"

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
// The farthest a saved guest clock may be from the host's: further than any year the
// registers can express (century 0..165 in BCD).
constexpr int64_t kMaxOffsetSeconds = int64_t{1} << 40;
// Years a frozen time may hold: more than the guest can reach (each write of a BCD 0xff
// year adds at most 165) within the offsets above.
constexpr int64_t kMaxFrozenYear = 1'000'000;

// A signed field, which state_json's readers do not cover: checked the same way.
int64_t state_i64(const nlohmann::json& state, const std::string& key, const std::string& what, int64_t min,
                  int64_t max) {
  const auto found = state.is_object() ? state.find(key) : state.end();
  if (found == state.end() || !found->is_number_integer())
    throw snapshot::StateError("saved state of " + what + ": '" + key + "' is not an integer");
  const bool too_large = found->is_number_unsigned() && found->get<uint64_t>() > static_cast<uint64_t>(max);
  const int64_t value = too_large ? max : found->get<int64_t>();
  if (too_large || value > max || value < min)
    throw snapshot::StateError("saved state of " + what + ": '" + key + "' is out of range " + std::to_string(min) +
                               ".." + std::to_string(max));
  return value;
}
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

nlohmann::json CmosRtc::save_state() const {
  std::lock_guard lock(mutex_);
  nlohmann::json state{{"index", index_},
                       {"ram", snapshot::bytes_to_hex(ram_)},
                       {"offset_seconds", static_cast<int64_t>(offset_seconds_)},
                       {"frozen", frozen_.has_value()}};
  if (frozen_) {
    // Fields as the guest wrote them (non-negative but the year), month and year in calendar terms.
    state["frozen_time"] = {{"second", frozen_->tm_sec},      {"minute", frozen_->tm_min},
                            {"hour", frozen_->tm_hour},       {"weekday", frozen_->tm_wday},
                            {"day", frozen_->tm_mday},        {"month", frozen_->tm_mon + 1},
                            {"year", frozen_->tm_year + 1900}};
  }
  return state;
}

void CmosRtc::load_state(const nlohmann::json& state) {
  const std::string what = "rtc";
  const auto index = static_cast<uint8_t>(snapshot::state_u64(state, "index", what, kIndexMask));
  const std::vector<uint8_t> ram = snapshot::state_bytes(state, "ram", what, 128);
  const int64_t offset = state_i64(state, "offset_seconds", what, -kMaxOffsetSeconds, kMaxOffsetSeconds);
  std::optional<tm> frozen;
  if (snapshot::state_bool(state, "frozen", what)) {
    const nlohmann::json& time = snapshot::state_object(state, "frozen_time", what);
    const std::string time_what = what + " frozen_time";
    // Any byte the guest writes decodes to at most 165 (BCD 0xff).
    tm fields{};
    fields.tm_sec = static_cast<int>(snapshot::state_u64(time, "second", time_what, 165));
    fields.tm_min = static_cast<int>(snapshot::state_u64(time, "minute", time_what, 165));
    fields.tm_hour = static_cast<int>(snapshot::state_u64(time, "hour", time_what, 165 + 12));
    fields.tm_wday = static_cast<int>(snapshot::state_u64(time, "weekday", time_what, 6));
    fields.tm_mday = static_cast<int>(snapshot::state_u64(time, "day", time_what, 165));
    fields.tm_mon = static_cast<int>(snapshot::state_u64(time, "month", time_what, 165)) - 1;
    fields.tm_year = static_cast<int>(state_i64(time, "year", time_what, -kMaxFrozenYear, kMaxFrozenYear) - 1900);
    frozen = fields;
  }
  std::lock_guard lock(mutex_);
  index_ = index;
  std::copy(ram.begin(), ram.end(), ram_.begin());
  offset_seconds_ = static_cast<time_t>(offset);
  frozen_ = frozen;
}

}  // namespace kdom::devices
