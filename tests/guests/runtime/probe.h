/* The probe-guest runtime: what a probe (the files in probes/) may use.
 *
 * A probe defines `const char probe_name[]` (the NAME in its PROBE lines) and
 * `int probe_main(void)`. The runtime enters 64-bit mode, identity-maps all
 * RAM with user-accessible 2 MiB pages, installs a GDT, TSS and IDT, copies
 * the boot information (memmap, command line, RSDP) and calls probe_main();
 * its return value is the debug-exit code. Probes report with probe_pass()
 * or probe_fail(), which print `PROBE <name>: PASS|FAIL ...` and exit.
 *
 * Exit codes written to the debug-exit port (kdom and QEMU report
 * (code << 1) | 1): 0 pass, PROBE_EXIT_FAIL for a failed check,
 * PROBE_EXIT_BOOT when the boot information is unusable, and
 * PROBE_EXIT_EXCEPTION + vector for an unexpected exception/interrupt. */
#ifndef PROBE_H
#define PROBE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define PROBE_EXIT_PASS 0
#define PROBE_EXIT_FAIL 3
#define PROBE_EXIT_BOOT 4
#define PROBE_EXIT_EXCEPTION 0x60 /* + vector (0..31); 0x5f: unexpected interrupt */

/* Defined by each probe. */
extern const char probe_name[];
int probe_main(void);

/* ------------------------------------------------------------ port I/O */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* -------------------------------------------------------------- CPU */
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
/* Ring 0 only: enable interrupts and wait for one, atomically; returns with them off. */
static inline void halt_once(void) { __asm__ volatile("sti; hlt; cli" ::: "memory"); }
static inline unsigned current_cpl(void)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3;
}

/* ------------------------------------------------ output and exit */
void serial_putc(char c);
void serial_write(const char *s, size_t n);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes code to the debug-exit port (0xf4); halts forever if that returns. */
__attribute__((noreturn)) void exit_code(unsigned code);
/* Writes value to the boot-timer port (0x440). */
void boot_timer_mark(uint8_t value);
/* Print `PROBE <name>: PASS <detail>` and exit 0. */
__attribute__((noreturn, format(printf, 1, 2))) void probe_pass(const char *fmt, ...);
/* Print `PROBE <name>: FAIL <reason>` and exit PROBE_EXIT_FAIL. */
__attribute__((noreturn, format(printf, 1, 2))) void probe_fail(const char *fmt, ...);
/* Like probe_pass but returns (for probes that keep running afterwards). */
__attribute__((format(printf, 1, 2))) void probe_report_pass(const char *fmt, ...);
/* Ring 0: halt forever with interrupts off. */
__attribute__((noreturn)) void halt_forever(void);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* --------------------------------------------------- boot information */
#define MEMMAP_RAM 1
#define MEMMAP_RESERVED 2
#define MEMMAP_ACPI 3
#define MEMMAP_NVS 4
#define MEMMAP_UNUSABLE 5
#define MEMMAP_MAX 128

struct memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

extern unsigned boot_kind; /* BOOT_KIND_* from layout.h */
extern struct memmap_entry memmap[MEMMAP_MAX];
extern unsigned memmap_count;
extern uint64_t boot_rsdp_paddr; /* 0 when the loader gave none */

/* Sum of the sizes of the RAM entries; the highest RAM address + 1. */
uint64_t memmap_ram_bytes(void);
uint64_t memmap_ram_end(void);
/* Whether [addr, addr+size) lies entirely in RAM entries (one entry). */
int memmap_is_ram(uint64_t addr, uint64_t size);

/* The command line ("" when none). */
const char *cmdline(void);
/* Value of `key=N` on the command line (decimal or 0x hex), or def. */
uint64_t cmdline_u64(const char *key, uint64_t def);
/* Whether `key=N` is present. */
int cmdline_has(const char *key);

/* Memory the probe itself occupies, from the image start to the end of what
 * alloc_pages() handed out: [__image_start, probe_used_end()). */
extern char __image_start[], __image_end[];
uint64_t probe_used_end(void);
/* Bump allocator right after the image (never freed); memory is not zeroed.
 * Returns 0 when RAM runs out. */
void *alloc_pages(uint64_t bytes);

/* ------------------------------------------------------- interrupts */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*irq_handler_t)(struct trap_frame *frame);
/* Install handler for a vector (32..255); ring-0 gate. */
void irq_register(unsigned vector, irq_handler_t handler);
/* The same with a DPL-3 gate, so ring-3 code may raise it with `int`. */
void irq_register_user(unsigned vector, irq_handler_t handler);

/* Run fn(arg) at CPL 3 with interrupts enabled, on the runtime's user stack;
 * returns fn's result. All RAM is user-accessible. IOPL is 3, but do no port
 * I/O at CPL 3: kvm_pvm ignores IOPL there (#GP). Ring-3 code returns through
 * `int $0x80` (DPL-3 gate); where the host refuses that (kvm_pvm: #UD), the
 * fault at that instruction is taken as the same request, and
 * user_leave_by_fault is set. */
uint64_t run_user(uint64_t (*fn)(uint64_t), uint64_t arg, void *stack_top);
uint64_t run_at_cpl3(uint64_t (*fn)(uint64_t), uint64_t arg);
extern int user_leave_by_fault;

/* ----------------------------------------------------------- timing */
/* TSC ticks per millisecond (from CPUID, the PIT, or a 2 GHz guess). */
uint64_t tsc_per_ms(void);
const char *tsc_source(void);
void delay_us(uint64_t us);

/* ------------------------------------------------------------- ACPI */
/* Finds the RSDP (start_info, else EBDA / 0xe0000-0xfffff scan); 0 if none. */
uint64_t acpi_find_rsdp(void);
/* Finds a table by signature through the XSDT or RSDT; 0 if none. */
uint64_t acpi_find_table(const char sig[4]);
/* Local APIC ids of the enabled processors in the MADT; returns the count
 * (-1: no MADT). ids may be 0 to only count. */
int acpi_madt_cpus(uint32_t *ids, int max);

/* ------------------------------------------------------------ LAPIC */
#define LAPIC_ID 0x020
#define LAPIC_VERSION 0x030
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_ESR 0x280
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0

/* Enables this CPU's local APIC (xAPIC MMIO, or x2APIC if already on). */
void lapic_enable(void);
uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t value);
uint32_t lapic_id(void);
void lapic_eoi(void);
/* Sends an IPI (ICR low bits) to the APIC id; waits for delivery. */
int lapic_send_ipi(uint32_t apic_id, uint32_t icr_low);
int lapic_is_x2apic(void);

/* ------------------------------------------------------- SMP startup */
/* Where an AP lands in 64-bit mode, on ap_stack_top, with the BSP's IDT and
 * no TSS (so never CPL 3); the runtime's weak default halts. */
void ap_main(void);
extern volatile uint64_t ap_stack_top;
extern const char ap_trampoline_start[], ap_trampoline_end[];

#endif
