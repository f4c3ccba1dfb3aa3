/* Probe "rtc": reads the CMOS real-time clock (ports 0x70/0x71) in BCD or
 * binary mode, 12- or 24-hour format, after the update-in-progress flag
 * clears, and prints it as `PROBE rtc: PASS YYYY-MM-DDTHH:MM:SS` for the test
 * to compare with the host clock. */
#include "probe.h"

const char probe_name[] = "rtc";

static uint8_t cmos_read(uint8_t reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

struct rtc_time {
    unsigned sec, min, hour, day, mon, year, century;
};

static void read_raw(struct rtc_time *t)
{
    t->sec = cmos_read(0x00);
    t->min = cmos_read(0x02);
    t->hour = cmos_read(0x04);
    t->day = cmos_read(0x07);
    t->mon = cmos_read(0x08);
    t->year = cmos_read(0x09);
    t->century = cmos_read(0x32);
}

static int wait_not_updating(void)
{
    /* UIP (register A bit 7) stays set for at most ~2 ms per second. */
    for (int i = 0; i < 100000; i++)
        if (!(cmos_read(0x0a) & 0x80))
            return 1;
    return 0;
}

static unsigned bcd(unsigned v) { return (v >> 4) * 10 + (v & 0x0f); }

int probe_main(void)
{
    struct rtc_time a, b;
    int tries = 0;
    do {
        if (!wait_not_updating())
            probe_fail("update-in-progress flag never clears");
        read_raw(&a);
        if (!wait_not_updating())
            probe_fail("update-in-progress flag never clears");
        read_raw(&b);
    } while (memcmp(&a, &b, sizeof a) && ++tries < 10);
    if (tries >= 10)
        probe_fail("time keeps changing between reads");

    uint8_t status_b = cmos_read(0x0b);
    int binary = status_b & 0x04, hour24 = status_b & 0x02;
    int pm = (b.hour & 0x80) != 0;
    b.hour &= 0x7f;
    if (!binary) {
        b.sec = bcd(b.sec);
        b.min = bcd(b.min);
        b.hour = bcd(b.hour);
        b.day = bcd(b.day);
        b.mon = bcd(b.mon);
        b.year = bcd(b.year);
        b.century = bcd(b.century);
    }
    if (!hour24) {
        if (b.hour == 12)
            b.hour = 0;
        if (pm)
            b.hour += 12;
    }
    unsigned year = b.year + (b.century >= 19 && b.century <= 99 ? b.century * 100 : 2000);
    if (b.sec > 59 || b.min > 59 || b.hour > 23 || b.day < 1 || b.day > 31 || b.mon < 1 ||
        b.mon > 12 || b.year > 99)
        probe_fail("implausible time %u-%u-%u %u:%u:%u (status B 0x%x)", year, b.mon, b.day,
                   b.hour, b.min, b.sec, status_b);
    probe_pass("%04u-%02u-%02uT%02u:%02u:%02u (%s, %s)", year, b.mon, b.day, b.hour, b.min,
               b.sec, binary ? "binary" : "bcd", hour24 ? "24h" : "12h");
}
