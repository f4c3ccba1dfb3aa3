/* kdom-store: the guest's side of kdomd's store (xenstore's role), for the default guest.
 * It talks to kdomd over vsock (the host, CID 2, port 7001) with the line protocol of
 * docs/interfaces.md; kdomd answers as this domain, so it reads and writes this domain's keys
 * (relative paths are under /local/domain/<own id>) and never another domain's.
 *
 *   kdom-store read PATH          print the value
 *   kdom-store write PATH VALUE   set it
 *   kdom-store ls PATH            print the children's names, one per line
 *   kdom-store rm PATH            remove it and everything under it
 *   kdom-store watch PATH [N]     print each change at or under PATH ("watch PATH" first);
 *                                 exit after N lines (default: never)
 *   kdom-store batch              send the request lines on stdin, print each reply line
 *
 * Exit status: 0 when kdomd said OK, 1 when it refused (its reason on stderr), 2 on bad use.
 * Static, built by scripts/build-guest.sh into the guest's initramfs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define STORE_PORT 7001
#define MAX_LINE 16384

static int connect_store(void)
{
	int sock = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = STORE_PORT};
	if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof(address)) != 0) {
		perror("kdom-store: cannot reach kdomd's store (vsock port 7001)");
		exit(1);
	}
	return sock;
}

static void send_all(int sock, const char *data, size_t length)
{
	while (length > 0) {
		ssize_t n = send(sock, data, length, MSG_NOSIGNAL);
		if (n <= 0) {
			perror("kdom-store: send");
			exit(1);
		}
		data += n;
		length -= (size_t)n;
	}
}

/* Reads one line (without its newline) into line; 0 at the end of the stream. */
static int read_line(int sock, char *line)
{
	size_t used = 0;
	for (;;) {
		char c;
		ssize_t n = recv(sock, &c, 1, 0);
		if (n <= 0)
			return used > 0;
		if (c == '\n') {
			line[used] = 0;
			return 1;
		}
		if (used + 1 < MAX_LINE)
			line[used++] = c;
	}
}

/* The protocol escapes a backslash as \\ and a line break as \n within a value. */
static void print_unescaped(const char *text)
{
	for (; *text; ++text) {
		if (*text == '\\' && text[1]) {
			++text;
			putchar(*text == 'n' ? '\n' : *text);
		} else {
			putchar(*text);
		}
	}
	putchar('\n');
}

static void append_escaped(char *out, size_t size, const char *value)
{
	size_t used = strlen(out);
	for (; *value && used + 3 < size; ++value) {
		if (*value == '\\' || *value == '\n') {
			out[used++] = '\\';
			out[used++] = *value == '\n' ? 'n' : '\\';
		} else {
			out[used++] = *value;
		}
	}
	out[used] = 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: kdom-store read PATH | write PATH VALUE | ls PATH | rm PATH | watch PATH [N] | batch\n");
	return 2;
}

int main(int argc, char **argv)
{
	static char request[MAX_LINE], reply[MAX_LINE];
	if (argc == 2 && strcmp(argv[1], "batch") == 0) {
		int sock = connect_store();
		int failed = 0;
		while (fgets(request, sizeof(request), stdin)) {
			send_all(sock, request, strlen(request));
			if (request[strlen(request) - 1] != '\n')
				send_all(sock, "\n", 1);
			if (!read_line(sock, reply))
				return 1;
			puts(reply);
			failed |= strncmp(reply, "OK", 2) != 0;
		}
		return failed;
	}
	if (argc < 3)
		return usage();
	const char *command = argv[1], *path = argv[2];
	if (strcmp(command, "read") == 0 && argc == 3)
		snprintf(request, sizeof(request), "READ %s\n", path);
	else if (strcmp(command, "ls") == 0 && argc == 3)
		snprintf(request, sizeof(request), "LS %s\n", path);
	else if (strcmp(command, "rm") == 0 && argc == 3)
		snprintf(request, sizeof(request), "RM %s\n", path);
	else if (strcmp(command, "watch") == 0 && (argc == 3 || argc == 4))
		snprintf(request, sizeof(request), "WATCH %s\n", path);
	else if (strcmp(command, "write") == 0 && argc == 4) {
		snprintf(request, sizeof(request), "WRITE %s ", path);
		append_escaped(request, sizeof(request) - 1, argv[3]);
		strcat(request, "\n");
	} else
		return usage();
	int sock = connect_store();
	send_all(sock, request, strlen(request));
	if (!read_line(sock, reply)) {
		fprintf(stderr, "kdom-store: kdomd closed the connection\n");
		return 1;
	}
	if (strncmp(reply, "OK", 2) != 0) {
		fprintf(stderr, "kdom-store: %s\n", strncmp(reply, "ERR ", 4) == 0 ? reply + 4 : reply);
		return 1;
	}
	const char *rest = reply[2] == ' ' ? reply + 3 : reply + 2;
	if (strcmp(command, "read") == 0) {
		print_unescaped(rest);
	} else if (strcmp(command, "ls") == 0) {
		for (char *name = strtok((char *)rest, " "); name; name = strtok(NULL, " "))
			puts(name);
	} else if (strcmp(command, "watch") == 0) {
		long limit = argc == 4 ? strtol(argv[3], NULL, 10) : 0;
		for (long seen = 0; (limit == 0 || seen < limit) && read_line(sock, reply); ++seen) {
			puts(strncmp(reply, "EVENT ", 6) == 0 ? reply + 6 : reply);
			fflush(stdout);
		}
	}
	return 0;
}
