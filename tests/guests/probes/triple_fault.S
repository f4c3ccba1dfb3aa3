/* Probe "triple-fault": no runtime. Loads an empty IDT and executes ud2: the #UD cannot be
 * delivered, nor the #DF that follows, so the CPU shuts down (triple fault). The VMM must
 * report the failure with the vCPU's registers and exit non-zero, not hang or crash. */
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18		/* name size, descriptor size, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long triple_fault

	.section .text.boot, "ax"
	.code32
	.globl triple_fault, entry64
triple_fault:
entry64:
	lidt empty_idtr
	movl $0x7e57, %esi	/* a marker to find in the register dump */
	ud2
1:	hlt
	jmp 1b

	.section .rodata
	.balign 8
empty_idtr:
	.word 0
	.long 0, 0

	.section .note.GNU-stack, "", @progbits
