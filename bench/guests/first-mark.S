/* Benchmark guest "first-mark": its first two instructions write to kdom's
 * boot-timer port (0x440; a port above 0xff needs dx, hence two), so that kdom
 * logs "boot-timer: <ms> ms since start" as the guest starts; then it writes 0 to the
 * debug-exit port (0xf4), ending the VMM with status 1. The value written to
 * 0x440 is whatever al holds at entry (the boot timer logs any value). Under a
 * VMM without a device at 0x440 (QEMU) the first write is simply dropped. */
	.section .note.Xen, "a"
	.balign 4
	.long 4, 4, 18		/* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long start32

	.section .text.entry, "ax"
	.code32
	.globl start32
start32:
	movl $0x440, %edx	/* same bytes in 32- and 64-bit mode */
	outb %al, %dx		/* the boot-timer mark */
	xorl %eax, %eax		/* same bytes in 32- and 64-bit mode */
	outb %al, $0xf4		/* debug exit, code 0 */
0:	hlt
	jmp 0b

	.section .note.GNU-stack, "", @progbits
