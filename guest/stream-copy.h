/* Stream copying shared by the vsock test tools (guest/kdom-vsock.c in the guest,
 * tests/e2e/vsock-client.c in the test host): write everything, echo a stream back, or send
 * stdin while copying the stream to stdout. Header-only: each tool is one C file built on its
 * own (scripts/build-guest.sh, CMake).
 */
#ifndef KDOM_STREAM_COPY_H
#define KDOM_STREAM_COPY_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void stream_error(const char *prog, const char *what)
{
	char message[128];
	snprintf(message, sizeof(message), "%s: %s", prog, what);
	perror(message);
}

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

static int echo(const char *prog, int sock)
{
	static char buffer[65536];
	for (;;) {
		ssize_t n = read(sock, buffer, sizeof(buffer));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			stream_error(prog, "read");
			return 1;
		}
		if (n == 0)
			break;
		if (write_all(sock, buffer, (size_t)n) != 0) {
			stream_error(prog, "write");
			return 1;
		}
	}
	shutdown(sock, SHUT_WR);
	return 0;
}

/* Sends stdin while copying the socket to stdout, so neither side blocks the other. */
static int pump(const char *prog, int sock)
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
			stream_error(prog, "poll");
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
				stream_error(prog, "send");
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
			ssize_t n = recv(sock, in, sizeof(in), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n == 0) {
				clock_gettime(CLOCK_MONOTONIC, &end);
				fprintf(stderr, "%s: %zu bytes sent, %zu received in %.3f s\n", prog, sent, received,
					(double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9);
				return 0;
			}
			if (n > 0)
				received += (size_t)n;
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				stream_error(prog, "recv");
				return 1;
			}
			if (n > 0 && write_all(1, in, (size_t)n) != 0)
				return 1;
		}
	}
}


#endif
