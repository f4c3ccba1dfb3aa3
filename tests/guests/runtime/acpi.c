/* ACPI for the probes: find the RSDP (from the boot information, else the
 * EBDA and the 0xe0000-0xfffff BIOS area), tables through the XSDT/RSDT, and
 * the processors listed in the MADT. Every table is checksummed before use. */
#include "probe.h"

#define RSDP_SIGNATURE 0x2052545020445352ull /* "RSD PTR " */

static int checksum_ok(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += b[i];
    return sum == 0;
}

static int rsdp_valid(uint64_t addr)
{
    const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
    if (*(const uint64_t *)p != RSDP_SIGNATURE || !checksum_ok(p, 20))
        return 0;
    if (p[15] >= 2) { /* revision 2+: 36-byte structure with its own checksum */
        uint32_t len = *(const uint32_t *)(p + 20);
        if (len < 36 || len > 4096 || !checksum_ok(p, len))
            return 0;
    }
    return 1;
}

static uint64_t scan(uint64_t from, uint64_t to)
{
    for (uint64_t a = from; a + 20 <= to; a += 16)
        if (*(const uint64_t *)(uintptr_t)a == RSDP_SIGNATURE && rsdp_valid(a))
            return a;
    return 0;
}

uint64_t acpi_find_rsdp(void)
{
    static uint64_t found;
    if (found)
        return found;
    if (boot_rsdp_paddr && rsdp_valid(boot_rsdp_paddr))
        return found = boot_rsdp_paddr;
    uint64_t ebda = (uint64_t)(*(const uint16_t *)0x40e) << 4;
    if (ebda >= 0x80000 && ebda < 0xa0000 && (found = scan(ebda, ebda + 1024)))
        return found;
    return found = scan(0xe0000, 0x100000);
}

uint64_t acpi_find_table(const char sig[4])
{
    uint64_t rsdp = acpi_find_rsdp();
    if (!rsdp)
        return 0;
    const uint8_t *r = (const uint8_t *)(uintptr_t)rsdp;
    uint64_t root;
    unsigned entry_size;
    if (r[15] >= 2 && *(const uint64_t *)(r + 24)) {
        root = *(const uint64_t *)(r + 24);
        entry_size = 8;
    } else {
        root = *(const uint32_t *)(r + 16);
        entry_size = 4;
    }
    const uint8_t *hdr = (const uint8_t *)(uintptr_t)root;
    uint32_t len = *(const uint32_t *)(hdr + 4);
    if (len < 36 || len > 65536 || !checksum_ok(hdr, len) ||
        memcmp(hdr, entry_size == 8 ? "XSDT" : "RSDT", 4))
        return 0;
    for (uint32_t off = 36; off + entry_size <= len; off += entry_size) {
        uint64_t t = entry_size == 8 ? *(const uint64_t *)(hdr + off) : *(const uint32_t *)(hdr + off);
        const uint8_t *th = (const uint8_t *)(uintptr_t)t;
        if (!t || memcmp(th, sig, 4))
            continue;
        uint32_t tlen = *(const uint32_t *)(th + 4);
        if (tlen >= 36 && tlen <= 1u << 20 && checksum_ok(th, tlen))
            return t;
    }
    return 0;
}

int acpi_madt_cpus(uint32_t *ids, int max)
{
    uint64_t madt = acpi_find_table("APIC");
    if (!madt)
        return -1;
    const uint8_t *m = (const uint8_t *)(uintptr_t)madt;
    uint32_t len = *(const uint32_t *)(m + 4);
    int n = 0;
    for (uint32_t off = 44; off + 2 <= len;) {
        uint8_t type = m[off], elen = m[off + 1];
        if (elen < 2 || off + elen > len)
            break;
        uint32_t id = 0, flags = 0;
        int is_cpu = 0;
        if (type == 0 && elen >= 8) { /* processor local APIC */
            id = m[off + 3];
            flags = *(const uint32_t *)(m + off + 4);
            is_cpu = 1;
        } else if (type == 9 && elen >= 16) { /* processor local x2APIC */
            id = *(const uint32_t *)(m + off + 4);
            flags = *(const uint32_t *)(m + off + 8);
            is_cpu = 1;
        }
        if (is_cpu && (flags & 1)) {
            if (ids && n < max)
                ids[n] = id;
            n++;
        }
        off += elen;
    }
    return n;
}
