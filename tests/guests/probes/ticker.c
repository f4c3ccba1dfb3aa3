/* Probe "ticker": a guest that keeps running, for the daemon's tests. Prints
 * "tick N" on the serial console every period_ms= (default 200) ms and
 * "input: C" for each byte the serial port receives; after stop_after=N ticks
 * (default 0: never) it ends as action= says: poweroff (ACPI S5 sleep),
 * reboot (i8042 reset line), panic (pvpanic). Between ticks it spins at
 * CPL 3, so a paused domain's ticks stop and resume where they were. */
#include "probe.h"

const char probe_name[] = "ticker";

#define COM1 0x3f8
#define ACPI_SLEEP_CONTROL 0x600
#define ACPI_S5_SLEEP_ENABLE ((5 << 2) | (1 << 5))

static uint64_t spin_until(uint64_t deadline)
{
    while ((int64_t)(rdtsc() - deadline) < 0)
        cpu_relax();
    return 0;
}

static void echo_input(void)
{
    while (inb(COM1 + 5) & 1) {
        char c = (char)inb(COM1);
        printf("input: %c\n", c >= 0x20 && c < 0x7f ? c : '?');
    }
}

static void stop(const char *action)
{
    printf("ticker: %s\n", action);
    if (action[0] == 'r')
        outb(0x64, 0xfe);
    else if (action[0] == 'p' && action[1] == 'a')
        outb(0x505, 1);
    else
        outb(ACPI_SLEEP_CONTROL, ACPI_S5_SLEEP_ENABLE);
    halt_forever();
}

/* The value of "action=" on the command line starts with `word`. */
static int action_is(const char *word)
{
    const char *p = cmdline();
    for (; *p; p++)
        if ((p == cmdline() || p[-1] == ' ') && !strncmp(p, "action=", 7))
            return !strncmp(p + 7, word, strlen(word));
    return 0;
}

int probe_main(void)
{
    uint64_t period_ms = cmdline_u64("period_ms", 200), stop_after = cmdline_u64("stop_after", 0);
    const char *action = action_is("reboot") ? "reboot" : action_is("panic") ? "panic" : "poweroff";
    uint64_t per_ms = tsc_per_ms();
    for (uint64_t n = 1;; n++) {
        printf("tick %llu\n", (unsigned long long)n);
        if (stop_after && n >= stop_after)
            stop(action);
        run_at_cpl3(spin_until, rdtsc() + period_ms * per_ms);
        echo_input();
    }
}
