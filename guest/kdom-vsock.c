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

static int write_all(int fd, const char *data, size_t length)
{
	while (length > 0) {
		ssize_t n = write(fd, data, length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		length -= (size_t)n;
	}
	return 0;
}

static int echo(int sock)
{
	static char buffer[65536];
	for (;;) {
		ssize_t n = read(sock, buffer, sizeof(buffer));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("kdom-vsock: read");
			return 1;
		}
		if (n == 0)
			break;
		if (write_all(sock, buffer, (size_t)n) != 0) {
			perror("kdom-vsock: write");
			return 1;
		}
	}
	shutdown(sock, SHUT_WR);
	return 0;
}

/* Sends stdin while copying the socket to stdout, so neither side blocks the other. */
static int pump(int sock)
{
	static char out[65536], in[65536];
	size_t out_len = 0, out_off = 0, sent = 0, received = 0;
	int stdin_eof = 0, shut = 0;
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd fds[2] = {{sock, POLLIN, 0}, {0, 0, 0}};
		if (out_off < out_len)
			fds[0].events |= POLLOUT;
		else if (!stdin_eof)
			fds[1].events = POLLIN;
		if (poll(fds, stdin_eof || out_off < out_len ? 1 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("kdom-vsock: poll");
			return 1;
		}
		if (fds[1].revents) {
			ssize_t n = read(0, out, sizeof(out));
			if (n <= 0)
				stdin_eof = 1;
			else
				out_len = (size_t)n, out_off = 0;
		}
		if (fds[0].revents & POLLOUT) {
			ssize_t n = send(sock, out + out_off, out_len - out_off, MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				perror("kdom-vsock: send");
				return 1;
			}
			if (n > 0)
				out_off += (size_t)n, sent += (size_t)n;
		}
		if (stdin_eof && out_off >= out_len && !shut) {
			shutdown(sock, SHUT_WR);
			shut = 1;
		}
		if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(sock, in, sizeof(in), MSG_DONTWAIT);
			if (n == 0) {
				clock_gettime(CLOCK_MONOTONIC, &end);
				fprintf(stderr, "%s: %zu bytes sent, %zu received in %.3f s\n", "kdom-vsock", sent, received,
					(double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9);
				return 0;
			}
			if (n > 0)
				received += (size_t)n;
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				perror("kdom-vsock: recv");
				return 1;
			}
			if (n > 0 && write_all(1, in, (size_t)n) != 0)
				return 1;
		}
	}
}

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
		return echo(peer);
	}
	if (argc == 4 && strcmp(argv[1], "connect") == 0) {
		struct sockaddr_vm address = {.svm_family = AF_VSOCK,
					      .svm_cid = (unsigned)strtoul(argv[2], NULL, 10),
					      .svm_port = (unsigned)strtoul(argv[3], NULL, 10)};
		if (connect(sock, (struct sockaddr *)&address, sizeof(address)) != 0) {
			perror("kdom-vsock: connect");
			return 1;
		}
		return pump(sock);
	}
	fprintf(stderr, "usage: kdom-vsock listen PORT | kdom-vsock connect CID PORT\n");
	return 2;
}
