/* The probe runtime's C side: start-up after boot.S reached 64-bit mode (TSS,
 * IDT, boot information, page tables for RAM above 4 GiB), the serial console
 * and printf, exits, traps and the ring-3 helper. */
#include "layout.h"
#include "probe.h"

/* ------------------------------------------------------------ console */
#define COM1 0x3f8

static void serial_init(void)
{
    outb(COM1 + 1, 0x00); /* no UART interrupts */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 4, 0x03); /* DTR | RTS */
}

void serial_putc(char c)
{
    /* Wait for "transmit holding register empty"; bounded, in case no UART answers. */
    for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
        cpu_relax();
    outb(COM1, (uint8_t)c);
}

void serial_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        serial_putc(s[i]);
}

/* A small vsnprintf: %c %s %d %i %u %x %X %p %%, flags '0' '-', a width, and
 * the length modifiers l, ll, z. Always NUL-terminates; returns the length written. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    size_t n = 0;
#define PUT(ch)                   \
    do {                          \
        if (n + 1 < size)         \
            buf[n] = (ch);        \
        n++;                      \
    } while (0)
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            PUT(*fmt);
            continue;
        }
        fmt++;
        int zero = 0, left = 0, width = 0, lng = 0;
        for (;; fmt++) {
            if (*fmt == '0')
                zero = 1;
            else if (*fmt == '-')
                left = 1;
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng = 1;
            fmt++;
        }
        char tmp[24];
        const char *s = tmp;
        int len = 0;
        switch (*fmt) {
        case 'c':
            tmp[0] = (char)va_arg(ap, int);
            len = 1;
            break;
        case 's':
            s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            len = (int)strlen(s);
            break;
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'p': {
            uint64_t v;
            int neg = 0;
            unsigned base = (*fmt == 'x' || *fmt == 'X' || *fmt == 'p') ? 16 : 10;
            if (*fmt == 'p') {
                v = (uint64_t)(uintptr_t)va_arg(ap, void *);
            } else if (*fmt == 'd' || *fmt == 'i') {
                int64_t sv = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
                if (sv < 0) {
                    neg = 1;
                    v = (uint64_t)0 - (uint64_t)sv;
                } else {
                    v = (uint64_t)sv;
                }
            } else {
                v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            }
            const char *digits = *fmt == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            char rev[24];
            int r = 0;
            do {
                rev[r++] = digits[v % base];
                v /= base;
            } while (v);
            if (neg) {
                if (zero && width > 0) {
                    PUT('-');
                    width--;
                } else {
                    rev[r++] = '-';
                }
            }
            while (r)
                tmp[len++] = rev[--r];
            break;
        }
        case '%':
            tmp[0] = '%';
            len = 1;
            break;
        default:
            tmp[0] = '?';
            len = 1;
            break;
        }
        if (!*fmt)
            break;
        int pad = width > len ? width - len : 0;
        if (!left)
            while (pad-- > 0)
                PUT(zero ? '0' : ' ');
        for (int i = 0; i < len; i++)
            PUT(s[i]);
        if (left)
            while (pad-- > 0)
                PUT(' ');
    }
    if (size)
        buf[n < size ? n : size - 1] = 0;
#undef PUT
    return (int)n;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

static void vprintf_(const char *fmt, va_list ap)
{
    char buf[256];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    serial_write(buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1);
}

void printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf_(fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- exits */
void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

void exit_code(unsigned code)
{
    outb(0xf4, (uint8_t)code);
    /* No debug-exit device: stop here (at CPL 3, spin instead of hlt). */
    if (current_cpl() == 0)
        halt_forever();
    for (;;)
        cpu_relax();
}

void boot_timer_mark(uint8_t value) { outb(0x440, value); }

static void report(const char *verdict, const char *fmt, va_list ap)
{
    char detail[200];
    vsnprintf(detail, sizeof detail, fmt, ap);
    printf("PROBE %s: %s%s%s\n", probe_name, verdict, detail[0] ? " " : "", detail);
}

void probe_pass(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report("PASS", fmt, ap);
    va_end(ap);
    exit_code(PROBE_EXIT_PASS);
}

void probe_report_pass(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report("PASS", fmt, ap);
    va_end(ap);
}

void probe_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report("FAIL", fmt, ap);
    va_end(ap);
    exit_code(PROBE_EXIT_FAIL);
}

static __attribute__((noreturn)) void boot_fail(const char *what)
{
    printf("PROBE %s: FAIL boot: %s\n", probe_name, what);
    exit_code(PROBE_EXIT_BOOT);
}

/* ----------------------------------------------------- libc pieces */
void *memset(void *d, int c, size_t n)
{
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *ret = d;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return ret;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
        if (!a[i])
            return 0;
    }
    return 0;
}

/* ------------------------------------------------- boot information */
struct memmap_entry memmap[MEMMAP_MAX];
unsigned memmap_count;
uint64_t boot_rsdp_paddr;
static char cmdline_buf[1024];

extern uint64_t boot_info_ptr;

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};
struct hvm_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};
#define HVM_START_MAGIC 0x336ec578u

static void copy_cmdline(uint64_t paddr)
{
    if (!paddr)
        return;
    const char *src = (const char *)(uintptr_t)paddr;
    size_t i = 0;
    for (; i + 1 < sizeof cmdline_buf && src[i]; i++)
        cmdline_buf[i] = src[i];
    cmdline_buf[i] = 0;
}

static void read_pvh_start_info(void)
{
    const struct hvm_start_info *si = (const void *)(uintptr_t)boot_info_ptr;
    if (!si || si->magic != HVM_START_MAGIC)
        boot_fail("hvm_start_info magic is wrong");
    copy_cmdline(si->cmdline_paddr);
    boot_rsdp_paddr = si->rsdp_paddr;
    if (si->version < 1 || !si->memmap_paddr || !si->memmap_entries)
        boot_fail("hvm_start_info has no memory map (version < 1?)");
    const struct hvm_memmap_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries && memmap_count < MEMMAP_MAX; i++) {
        memmap[memmap_count].addr = e[i].addr;
        memmap[memmap_count].size = e[i].size;
        memmap[memmap_count].type = e[i].type;
        memmap_count++;
    }
}

/* Linux boot_params ("zero page") offsets. */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0

static void read_linux_boot_params(void)
{
    const uint8_t *bp = (const uint8_t *)(uintptr_t)boot_info_ptr;
    if (!bp)
        boot_fail("no boot_params");
    uint64_t cmd = *(const uint32_t *)(bp + BP_CMD_LINE_PTR) |
                   (uint64_t) * (const uint32_t *)(bp + BP_EXT_CMD_LINE_PTR) << 32;
    copy_cmdline(cmd);
    boot_rsdp_paddr = *(const uint64_t *)(bp + BP_ACPI_RSDP_ADDR);
    unsigned n = bp[BP_E820_ENTRIES];
    for (unsigned i = 0; i < n && i < MEMMAP_MAX; i++) {
        const uint8_t *e = bp + BP_E820_TABLE + 20 * i;
        memmap[memmap_count].addr = *(const uint64_t *)e;
        memmap[memmap_count].size = *(const uint64_t *)(e + 8);
        memmap[memmap_count].type = *(const uint32_t *)(e + 16);
        memmap_count++;
    }
    if (!memmap_count)
        boot_fail("boot_params has no e820 map");
}

uint64_t memmap_ram_bytes(void)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < memmap_count; i++)
        if (memmap[i].type == MEMMAP_RAM)
            total += memmap[i].size;
    return total;
}

uint64_t memmap_ram_end(void)
{
    uint64_t end = 0;
    for (unsigned i = 0; i < memmap_count; i++)
        if (memmap[i].type == MEMMAP_RAM && memmap[i].addr + memmap[i].size > end)
            end = memmap[i].addr + memmap[i].size;
    return end;
}

int memmap_is_ram(uint64_t addr, uint64_t size)
{
    for (unsigned i = 0; i < memmap_count; i++)
        if (memmap[i].type == MEMMAP_RAM && addr >= memmap[i].addr &&
            addr + size <= memmap[i].addr + memmap[i].size)
            return 1;
    return 0;
}

const char *cmdline(void) { return cmdline_buf; }

static const char *cmdline_find(const char *key)
{
    size_t klen = strlen(key);
    const char *p = cmdline_buf;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!strncmp(p, key, klen) && p[klen] == '=')
            return p + klen + 1;
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

int cmdline_has(const char *key) { return cmdline_find(key) != 0; }

uint64_t cmdline_u64(const char *key, uint64_t def)
{
    const char *v = cmdline_find(key);
    if (!v || !*v || *v == ' ')
        return def;
    uint64_t n = 0;
    if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        for (v += 2;; v++) {
            unsigned d;
            if (*v >= '0' && *v <= '9')
                d = *v - '0';
            else if (*v >= 'a' && *v <= 'f')
                d = *v - 'a' + 10;
            else if (*v >= 'A' && *v <= 'F')
                d = *v - 'A' + 10;
            else
                break;
            n = n * 16 + d;
        }
    } else {
        for (; *v >= '0' && *v <= '9'; v++)
            n = n * 10 + (uint64_t)(*v - '0');
    }
    return n;
}

/* -------------------------------------------------------- allocation */
static uint64_t alloc_top;

uint64_t probe_used_end(void) { return alloc_top; }

void *alloc_pages(uint64_t bytes)
{
    uint64_t start = alloc_top;
    uint64_t size = (bytes + 4095) & ~4095ull;
    if (!memmap_is_ram(start, size) || start + size > (4ull << 30))
        return 0;
    alloc_top = start + size;
    return (void *)(uintptr_t)start;
}

/* -------------------------------------------------------- page tables */
extern uint64_t pml4[512], pdpt[512], pd[4 * 512];

/* boot.S mapped 0..4 GiB; map the RAM above it (up to 512 GiB). */
static void map_high_ram(void)
{
    uint64_t end = memmap_ram_end();
    const uint64_t gib = 1ull << 30;
    if (end > 512 * gib)
        end = 512 * gib;
    int changed = 0;
    for (uint64_t g = 4; g * gib < end; g++) {
        int used = 0;
        for (unsigned i = 0; i < memmap_count; i++)
            if (memmap[i].type == MEMMAP_RAM && memmap[i].addr < (g + 1) * gib &&
                memmap[i].addr + memmap[i].size > g * gib)
                used = 1;
        if (!used)
            continue;
        uint64_t *dir = alloc_pages(4096);
        if (!dir)
            boot_fail("no memory for page tables");
        for (uint64_t i = 0; i < 512; i++)
            dir[i] = (g * gib + (i << 21)) | PDE_FLAGS;
        pdpt[g] = (uint64_t)(uintptr_t)dir | 7;
        changed = 1;
    }
    if (changed)
        __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
}

/* ------------------------------------------------------- TSS and IDT */
struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
};

extern uint64_t gdt_tss[2];
extern char isr_stubs[], user_leave_point[];
int user_leave_by_fault;
void leave_user(uint64_t result) __attribute__((noreturn));

static struct tss64 tss;
static struct idt_gate idt[256] __attribute__((aligned(16)));
static irq_handler_t irq_handlers[256];
static uint8_t interrupt_stack[16384] __attribute__((aligned(16)));
static uint8_t user_stack[65536] __attribute__((aligned(16)));

static void tss_load(void)
{
    tss.rsp[0] = (uint64_t)(uintptr_t)(interrupt_stack + sizeof interrupt_stack);
    tss.iomap_base = sizeof tss; /* no I/O bitmap: IOPL decides */
    uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof tss - 1;
    gdt_tss[0] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 |
                 ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
    gdt_tss[1] = base >> 32;
    __asm__ volatile("ltr %w0" ::"r"(SEL_TSS));
}

static void idt_set_gate(unsigned vector, unsigned dpl)
{
    uint64_t addr = (uint64_t)(uintptr_t)(isr_stubs + 16 * vector);
    idt[vector].offset_low = addr & 0xffff;
    idt[vector].selector = SEL_KCODE64;
    idt[vector].ist = 0;
    idt[vector].type_attr = 0x8e | (dpl << 5); /* present, 64-bit interrupt gate */
    idt[vector].offset_mid = (addr >> 16) & 0xffff;
    idt[vector].offset_high = addr >> 32;
    idt[vector].reserved = 0;
}

static void idt_activate(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } desc = {sizeof idt - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" ::"m"(desc));
}

static void idt_load(void)
{
    for (unsigned v = 0; v < 32; v++)
        idt_set_gate(v, 0);
    idt_set_gate(SYSCALL_VECTOR, 3);
    idt_set_gate(0xff, 0); /* LAPIC spurious */
    idt_activate();
}

void irq_register(unsigned vector, irq_handler_t handler)
{
    irq_handlers[vector & 0xff] = handler;
    idt_set_gate(vector & 0xff, 0);
}

void irq_register_user(unsigned vector, irq_handler_t handler)
{
    irq_handlers[vector & 0xff] = handler;
    idt_set_gate(vector & 0xff, 3);
}

static const char *const exception_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "15",  "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void trap_dispatch(struct trap_frame *f);
void trap_dispatch(struct trap_frame *f)
{
    static int in_trap_report;
    unsigned v = (unsigned)f->vector;
    if ((f->cs & 3) == 3 && f->rax == SYS_LEAVE_USER &&
        (v == SYSCALL_VECTOR || ((v == 6 || v == 13) && f->rip == (uint64_t)(uintptr_t)user_leave_point))) {
        user_leave_by_fault = v != SYSCALL_VECTOR;
        leave_user(f->rdi);
    }
    if (v >= 32 && v != SYSCALL_VECTOR && irq_handlers[v]) {
        irq_handlers[v](f);
        return;
    }
    if (v == 0xff)
        return; /* spurious LAPIC interrupt: no EOI */
    if (in_trap_report++)
        exit_code(v < 32 ? PROBE_EXIT_EXCEPTION + v : PROBE_EXIT_EXCEPTION - 1);
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    const char *name = v < 32 && exception_names[v] ? exception_names[v] : "interrupt";
    printf("PROBE %s: FAIL unexpected %s (vector %u) rip=0x%lx err=0x%lx cr2=0x%lx cpl=%u rsp=0x%lx\n",
           probe_name, name, v, f->rip, f->error_code, cr2, (unsigned)(f->cs & 3), f->rsp);
    exit_code(v < 32 ? PROBE_EXIT_EXCEPTION + v : PROBE_EXIT_EXCEPTION - 1);
}

uint64_t run_at_cpl3(uint64_t (*fn)(uint64_t), uint64_t arg)
{
    return run_user(fn, arg, user_stack + sizeof user_stack);
}

/* ------------------------------------------------------------ timing */
static uint64_t tsc_ms;
static const char *tsc_src = "none";

static uint64_t pit_calibrate(void)
{
    /* PIT channel 2, mode 0, 10 ms (11932 ticks at 1.193182 MHz); OUT2 is bit 5 of port 0x61. */
    const unsigned count = 11932;
    outb(0x61, (inb(0x61) & ~0x02) | 0x01);
    outb(0x43, 0xb0);
    outb(0x42, count & 0xff);
    outb(0x42, count >> 8);
    uint64_t t0 = rdtsc();
    for (long i = 0; i < 2000000; i++) {
        if (inb(0x61) & 0x20) {
            /* High at once: no PIT behind the port. */
            if (i == 0)
                return 0;
            uint64_t dt = rdtsc() - t0;
            /* Plausible only between 50 MHz and 20 GHz. */
            if (dt >= 500000 && dt <= 200000000)
                return dt / 10;
            return 0;
        }
    }
    return 0;
}

uint64_t tsc_per_ms(void)
{
    if (tsc_ms)
        return tsc_ms;
    uint32_t r[4];
    cpuid(0x40000000, 0, r);
    if (r[0] >= 0x40000010 && r[0] < 0x40000100) {
        cpuid(0x40000010, 0, r);
        if (r[0]) {
            tsc_src = "cpuid 0x40000010";
            return tsc_ms = r[0];
        }
    }
    cpuid(0, 0, r);
    uint32_t max = r[0];
    if (max >= 0x15) {
        cpuid(0x15, 0, r);
        if (r[0] && r[1] && r[2]) {
            tsc_src = "cpuid 0x15";
            return tsc_ms = (uint64_t)r[2] * r[1] / r[0] / 1000;
        }
    }
    if (max >= 0x16) {
        cpuid(0x16, 0, r);
        if (r[0] & 0xffff) {
            tsc_src = "cpuid 0x16";
            return tsc_ms = (uint64_t)(r[0] & 0xffff) * 1000;
        }
    }
    /* A run can only come out long (the vCPU was preempted): keep the shortest of three. */
    uint64_t pit = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t t = pit_calibrate();
        if (!t)
            break;
        if (!pit || t < pit)
            pit = t;
    }
    if (pit) {
        tsc_src = "pit";
        return tsc_ms = pit;
    }
    tsc_src = "guess";
    return tsc_ms = 2000000;
}

const char *tsc_source(void) { return tsc_src; }

void delay_us(uint64_t us)
{
    uint64_t end = rdtsc() + us * tsc_per_ms() / 1000;
    while ((int64_t)(rdtsc() - end) < 0)
        cpu_relax();
}

/* ---------------------------------------------------------- start-up */
__attribute__((weak)) void ap_main(void) { halt_forever(); }

/* An application processor, in 64-bit mode on its own stack (boot.S): share
 * the BSP's IDT, so that its exceptions are reported too, then run the probe's
 * ap_main(). APs have no TSS: they must not enter CPL 3. */
void runtime_ap_start(void);
void runtime_ap_start(void)
{
    idt_activate();
    ap_main();
    halt_forever();
}

void runtime_start(void);
void runtime_start(void)
{
    serial_init();
    /* Mask both 8259 PICs: the firmware may leave the PIT's IRQ 0 enabled. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    tss_load();
    idt_load();
    alloc_top = (uint64_t)(uintptr_t)__image_end;
    if (boot_kind == BOOT_KIND_PVH)
        read_pvh_start_info();
    else
        read_linux_boot_params();
    map_high_ram();
    exit_code((unsigned)probe_main());
}
