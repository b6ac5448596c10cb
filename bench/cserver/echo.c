/*
 * echo.c — the ceiling: a minimal epoll echo server in C.
 *
 * It exists only to show how fast the loopback echo workloads can go on this
 * machine when nothing but the kernel stands between the load generator and
 * its bytes, so the Go servers' figures have a reference.
 *
 * Design (kept as plain as a production echo would be, nothing more):
 *   - one thread per loop (-loops, default 1), each with its own epoll
 *     instance and its own SO_REUSEPORT listening socket, so the kernel
 *     spreads connections over the loops and no lock is ever taken;
 *   - level-triggered epoll; every socket non-blocking;
 *   - on EPOLLIN one recv(2) into the thread's 64 KiB buffer, then one
 *     send(2) of what was read; a short write keeps the remainder in a
 *     per-connection buffer and switches the connection to EPOLLOUT only
 *     (reading stops until it drains, so memory per connection is bounded by
 *     one read); once drained it goes back to EPOLLIN;
 *   - recv and send, not read and write: on a socket read(2) and write(2)
 *     take the generic file path (fdget_pos, vfs_read/vfs_write,
 *     sock_read_iter/sock_write_iter) before reaching the socket layer,
 *     which recv and send skip (fdget, then __sys_recvfrom/__sys_sendto).
 *     The ceiling should take the cheapest path a server can (reactor reads
 *     with recvfrom and writes with sendto); read and write here would lower
 *     it and flatter every ratio to it (bench/RESULTS.md has the before and
 *     after);
 *   - the soft RLIMIT_NOFILE is raised to the hard limit at start, because
 *     unlike Go's runtime a C program keeps the soft limit (often 1024) it was
 *     given, and the idle workload holds 19 000 connections.
 *
 * Flags (same names as the Go servers): -addr host:port (default
 * 127.0.0.1:9000), -loops n (default 1). It runs until killed.
 *
 * Build: gcc -O2 -pthread -o echo echo.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF (64 * 1024)
#define MAX_EVENTS 1024

/* Per-connection state, indexed by descriptor. A descriptor belongs to the
 * one loop thread that accepted it, so only that thread touches its slot. */
struct conn {
	char *out;     /* pending output (malloc'd), NULL when none */
	size_t off;    /* first unsent byte in out */
	size_t len;    /* bytes in out */
};

static struct conn *conns; /* nconns slots, one per possible descriptor */
static size_t nconns;
static struct sockaddr_in listen_addr;

static void die(const char *what) {
	perror(what);
	exit(1);
}

static void raise_nofile(void) {
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit");
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("setrlimit");
	nconns = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
	conns = calloc(nconns, sizeof(struct conn));
	if (conns == NULL)
		die("calloc");
}

static int parse_addr(const char *s, struct sockaddr_in *sa) {
	char host[64];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)atoi(colon + 1));
	if (host[0] == '\0')
		strcpy(host, "127.0.0.1");
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int make_listener(void) {
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		die("setsockopt");
	if (bind(fd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) != 0)
		die("bind");
	if (listen(fd, SOMAXCONN) != 0)
		die("listen");
	return fd;
}

static void set_events(int ep, int fd, uint32_t ev) {
	struct epoll_event e = {.events = ev, .data.fd = fd};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) != 0)
		die("epoll_ctl mod");
}

static void close_conn(int fd) {
	/* close(2) removes the descriptor from the epoll set as well. */
	free(conns[fd].out);
	conns[fd].out = NULL;
	conns[fd].off = conns[fd].len = 0;
	close(fd);
}

/* flush writes pending output; returns 0 when drained, 1 when some is left,
 * -1 on a fatal error. */
static int flush(int fd) {
	struct conn *c = &conns[fd];
	while (c->off < c->len) {
		ssize_t n = send(fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n > 0) {
			c->off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 1;
		return -1;
	}
	free(c->out);
	c->out = NULL;
	c->off = c->len = 0;
	return 0;
}

static void on_readable(int ep, int fd, char *buf) {
	ssize_t n = recv(fd, buf, READ_BUF, 0);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		close_conn(fd);
		return;
	}
	if (n < 0)
		return;
	ssize_t w = 0;
	while (w < n) {
		ssize_t k = send(fd, buf + w, (size_t)(n - w), MSG_NOSIGNAL);
		if (k > 0) {
			w += k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN)
			break;
		close_conn(fd);
		return;
	}
	if (w == n)
		return;
	/* Short write: keep the rest and wait for EPOLLOUT, not reading meanwhile,
	 * so pending output never exceeds one read's worth. */
	struct conn *c = &conns[fd];
	c->len = (size_t)(n - w);
	c->off = 0;
	c->out = malloc(c->len);
	if (c->out == NULL)
		die("malloc");
	memcpy(c->out, buf + w, c->len);
	set_events(ep, fd, EPOLLOUT);
}

static void accept_all(int ep, int lfd) {
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				perror("accept4"); /* e.g. EMFILE; retried on the next event */
			return;
		}
		if ((size_t)fd >= nconns) {
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0)
			die("epoll_ctl add");
	}
}

static void *loop(void *arg) {
	(void)arg;
	int lfd = make_listener();
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	struct epoll_event e = {.events = EPOLLIN, .data.fd = lfd};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) != 0)
		die("epoll_ctl listener");
	char *buf = malloc(READ_BUF);
	struct epoll_event *evs = calloc(MAX_EVENTS, sizeof(*evs));
	if (buf == NULL || evs == NULL)
		die("malloc");
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			uint32_t ev = evs[i].events;
			if (fd == lfd) {
				accept_all(ep, lfd);
				continue;
			}
			if (conns[fd].out != NULL) {
				/* Waiting for EPOLLOUT (or an error reported with it). */
				int r = flush(fd);
				if (r < 0)
					close_conn(fd);
				else if (r == 0)
					set_events(ep, fd, EPOLLIN);
				continue;
			}
			if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
				on_readable(ep, fd, buf); /* a read tells EOF from error */
		}
	}
	return NULL;
}

int main(int argc, char **argv) {
	const char *addr = "127.0.0.1:9000";
	int loops = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] == '-' && a[1] == '-')
			a++;
		const char *val = NULL;
		const char *eq = strchr(a, '=');
		size_t keylen = eq ? (size_t)(eq - a) : strlen(a);
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[i + 1];
		if (keylen == 5 && strncmp(a, "-addr", 5) == 0 && val) {
			addr = val;
		} else if (keylen == 6 && strncmp(a, "-loops", 6) == 0 && val) {
			loops = atoi(val);
		} else {
			fprintf(stderr, "usage: %s [-addr host:port] [-loops n]\n", argv[0]);
			return 2;
		}
		if (!eq)
			i++;
	}
	if (loops < 1)
		loops = 1;
	if (parse_addr(addr, &listen_addr) != 0) {
		fprintf(stderr, "bad -addr %s\n", addr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	pthread_t *th = calloc((size_t)loops, sizeof(*th));
	for (int i = 0; i < loops; i++)
		if (pthread_create(&th[i], NULL, loop, NULL) != 0)
			die("pthread_create");
	for (int i = 0; i < loops; i++)
		pthread_join(th[i], NULL);
	return 0;
}
