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

static struct sockaddr_un unix_address(const char *path)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	strncpy(address.sun_path, path, sizeof(address.sun_path) - 1);
	return address;
}

static int echo(int sock)
{
	static char buffer[65536];
	for (;;) {
		ssize_t n = read(sock, buffer, sizeof(buffer));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("vsock-client: read");
			return 1;
		}
		if (n == 0)
			break;
		if (write_all(sock, buffer, (size_t)n) != 0) {
			perror("vsock-client: write");
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
			perror("vsock-client: poll");
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
			ssize_t n = send(sock, out + out_off, out_len - out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				perror("vsock-client: send");
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
				fprintf(stderr, "%s: %zu bytes sent, %zu received in %.3f s\n", "vsock-client", sent, received,
					(double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9);
				return 0;
			}
			if (n > 0)
				received += (size_t)n;
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				perror("vsock-client: recv");
				return 1;
			}
			if (n > 0 && write_all(1, in, (size_t)n) != 0)
				return 1;
		}
	}
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
		return pump(sock);
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
		int rc = echo(peer);
		unlink(argv[2]);
		return rc;
	}
	fprintf(stderr, "usage: vsock-client connect PATH PORT | vsock-client listen PATH\n");
	return 2;
}
