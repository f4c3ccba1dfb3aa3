/* kdom-vsock: a tiny AF_VSOCK stream tool for the default guest (busybox has none), used by
 * the end-to-end tests of kdom's virtio-vsock device.
 *
 *   kdom-vsock listen PORT       accept one connection on PORT and echo everything back
 *                                until the peer shuts its side down
 *   kdom-vsock connect CID PORT  connect to CID:PORT, send stdin (then shut down writing),
 *                                copy what comes back to stdout until the peer closes
 *
 * Static, built by scripts/build-guest.sh into the guest's initramfs.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "stream-copy.h"

int main(int argc, char **argv)
{
	int sock = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (sock < 0) {
		perror("kdom-vsock: socket(AF_VSOCK)");
		return 1;
	}
	if (argc == 3 && strcmp(argv[1], "listen") == 0) {
		struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
					      .svm_port = (unsigned)strtoul(argv[2], NULL, 10)};
		if (bind(sock, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(sock, 1) != 0) {
			perror("kdom-vsock: bind/listen");
			return 1;
		}
		fprintf(stderr, "kdom-vsock: listening on port %u\n", address.svm_port);
		int peer = accept(sock, NULL, NULL);
		if (peer < 0) {
			perror("kdom-vsock: accept");
			return 1;
		}
		return echo("kdom-vsock", peer);
	}
	if (argc == 4 && strcmp(argv[1], "connect") == 0) {
		struct sockaddr_vm address = {.svm_family = AF_VSOCK,
					      .svm_cid = (unsigned)strtoul(argv[2], NULL, 10),
					      .svm_port = (unsigned)strtoul(argv[3], NULL, 10)};
		if (connect(sock, (struct sockaddr *)&address, sizeof(address)) != 0) {
			perror("kdom-vsock: connect");
			return 1;
		}
		return pump("kdom-vsock", sock);
	}
	fprintf(stderr, "usage: kdom-vsock listen PORT | kdom-vsock connect CID PORT\n");
	return 2;
}
