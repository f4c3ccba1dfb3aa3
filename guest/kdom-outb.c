/* kdom-outb: write one byte to an x86 I/O port from the guest's user space.
 *
 * Debian's cloud kernel is built without /dev/port (CONFIG_DEVPORT is off), so the
 * guest's /init uses this tool to reach kdom's boot timer (0x440) and debug-exit
 * port (0xF4).  Usage:  kdom-outb PORT VALUE   (decimal, or hex with a 0x prefix)
 *
 * Freestanding on purpose: no libc, a few hundred bytes, built by
 * scripts/build-guest.sh with  cc -Os -static -nostdlib -fno-pie -no-pie ...
 */

#define SYS_write 1
#define SYS_ioperm 173
#define SYS_exit_group 231

static long syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

static void say(const char *s)
{
    long n = 0;
    while (s[n])
        n++;
    syscall3(SYS_write, 2, (long)s, n);
}

/* Parses a decimal or 0x-prefixed hex number; returns -1 on anything else. */
static long parse(const char *s)
{
    long v = 0;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return -1;
    for (; *s; s++) {
        int d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = *s - 'A' + 10;
        else
            return -1;
        v = v * base + d;
        if (v > 0xffff)
            return -1;
    }
    return v;
}

static int run(long argc, char **argv)
{
    if (argc != 3) {
        say("usage: kdom-outb PORT VALUE\n");
        return 2;
    }
    long port = parse(argv[1]);
    long value = parse(argv[2]);
    if (port < 0 || value < 0 || value > 0xff) {
        say("kdom-outb: bad PORT or VALUE\n");
        return 2;
    }
    if (syscall3(SYS_ioperm, port, 1, 1) != 0) {
        say("kdom-outb: ioperm failed (needs root)\n");
        return 1;
    }
    unsigned char b = (unsigned char)value;
    unsigned short p = (unsigned short)port;
    __asm__ volatile("outb %0, %1" : : "a"(b), "Nd"(p));
    return 0;
}

/* The kernel enters here with argc at (%rsp) and argv right above it. */
__attribute__((used)) static void start_c(long *sp)
{
    int rc = run(sp[0], (char **)(sp + 1));
    syscall3(SYS_exit_group, rc, 0, 0);
    for (;;) {
    }
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call start_c\n"
        "  hlt\n");
