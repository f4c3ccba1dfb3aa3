// Tests of the ACPI tables: RSDP (signature, both checksums, revision), the XSDT walk to the
// FADT and MADT, every table's checksum, the MADT's local APICs and IOAPIC, and the FADT's
// hardware-reduced sleep control register and DSDT (\_S5 and the pvpanic device), and the
// whole DSDT as ACPICA's disassembler (iasl, Debian's acpica-tools) reads it back (the
// devices, the GED's two interrupts and the PCI hot-plug slots and their methods).
#include "arch/x86/acpi_tables.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <string>
#include <string_view>

#include "arch/x86/layout.h"

namespace kdom::x86 {
namespace {

constexpr uint64_t kBase = kAcpiTablesAddress;

class Acpi : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    config_.vcpu_count = GetParam();
    tables_ = build_acpi_tables(config_, kBase);
  }

  template <typename T>
  T get(uint64_t address, size_t offset = 0) const {
    size_t at = static_cast<size_t>(address - kBase) + offset;
    EXPECT_LE(at + sizeof(T), tables_.bytes.size()) << "read outside the blob";
    T value{};
    if (at + sizeof(T) <= tables_.bytes.size()) std::memcpy(&value, tables_.bytes.data() + at, sizeof(T));
    return value;
  }
  std::string text(uint64_t address, size_t offset, size_t length) const {
    size_t at = static_cast<size_t>(address - kBase) + offset;
    return std::string(reinterpret_cast<const char*>(tables_.bytes.data() + at), length);
  }
  bool in_blob(uint64_t address, uint64_t length) const {
    return address >= kBase && address - kBase <= tables_.bytes.size() &&
           length <= tables_.bytes.size() - (address - kBase);
  }
  const uint8_t* at(uint64_t address) const { return tables_.bytes.data() + (address - kBase); }

  // Signature -> address, from the XSDT (plus the DSDT from the FADT).
  std::map<std::string, uint64_t> tables_by_signature() const {
    std::map<std::string, uint64_t> found;
    uint64_t xsdt = get<uint64_t>(tables_.rsdp_address, 24);
    uint32_t length = get<uint32_t>(xsdt, 4);
    for (size_t offset = 36; offset + 8 <= length; offset += 8) {
      uint64_t table = get<uint64_t>(xsdt, offset);
      found[text(table, 0, 4)] = table;
    }
    if (found.count("FACP")) found["DSDT"] = get<uint64_t>(found["FACP"], 140);
    return found;
  }

  AcpiConfig config_;
  AcpiTables tables_;
};

TEST_P(Acpi, BlobFitsItsArea) {
  EXPECT_EQ(tables_.address, kBase);
  EXPECT_LE(tables_.bytes.size(), kAcpiTablesMaxSize);
}

TEST_P(Acpi, RsdpIsValid) {
  ASSERT_TRUE(in_blob(tables_.rsdp_address, 36));
  EXPECT_EQ(tables_.rsdp_address % 16, 0u);  // Linux scans 16-byte boundaries
  EXPECT_GE(tables_.rsdp_address, 0xE0000u);
  EXPECT_LT(tables_.rsdp_address, 0x100000u);
  EXPECT_EQ(text(tables_.rsdp_address, 0, 8), "RSD PTR ");
  EXPECT_EQ(acpi_checksum(at(tables_.rsdp_address), 20), 0);
  EXPECT_EQ(acpi_checksum(at(tables_.rsdp_address), 36), 0);
  EXPECT_EQ(get<uint8_t>(tables_.rsdp_address, 15), 2);    // revision
  EXPECT_EQ(get<uint32_t>(tables_.rsdp_address, 20), 36u);  // length
  uint64_t xsdt = get<uint64_t>(tables_.rsdp_address, 24);
  EXPECT_TRUE(in_blob(xsdt, 36));
  EXPECT_EQ(text(xsdt, 0, 4), "XSDT");
}

TEST_P(Acpi, XsdtListsFadtAndMadt) {
  auto found = tables_by_signature();
  EXPECT_TRUE(found.count("FACP"));
  EXPECT_TRUE(found.count("APIC"));
  EXPECT_TRUE(found.count("DSDT"));
  uint64_t xsdt = get<uint64_t>(tables_.rsdp_address, 24);
  EXPECT_EQ(get<uint32_t>(xsdt, 4), 36u + 2 * 8);
}

TEST_P(Acpi, EveryTableHasAValidChecksumAndLength) {
  auto found = tables_by_signature();
  found["XSDT"] = get<uint64_t>(tables_.rsdp_address, 24);
  for (const auto& [signature, address] : found) {
    uint32_t length = get<uint32_t>(address, 4);
    ASSERT_GE(length, 36u) << signature;
    ASSERT_TRUE(in_blob(address, length)) << signature;
    EXPECT_EQ(acpi_checksum(at(address), length), 0) << signature;
  }
}

TEST_P(Acpi, MadtListsEveryVcpuAndOneIoApic) {
  uint64_t madt = tables_by_signature().at("APIC");
  uint32_t length = get<uint32_t>(madt, 4);
  EXPECT_EQ(get<uint32_t>(madt, 36), kLocalApicAddress);
  std::vector<uint8_t> apic_ids;
  int ioapics = 0;
  for (size_t offset = 44; offset < length;) {
    uint8_t type = get<uint8_t>(madt, offset);
    uint8_t entry_length = get<uint8_t>(madt, offset + 1);
    ASSERT_GE(entry_length, 2) << "at " << offset;
    ASSERT_LE(offset + entry_length, length);
    if (type == 0) {
      ASSERT_EQ(entry_length, 8);
      EXPECT_EQ(get<uint8_t>(madt, offset + 2), apic_ids.size());  // processor UID
      apic_ids.push_back(get<uint8_t>(madt, offset + 3));
      EXPECT_EQ(get<uint32_t>(madt, offset + 4) & 1, 1u) << "vCPU " << apic_ids.size() - 1 << " not enabled";
    } else if (type == 1) {
      ASSERT_EQ(entry_length, 12);
      ++ioapics;
      EXPECT_EQ(get<uint32_t>(madt, offset + 4), 0xFEC00000u);
      EXPECT_EQ(get<uint32_t>(madt, offset + 8), 0u);  // GSI base
    }
    offset += entry_length;
  }
  ASSERT_EQ(apic_ids.size(), GetParam());
  for (uint32_t i = 0; i < GetParam(); ++i) EXPECT_EQ(apic_ids[i], i);
  EXPECT_EQ(ioapics, 1);
}

TEST_P(Acpi, FadtIsHardwareReducedWithTheSleepControlRegister) {
  uint64_t fadt = tables_by_signature().at("FACP");
  EXPECT_EQ(get<uint32_t>(fadt, 4), 276u);
  EXPECT_EQ(get<uint8_t>(fadt, 8), 6);  // revision
  uint32_t flags = get<uint32_t>(fadt, 112);
  EXPECT_TRUE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  // SLEEP_CONTROL_REG: a Generic Address Structure in system I/O space.
  EXPECT_EQ(get<uint8_t>(fadt, 244), 1);  // address space: system I/O
  EXPECT_EQ(get<uint8_t>(fadt, 245), 8);  // bit width
  EXPECT_EQ(get<uint64_t>(fadt, 248), config_.sleep_control_port);
  EXPECT_EQ(get<uint8_t>(fadt, 256), 1);
  EXPECT_EQ(get<uint64_t>(fadt, 260), config_.sleep_status_port);
  // RESET_REG and RESET_VALUE.
  EXPECT_TRUE(flags & (1u << 10));
  EXPECT_EQ(get<uint8_t>(fadt, 116), 1);
  EXPECT_EQ(get<uint64_t>(fadt, 120), config_.reset_port);
  EXPECT_EQ(get<uint8_t>(fadt, 128), config_.reset_value);
}

TEST_P(Acpi, DsdtHasS5PackageAndPvpanicDevice) {
  uint64_t fadt = tables_by_signature().at("FACP");
  uint64_t dsdt = get<uint64_t>(fadt, 140);  // X_DSDT
  ASSERT_TRUE(in_blob(dsdt, 36));
  EXPECT_EQ(text(dsdt, 0, 4), "DSDT");
  uint32_t length = get<uint32_t>(dsdt, 4);
  ASSERT_TRUE(in_blob(dsdt, length));
  std::string_view aml(reinterpret_cast<const char*>(at(dsdt)) + 36, length - 36);

  size_t s5 = aml.find("_S5_");
  ASSERT_NE(s5, std::string_view::npos);
  EXPECT_EQ(static_cast<uint8_t>(aml[s5 - 1]), 0x08);  // NameOp
  ASSERT_LT(s5 + 8, aml.size());
  EXPECT_EQ(static_cast<uint8_t>(aml[s5 + 4]), 0x12);  // PackageOp
  // PkgLength (1 byte here), NumElements, then SLP_TYPa as a ByteConst.
  EXPECT_GE(static_cast<uint8_t>(aml[s5 + 6]), 1);
  EXPECT_EQ(static_cast<uint8_t>(aml[s5 + 7]), 0x0a);
  EXPECT_EQ(static_cast<uint8_t>(aml[s5 + 8]), kAcpiS5SleepType);

  EXPECT_NE(aml.find("QEMU0001"), std::string_view::npos);
  EXPECT_NE(aml.find("_HID"), std::string_view::npos);
  EXPECT_NE(aml.find("_CRS"), std::string_view::npos);
  // The pvpanic port appears in an I/O port descriptor: 0x47, decode16, min, max.
  const uint8_t lo = config_.pvpanic_port & 0xff, hi = config_.pvpanic_port >> 8;
  const char io[] = {0x47, 0x01, static_cast<char>(lo), static_cast<char>(hi), static_cast<char>(lo),
                     static_cast<char>(hi)};
  EXPECT_NE(aml.find(std::string_view(io, sizeof(io))), std::string_view::npos);
}

// The reference parser of the language must read our AML back as the devices it is meant to
// be; byte checks alone would pass an encoder and a test that agree on a mistake.
TEST_P(Acpi, DsdtDisassemblesWithIaslIntoItsDevices) {
  ASSERT_EQ(std::system("command -v iasl >/dev/null 2>&1"), 0)
      << "iasl is missing: install Debian's acpica-tools (scripts/setup.sh does)";
  uint64_t dsdt = tables_by_signature().at("DSDT");
  uint32_t length = get<uint32_t>(dsdt, 4);
  ASSERT_TRUE(in_blob(dsdt, length));
  char dir_template[] = "/tmp/kdom-acpi-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir(dir_template);
  std::ofstream(dir / "dsdt.dat", std::ios::binary).write(reinterpret_cast<const char*>(at(dsdt)), length);
  const int status = std::system(("cd '" + dir.string() + "' && iasl -d dsdt.dat >iasl.log 2>&1").c_str());
  std::stringstream log, dsl;
  log << std::ifstream(dir / "iasl.log").rdbuf();
  dsl << std::ifstream(dir / "dsdt.dsl").rdbuf();
  std::filesystem::remove_all(dir);
  ASSERT_EQ(status, 0) << log.str();
  const std::string text = dsl.str();
  for (const char* expected :
       {"Name (_S5, Package (0x02)", "Device (PCI0)", "Device (COM1)", "Device (RTC)", "Device (PEVT)",
        "Device (PWRB)", "Name (_HID, \"PNP0C0C\"", "Device (GED0)", "Name (_HID, \"ACPI0013\"",
        "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )", "0x00000017,",
        "Method (_EVT, 1, NotSerialized)", "If ((Arg0 == 0x17))", "Notify (\\_SB.PWRB, 0x80)", "0x00000016,",
        "If ((Arg0 == 0x16))", "\\_SB.PCI0.PCNT ()", "OperationRegion (PHPR, SystemIO, 0xAE00, 0x0C)",
        "Field (PHPR, DWordAcc, NoLock, WriteAsZeros)", "Device (S01)", "Name (_ADR, 0x00010000)",
        "Device (S1F)", "Name (_ADR, 0x001F0000)", "Name (_SUN, 0x1F)", "B0EJ = 0x80000000",
        "Method (PCNT, 0, NotSerialized)", "Local0 = PCIU", "Local1 = PCID", "If ((Local0 & 0x02))",
        "Notify (S01, One)", "If ((Local1 & 0x80000000))", "Notify (S1F, 0x03)"})
    EXPECT_NE(text.find(expected), std::string::npos) << "iasl's reading of the DSDT has no '" << expected << "':\n"
                                                      << text;
}

INSTANTIATE_TEST_SUITE_P(VcpuCounts, Acpi, ::testing::Values(1u, 4u, 64u));

TEST(AcpiConfigured, PortsComeFromTheConfig) {
  AcpiConfig config;
  config.sleep_control_port = 0x700;
  config.sleep_status_port = 0x701;
  auto tables = build_acpi_tables(config, 0xF0000);
  EXPECT_EQ(tables.rsdp_address, 0xF0000u);
  uint64_t xsdt;
  std::memcpy(&xsdt, tables.bytes.data() + 24, 8);
  EXPECT_GE(xsdt, 0xF0000u);
  uint64_t fadt;
  std::memcpy(&fadt, tables.bytes.data() + (xsdt - 0xF0000) + 36, 8);
  uint64_t port;
  std::memcpy(&port, tables.bytes.data() + (fadt - 0xF0000) + 248, 8);
  EXPECT_EQ(port, 0x700u);
}

TEST(AcpiChecksum, SumsBytesModulo256) {
  const uint8_t data[] = {0x10, 0xf0, 0x05};
  EXPECT_EQ(acpi_checksum(data, 3), 0x05);
  EXPECT_EQ(acpi_checksum(data, 2), 0x00);
  EXPECT_EQ(acpi_checksum(data, 0), 0x00);
}

}  // namespace
}  // namespace kdom::x86
