/* Entry points of every probe guest that uses the runtime:
 *  - pvh_entry32: the Xen PVH entry (32-bit protected mode, paging off, ebx =
 *    struct hvm_start_info), advertised in the XEN_ELFNOTE_PHYS32_ENTRY note;
 *  - entry64: e_entry, for loaders that enter an ELF in 64-bit mode with the
 *    low memory identity-mapped and rsi = Linux boot_params;
 *  - ap_entry32: where the real-mode trampoline leaves an application processor.
 * All of them build (or share) identity-mapped page tables for the first 4 GiB,
 * load our GDT and continue in 64-bit C code. Also here: the interrupt stubs and
 * the switch to and from ring 3. Ring-0 code is slow on some hosts (emulated),
 * so everything here is kept short. */
#include "layout.h"

/* ---------------------------------------------------------------- PVH note */
	.section .note.Xen, "a"
	.balign 4
	.long 4			/* name size: "Xen\0" */
	.long 4			/* descriptor size */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_entry32

/* ------------------------------------------------------- 32-bit entries */
	.section .text.boot, "ax"
	.code32
	.globl pvh_entry32
pvh_entry32:
	cli
	cld
	movl %ebx, boot_info_ptr
	movl $BOOT_KIND_PVH, boot_kind
	movl $boot_stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..3] -> the four page directories. */
	movl $pdpt + 7, pml4
	movl $pd + 0x0007, pdpt
	movl $pd + 0x1007, pdpt + 8
	movl $pd + 0x2007, pdpt + 16
	movl $pd + 0x3007, pdpt + 24
	/* 2048 2 MiB pages: 0 .. 4 GiB. The upper halves are zero (bss). */
	movl $pd, %edi
	movl $PDE_FLAGS, %eax
	movl $2048, %ecx
1:	movl %eax, (%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 1b
	/* The IOAPIC (0xfec00000) and local APIC (0xfee00000) pages: uncached. */
	orl $PDE_UNCACHED, pd + (0xfec00000 >> 21) * 8
	orl $PDE_UNCACHED, pd + (0xfee00000 >> 21) * 8

	movl $bsp_entry64, %ebx
	jmp enter_long_mode

	/* An application processor arrives here from the trampoline, in
	 * protected mode with our GDT loaded and CS = SEL_KCODE32. */
	.globl ap_entry32
ap_entry32:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl ap_stack_top, %esp
	movl $ap_entry64, %ebx
	/* fall through */

	/* ebx = 64-bit code to continue at; the page tables are built. */
enter_long_mode:
	lgdt gdt_desc
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER */
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	ljmp $SEL_KCODE64, $long_mode_trampoline

	.code64
long_mode_trampoline:
	movl %ebx, %ebx			/* upper halves are undefined after the switch */
	jmp *%rbx

/* ------------------------------------------------------- 64-bit entries */
	.globl entry64
entry64:
	cli
	cld
	movq %rsi, boot_info_ptr
	movl $BOOT_KIND_LINUX64, boot_kind
	movq $boot_stack_top, %rsp
	movq $pdpt + 7, pml4
	movq $pd + 0x0007, pdpt
	movq $pd + 0x1007, pdpt + 8
	movq $pd + 0x2007, pdpt + 16
	movq $pd + 0x3007, pdpt + 24
	movq $pd, %rdi
	movq $PDE_FLAGS, %rax
	movl $2048, %ecx
1:	movq %rax, (%rdi)
	addq $0x200000, %rax
	addq $8, %rdi
	loop 1b
	orl $PDE_UNCACHED, pd + (0xfec00000 >> 21) * 8
	orl $PDE_UNCACHED, pd + (0xfee00000 >> 21) * 8
	movq $pml4, %rax
	movq %rax, %cr3
	lgdt gdt_desc
	pushq $SEL_KCODE64
	pushq $bsp_entry64
	lretq

bsp_entry64:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	movq $boot_stack_top, %rsp
	call runtime_start
2:	cli
	hlt
	jmp 2b

ap_entry64:
	movw $SEL_KDATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorl %eax, %eax
	movw %ax, %fs
	movw %ax, %gs
	movl ap_stack_top, %esp
	call runtime_ap_start
3:	cli
	hlt
	jmp 3b

/* ------------------------------------------------- AP real-mode trampoline */
/* Copied to AP_TRAMPOLINE_ADDR (a page below 1 MiB) and started by a SIPI at
 * CS = AP_TRAMPOLINE_ADDR >> 4, IP = 0. Loads our GDT (its base is a 32-bit
 * linear address, reachable from real mode with lgdtl) and jumps to
 * ap_entry32 in the image at 1 MiB. */
	.section .rodata
	.globl ap_trampoline_start, ap_trampoline_end
	.code16
ap_trampoline_start:
	cli
	movw %cs, %ax
	movw %ax, %ds
	lgdtl ap_trampoline_gdt_desc - ap_trampoline_start
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_entry32
	.balign 8
ap_trampoline_gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt
ap_trampoline_end:
	.code64

/* ------------------------------------------------------------------- GDT */
	.section .data
	.balign 16
	.globl gdt, gdt_tss
gdt:
	.quad 0				/* null */
	.quad 0x00af9a000000ffff	/* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cff2000000ffff	/* 0x18 user data (DPL 3) */
	.quad 0x00affa000000ffff	/* 0x20 user code, 64-bit (DPL 3) */
	.quad 0x00cf9a000000ffff	/* 0x28 kernel code, 32-bit */
gdt_tss:
	.quad 0, 0			/* 0x30 TSS, filled in by gdt_set_tss() */
gdt_end:
	.balign 8
	.word 0, 0, 0			/* so that the base below is 8-aligned */
	.globl gdt_desc
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	.globl boot_info_ptr, boot_kind, ap_stack_top
	.balign 8
boot_info_ptr:	.quad 0
ap_stack_top:	.quad 0
boot_kind:	.long 0

/* ------------------------------------------------------------ page tables */
	.section .bss
	.balign 4096
	.globl pml4, pdpt, pd
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096		/* 0 .. 4 GiB */
	.balign 16
boot_stack:
	.skip BOOT_STACK_SIZE
	.globl boot_stack_top
boot_stack_top:

/* ---------------------------------------------------------- interrupt stubs */
/* One 16-byte stub per vector at isr_stubs + 16 * vector. Each pushes a
 * dummy error code where the CPU pushes none, then the vector number. */
	.section .text
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr

/* Builds a struct trap_frame (runtime.h) and calls trap_dispatch(frame). */
isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	cld
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* ----------------------------------------------------------- ring 3 calls */
/* uint64_t run_user(uint64_t (*fn)(uint64_t), uint64_t arg, void *stack_top)
 * Runs fn(arg) at CPL 3 (IOPL 3, interrupts enabled) on the given stack and
 * returns its result. The ring-3 side comes back through the SYSCALL_VECTOR
 * gate with SYS_LEAVE_USER (or the fault that replaces it, see
 * user_leave_point), and leave_user() resumes here. */
	.globl run_user
run_user:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq
	movq %rsp, kernel_saved_rsp
	andq $-16, %rdx
	pushq $SEL_UDATA		/* ss */
	pushq %rdx			/* rsp */
	pushfq
	popq %rax
	orq $0x3200, %rax		/* IF | IOPL 3 */
	pushq %rax			/* rflags */
	pushq $SEL_UCODE64		/* cs */
	pushq $user_trampoline		/* rip */
	movq %rdi, %rax
	movq %rsi, %rdi
	iretq

user_trampoline:
	call *%rax
	movq %rax, %rdi
	movl $SYS_LEAVE_USER, %eax
	/* A DPL-3 gate on ordinary hosts. kvm_pvm refuses `int n` (and `syscall`)
	 * at CPL 3 with #UD/#GP; trap_dispatch() treats such a fault at this very
	 * address as the same request. */
	.globl user_leave_point
user_leave_point:
	int $SYSCALL_VECTOR
	ud2

/* void leave_user(uint64_t result): from the syscall handler, abandons the
 * interrupt frame and returns result from run_user(). */
	.globl leave_user
leave_user:
	movq kernel_saved_rsp, %rsp
	movq %rdi, %rax
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

	.section .bss
	.balign 8
kernel_saved_rsp:
	.skip 8

	.section .note.GNU-stack, "", @progbits
