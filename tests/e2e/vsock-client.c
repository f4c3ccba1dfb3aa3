/* vsock-client: the host side of kdom's hybrid vsock in the end-to-end tests (the test host
 * has no socat). Static, built by CMake and copied into the test host by run-e2e.sh.
 *
 *   vsock-client connect PATH PORT   connect to kdom's socket PATH, say "CONNECT PORT", wait
 *                                    for "OK <n>" (retrying for up to 170 s while the guest's
 *                                    listener is not up yet), then send stdin (and shut down
 *                                    writing) while copying what comes back to stdout
 *   vsock-client listen PATH         listen on the Unix socket PATH (kdom's PATH_<port>),
 *                                    accept one connection and echo everything back
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "stream-copy.h"

static struct sockaddr_un unix_address(const char *path)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	strncpy(address.sun_path, path, sizeof(address.sun_path) - 1);
	return address;
}

/* One attempt: connect, CONNECT, read the answer line. Returns the socket once "OK" came. */
static int try_connect(const char *path, const char *port)
{
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un address = unix_address(path);
	if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof(address)) != 0)
		goto fail;
	char request[64];
	int length = snprintf(request, sizeof(request), "CONNECT %s\n", port);
	if (write_all(sock, request, (size_t)length) != 0)
		goto fail;
	char line[64];
	size_t used = 0;
	while (used < sizeof(line) - 1) {
		ssize_t n = read(sock, line + used, 1);
		if (n <= 0)
			goto fail;
		if (line[used++] == '\n')
			break;
	}
	line[used] = 0;
	if (strncmp(line, "OK ", 3) != 0)
		goto fail;
	fprintf(stderr, "vsock-client: %s", line);
	return sock;
fail:
	if (sock >= 0)
		close(sock);
	return -1;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "connect") == 0) {
		time_t deadline = time(NULL) + 170;
		int sock;
		while ((sock = try_connect(argv[2], argv[3])) < 0) {
			if (time(NULL) > deadline) {
				fprintf(stderr, "vsock-client: no OK from %s for port %s\n", argv[2], argv[3]);
				return 1;
			}
			usleep(500 * 1000);
		}
		return pump("vsock-client", sock);
	}
	if (argc == 3 && strcmp(argv[1], "listen") == 0) {
		int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un address = unix_address(argv[2]);
		if (sock < 0 || bind(sock, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(sock, 1) != 0) {
			perror("vsock-client: bind/listen");
			return 1;
		}
		int peer = accept(sock, NULL, NULL);
		if (peer < 0) {
			perror("vsock-client: accept");
			return 1;
		}
		int rc = echo("vsock-client", peer);
		unlink(argv[2]);
		return rc;
	}
	fprintf(stderr, "usage: vsock-client connect PATH PORT | vsock-client listen PATH\n");
	return 2;
}
