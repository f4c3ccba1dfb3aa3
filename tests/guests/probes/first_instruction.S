/* Probe "first-instruction": no runtime. The PVH entry (and e_entry) clears
 * eax and writes it to the debug-exit port: the VMM exits with status 1 after
 * running two guest instructions, which makes start-up latency measurable.
 * (Two, not one: no boot protocol promises eax = 0 at entry.) */
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18		/* name size, descriptor size, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long first_instruction

	.section .text.boot, "ax"
	.code32
	.globl first_instruction, entry64
first_instruction:
entry64:
	xorl %eax, %eax		/* same encoding in 32- and 64-bit mode */
	outb %al, $0xf4
1:	hlt			/* no debug-exit device */
	jmp 1b

	.section .note.GNU-stack, "", @progbits
