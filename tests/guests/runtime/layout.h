/* Constants shared by the probe runtime's assembly and C code: GDT selectors,
 * how the probe was entered, the syscall numbers of the ring-3 -> ring-0 gate,
 * and where the application-processor trampoline lives. */
#ifndef PROBE_LAYOUT_H
#define PROBE_LAYOUT_H

/* GDT slots (see gdt in boot.S). */
#define SEL_KCODE64 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b /* slot 0x18, RPL 3 */
#define SEL_UCODE64 0x23 /* slot 0x20, RPL 3 */
#define SEL_KCODE32 0x28
#define SEL_TSS 0x30 /* 16-byte system descriptor: slots 0x30 and 0x38 */

/* How the image was entered. */
#define BOOT_KIND_PVH 1 /* 32-bit PVH entry, ebx = struct hvm_start_info */
#define BOOT_KIND_LINUX64 2 /* 64-bit e_entry, rsi = Linux boot_params */

/* Vector of the DPL-3 gate through which ring-3 code calls ring 0. */
#define SYSCALL_VECTOR 0x80
#define SYS_LEAVE_USER 1 /* rdi = value returned by run_user() */

/* Real-mode trampoline for application processors: copied here, SIPI vector 0x08. */
#define AP_TRAMPOLINE_ADDR 0x8000

/* Flags of the 2 MiB page-directory entries that identity-map memory:
 * present, writable, user-accessible, page size. */
#define PDE_FLAGS 0x87
#define PDE_UNCACHED 0x18 /* PWT | PCD, for the APIC pages */

#define BOOT_STACK_SIZE 16384

#endif
