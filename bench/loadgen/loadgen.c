/*
 * loadgen.c — echo load generator for the side-by-side benchmarks.
 *
 * It opens -c connections to -addr, keeps -d messages of -s bytes in flight on
 * each, checks every echoed byte, and once every connection is established
 * (or has failed) runs -w seconds of warm-up and then -t seconds measured,
 * and prints one JSON line (see README.md for the fields). Waiting for the
 * connections matters with many of them: 19 000 connects take seconds, and a
 * window that began before they were all up would measure the set-up.
 *
 * Why C with epoll: the client must cost less CPU than the fastest server it
 * measures (the C echo server), or it measures itself. One thread drives all
 * connections from one level-triggered epoll set; -threads n splits the
 * connections over n such threads when the client is given more cores.
 *
 * The byte pattern. Message k of connection i is the window of PATLEN bytes
 * starting at offset(i, k) in a fixed pseudo-random table, with
 * offset(i, k) = (k*4099 + i*7919) mod 65536 (4099 is odd, so successive k
 * give distinct windows for 65536 messages). Received bytes are compared with
 * memcmp against the window expected next. A lost, duplicated or reordered
 * message, or a single lost or extra byte, shifts the stream against the
 * expectation and fails the comparison (two windows of random data agree by
 * chance with probability 256^-n); bytes received beyond those sent are an
 * error too. Sends are made straight from the table with writev, so neither
 * side of the check costs a copy.
 *
 * Latency: each message is timed from the writev that carried its first byte
 * to the read that completed its echo; with depth > 1 every message is timed
 * on its own. Times go into a log-linear histogram (64 sub-buckets per power
 * of two, under 1.6 % error).
 *
 * CPU: getrusage(RUSAGE_SELF) user+system time over the measured window,
 * reported as seconds and as a percentage of one core, so a report can show
 * whether the client was the bottleneck.
 *
 * TLS (-tls 13 or -tls 12): every connection runs an OpenSSL client
 * handshake (certificate not verified: the servers make theirs at start)
 * before its first message, inside the warm-up; messages then go through
 * SSL_write and SSL_read on the same non-blocking sockets and epoll set.
 * Each pump seals what the window allows with one SSL_write (partial
 * writes on, so it returns what went out, as writev does), and each
 * readiness drains SSL_read until it wants more bytes: OpenSSL may hold
 * whole records that epoll would never report.
 *
 * Build: gcc -O2 -pthread -o loadgen loadgen.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define OFFSET_MASK 0xFFFFu /* window offsets are taken mod 65536 */
#define RBUF (256 * 1024)
#define MAX_IOV 64
#define MAX_EVENTS 1024
#define HBUCKETS (128 + 57 * 64)

/* ---------- options, shared read-only by the threads ---------- */

static struct sockaddr_in server;
static const char *addr_str = "127.0.0.1:9000";
static int nconn = 100, depth = 1, msgsize = 64, nthreads = 1;
static double warm_s = 2, dur_s = 10, connect_timeout_s = 30;
static int server_pid; /* -pid: the server whose CPU time is reported, 0 for none */
static int tls_version; /* -tls: 0 (plain TCP), 12 or 13 */
static SSL_CTX *ssl_ctx; /* with -tls; shared, read-only once set up */
static unsigned char *pattern; /* 65536 + msgsize bytes */
/* CLOCK_MONOTONIC ns. t_start is set before the threads start. t_measure and
 * t_end stay NOT_YET until every connection has settled; then the main thread
 * stores t_measure and after it t_end, both with release order, and the
 * workers load them with acquire order (see load_ns): a worker that sees
 * t_end set sees t_measure too. */
#define NOT_YET UINT64_MAX
static uint64_t t_start, t_measure = NOT_YET, t_end = NOT_YET;
static int settled; /* connections open (after the TLS handshake, with -tls) or failed before; atomic */

static uint64_t load_ns(const uint64_t *t) { return __atomic_load_n(t, __ATOMIC_ACQUIRE); }


/* ---------- per-thread state; each thread owns its own ---------- */

enum { CONNECTING, HANDSHAKE, OPEN, DEAD };

struct lconn {
	int fd;
	int state;
	int want_out;     /* EPOLLOUT registered */
	uint32_t id;      /* global connection index, picks the pattern windows */
	uint64_t tx_seq;  /* message being sent (or next to send) */
	uint32_t tx_off;  /* bytes of message tx_seq already written */
	uint64_t rx_seq;  /* message whose echo is being received */
	uint32_t rx_off;  /* bytes of message rx_seq received */
	uint64_t *sent;   /* depth slots: send time of message k at k % depth */
	SSL *ssl;         /* with -tls */
};

struct worker {
	pthread_t th;
	int first, count; /* connection ids [first, first+count) */
	struct lconn *conns;
	int ep;
	unsigned char *rbuf;
	unsigned char *wbuf; /* with -tls: the window's messages, contiguous for one SSL_write */
	uint64_t msgs;       /* messages completed inside the measured window */
	uint64_t errors;
	int connected;
	char err[160];       /* first error, for the report */
	uint64_t hist[HBUCKETS];
};

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int hidx(uint64_t v) {
	if (v < 128)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	int shift = msb - 6; /* v >> shift is in [64, 128) */
	return 128 + (shift - 1) * 64 + (int)((v >> shift) - 64);
}

/* hval returns the middle of bucket i, in ns. */
static double hval(int i) {
	if (i < 128)
		return i;
	int shift = (i - 128) / 64 + 1;
	uint64_t lo = (uint64_t)((i - 128) % 64 + 64) << shift;
	return (double)lo + (double)((uint64_t)1 << shift) / 2.0;
}

static const unsigned char *window(uint32_t id, uint64_t seq) {
	return pattern + ((seq * 4099u + (uint64_t)id * 7919u) & OFFSET_MASK);
}

static void fail(struct worker *w, struct lconn *c, const char *what, int err) {
	w->errors++;
	if (c->state == CONNECTING || c->state == HANDSHAKE)
		__atomic_add_fetch(&settled, 1, __ATOMIC_RELEASE);
	if (w->err[0] == '\0') {
		if (err)
			snprintf(w->err, sizeof(w->err), "conn %u msg %llu: %s: %s", c->id,
			         (unsigned long long)c->rx_seq, what, strerror(err));
		else
			snprintf(w->err, sizeof(w->err), "conn %u msg %llu: %s", c->id,
			         (unsigned long long)c->rx_seq, what);
	}
	if (c->fd >= 0)
		close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->state = DEAD;
}

/* ssl_fail reports an SSL call that failed with SSL_get_error code e. */
static void ssl_fail(struct worker *w, struct lconn *c, const char *what, int e) {
	char buf[120];
	unsigned long q = ERR_get_error();
	if (e == SSL_ERROR_SYSCALL && q == 0) {
		fail(w, c, what, errno ? errno : ECONNRESET);
		return;
	}
	snprintf(buf, sizeof(buf), "%s: SSL error %d: %s", what, e, q ? ERR_reason_error_string(q) : "-");
	ERR_clear_error();
	fail(w, c, buf, 0);
}

static void set_out(struct worker *w, struct lconn *c, int on) {
	if (c->want_out == on)
		return;
	struct epoll_event e = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - w->conns)};
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &e) != 0) {
		fail(w, c, "epoll_ctl", errno);
		return;
	}
	c->want_out = on;
}

static void stamp_sent(struct lconn *c, size_t left, uint64_t now);

/* pump_tls is pump over TLS: the messages the window allows are copied
 * together and sealed with one SSL_write. With partial writes on, a
 * record that went out counts, and the rest is offered again (the same
 * bytes, maybe more of them: OpenSSL allows a retry that is longer). */
static void pump_tls(struct worker *w, struct lconn *c, uint64_t now) {
	while (c->state == OPEN && c->tx_seq < c->rx_seq + (uint64_t)depth) {
		size_t total = 0;
		for (uint64_t k = c->tx_seq; k < c->rx_seq + (uint64_t)depth; k++) {
			uint32_t skip = k == c->tx_seq ? c->tx_off : 0;
			memcpy(w->wbuf + total, window(c->id, k) + skip, (size_t)msgsize - skip);
			total += (size_t)msgsize - skip;
		}
		int r = SSL_write(c->ssl, w->wbuf, (int)total);
		if (r <= 0) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
				set_out(w, c, e == SSL_ERROR_WANT_WRITE);
				return;
			}
			ssl_fail(w, c, "SSL_write", e);
			return;
		}
		stamp_sent(c, (size_t)r, now);
	}
	if (c->state == OPEN)
		set_out(w, c, 0);
}

/* stamp_sent advances the send position by left bytes, stamping every
 * message whose first byte they include. */
static void stamp_sent(struct lconn *c, size_t left, uint64_t now) {
	while (left > 0) {
		if (c->tx_off == 0)
			c->sent[c->tx_seq % (uint64_t)depth] = now;
		size_t need = (size_t)msgsize - c->tx_off;
		if (left >= need) {
			left -= need;
			c->tx_seq++;
			c->tx_off = 0;
		} else {
			c->tx_off += (uint32_t)left;
			left = 0;
		}
	}
}

/* pump writes every message the window allows: up to depth in flight. */
static void pump(struct worker *w, struct lconn *c, uint64_t now) {
	if (c->ssl != NULL) {
		pump_tls(w, c, now);
		return;
	}
	while (c->state == OPEN && c->tx_seq < c->rx_seq + (uint64_t)depth) {
		struct iovec iov[MAX_IOV];
		int n = 0;
		size_t total = 0;
		for (uint64_t k = c->tx_seq; k < c->rx_seq + (uint64_t)depth && n < MAX_IOV; k++, n++) {
			uint32_t skip = k == c->tx_seq ? c->tx_off : 0;
			iov[n].iov_base = (void *)(window(c->id, k) + skip);
			iov[n].iov_len = (size_t)msgsize - skip;
			total += iov[n].iov_len;
		}
		ssize_t r = writev(c->fd, iov, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				set_out(w, c, 1);
				return;
			}
			fail(w, c, "writev", errno);
			return;
		}
		/* Stamp every message whose first byte this call wrote. */
		stamp_sent(c, (size_t)r, now);
		if ((size_t)r < total) {
			set_out(w, c, 1);
			return;
		}
	}
	if (c->state == OPEN)
		set_out(w, c, 0);
}

/* check takes n received bytes from w->rbuf: compares them with what was
 * sent and counts the messages they complete. It returns 0, or -1 after
 * failing the connection. */
static int check(struct worker *w, struct lconn *c, ssize_t n, uint64_t now);

/* on_read_tls drains SSL_read: OpenSSL may hold whole records already read
 * from the socket, which epoll will not report again. */
static void on_read_tls(struct worker *w, struct lconn *c, uint64_t now) {
	for (;;) {
		int n = SSL_read(c->ssl, w->rbuf, RBUF);
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_READ)
				break;
			if (e == SSL_ERROR_WANT_WRITE) {
				set_out(w, c, 1);
				break;
			}
			ssl_fail(w, c, e == SSL_ERROR_ZERO_RETURN ? "server closed the connection" : "SSL_read", e);
			return;
		}
		if (check(w, c, n, now) != 0)
			return;
	}
	pump(w, c, now);
}

static void on_read(struct worker *w, struct lconn *c, uint64_t now) {
	if (c->ssl != NULL) {
		on_read_tls(w, c, now);
		return;
	}
	ssize_t n = read(c->fd, w->rbuf, RBUF);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		fail(w, c, "read", errno);
		return;
	}
	if (n == 0) {
		fail(w, c, "server closed the connection", 0);
		return;
	}
	if (check(w, c, n, now) == 0)
		pump(w, c, now);
}

static int check(struct worker *w, struct lconn *c, ssize_t n, uint64_t now) {
	uint64_t rx_pos = c->rx_seq * (uint64_t)msgsize + c->rx_off + (uint64_t)n;
	uint64_t tx_pos = c->tx_seq * (uint64_t)msgsize + c->tx_off;
	if (rx_pos > tx_pos) {
		fail(w, c, "received more bytes than were sent", 0);
		return -1;
	}
	int measuring = now >= load_ns(&t_measure) && now < load_ns(&t_end);
	const unsigned char *p = w->rbuf;
	while (n > 0) {
		size_t chunk = (size_t)msgsize - c->rx_off;
		if ((size_t)n < chunk)
			chunk = (size_t)n;
		if (memcmp(p, window(c->id, c->rx_seq) + c->rx_off, chunk) != 0) {
			fail(w, c, "echoed bytes differ from those sent (loss, duplication or reordering)", 0);
			return -1;
		}
		p += chunk;
		n -= (ssize_t)chunk;
		c->rx_off += (uint32_t)chunk;
		if (c->rx_off == (uint32_t)msgsize) {
			if (measuring) {
				w->msgs++;
				w->hist[hidx(now - c->sent[c->rx_seq % (uint64_t)depth])]++;
			}
			c->rx_seq++;
			c->rx_off = 0;
		}
	}
	return 0;
}

/* handshake advances the TLS handshake; once it is done the connection
 * opens and sends its first messages. */
static void handshake(struct worker *w, struct lconn *c, uint64_t now) {
	int r = SSL_connect(c->ssl);
	if (r == 1) {
		c->state = OPEN;
		w->connected++;
		__atomic_add_fetch(&settled, 1, __ATOMIC_RELEASE);
		pump(w, c, now);
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		set_out(w, c, e == SSL_ERROR_WANT_WRITE);
		return;
	}
	ssl_fail(w, c, "TLS handshake", e);
}

static void on_connected(struct worker *w, struct lconn *c, uint64_t now) {
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		fail(w, c, "connect", err);
		return;
	}
	if (ssl_ctx != NULL) {
		c->ssl = SSL_new(ssl_ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
			fail(w, c, "SSL_new", 0);
			return;
		}
		c->state = HANDSHAKE;
		handshake(w, c, now);
		return;
	}
	c->state = OPEN;
	w->connected++;
	__atomic_add_fetch(&settled, 1, __ATOMIC_RELEASE);
	pump(w, c, now);
}

static void *run_worker(void *arg) {
	struct worker *w = arg;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (w->ep < 0) {
		perror("epoll_create1");
		exit(1);
	}
	for (int i = 0; i < w->count; i++) {
		struct lconn *c = &w->conns[i];
		c->id = (uint32_t)(w->first + i);
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		c->sent = calloc((size_t)depth, sizeof(uint64_t));
		if (c->sent == NULL) {
			perror("calloc");
			exit(1);
		}
		if (c->fd < 0) {
			fail(w, c, "socket", errno);
			continue;
		}
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->state = CONNECTING;
		c->want_out = 1;
		if (connect(c->fd, (struct sockaddr *)&server, sizeof(server)) != 0 && errno != EINPROGRESS) {
			fail(w, c, "connect", errno);
			continue;
		}
		struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &e) != 0)
			fail(w, c, "epoll_ctl", errno);
	}
	struct epoll_event evs[MAX_EVENTS];
	uint64_t connect_deadline = t_start + (uint64_t)(connect_timeout_s * 1e9);
	for (;;) {
		uint64_t now = now_ns();
		uint64_t measure = load_ns(&t_measure), end = load_ns(&t_end);
		if (now >= end)
			break;
		if (now >= connect_deadline && connect_deadline != 0) {
			for (int i = 0; i < w->count; i++)
				if (w->conns[i].state == CONNECTING || w->conns[i].state == HANDSHAKE)
					fail(w, &w->conns[i], "connect timed out", 0);
			connect_deadline = 0;
		}
		/* Until the window is set, wake every 50 ms to look for it. */
		uint64_t next = end == NOT_YET ? now + 50000000u : now < measure ? measure : end;
		if (connect_deadline != 0 && connect_deadline < next)
			next = connect_deadline;
		int timeout_ms = (int)((next - now) / 1000000u) + 1;
		int n = epoll_wait(w->ep, evs, MAX_EVENTS, timeout_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_wait");
			exit(1);
		}
		now = now_ns();
		for (int i = 0; i < n; i++) {
			struct lconn *c = &w->conns[evs[i].data.u32];
			uint32_t ev = evs[i].events;
			if (c->state == CONNECTING) {
				on_connected(w, c, now);
				continue;
			}
			if (c->state == HANDSHAKE) {
				handshake(w, c, now);
				continue;
			}
			if (c->state == OPEN && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				on_read(w, c, now);
			if (c->state == OPEN && (ev & EPOLLOUT))
				pump(w, c, now);
		}
	}
	for (int i = 0; i < w->count; i++) {
		if (w->conns[i].ssl != NULL)
			SSL_free(w->conns[i].ssl); /* no close_notify: the run is over */
		if (w->conns[i].fd >= 0)
			close(w->conns[i].fd);
		free(w->conns[i].sent);
	}
	close(w->ep);
	return NULL;
}

/* cpu_seconds reads this process's user and system time (all threads). */
static void cpu_seconds(double *user, double *sys) {
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	*user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	*sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* proc_cpu_seconds reads utime+stime of another process (the server, given
 * by -pid) from /proc/<pid>/stat, or -1 when it cannot. Fields 14 and 15 are
 * in clock ticks (proc(5)); the command name (field 2) may hold spaces, so
 * parsing starts after its closing parenthesis. */
static double proc_cpu_seconds(int pid) {
	char path[64], buf[1024];
	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	unsigned long long ut = 0, st = 0;
	/* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void sleep_until(uint64_t t) {
	for (uint64_t now = now_ns(); now < t; now = now_ns()) {
		struct timespec ts = {.tv_sec = (time_t)((t - now) / 1000000000u),
		                      .tv_nsec = (long)((t - now) % 1000000000u)};
		nanosleep(&ts, NULL);
	}
}

static void usage(const char *prog) {
	fprintf(stderr,
	        "usage: %s [-addr host:port] [-c conns] [-d depth] [-s size] [-w warmup_s] [-t seconds]\n"
	        "          [-threads n] [-connect-timeout s] [-pid server_pid] [-tls 12|13]\n",
	        prog);
	exit(2);
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

int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] == '-' && a[1] == '-')
			a++;
		const char *eq = strchr(a, '=');
		size_t keylen = eq ? (size_t)(eq - a) : strlen(a);
		const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (val == NULL)
			usage(argv[0]);
#define KEY(k) (keylen == strlen(k) && strncmp(a, k, keylen) == 0)
		if (KEY("-addr"))
			addr_str = val;
		else if (KEY("-c"))
			nconn = atoi(val);
		else if (KEY("-d"))
			depth = atoi(val);
		else if (KEY("-s"))
			msgsize = atoi(val);
		else if (KEY("-w"))
			warm_s = atof(val);
		else if (KEY("-t"))
			dur_s = atof(val);
		else if (KEY("-threads"))
			nthreads = atoi(val);
		else if (KEY("-pid"))
			server_pid = atoi(val);
		else if (KEY("-connect-timeout"))
			connect_timeout_s = atof(val);
		else if (KEY("-tls"))
			tls_version = atoi(val);
		else
			usage(argv[0]);
#undef KEY
	}
	if (nconn < 1 || depth < 1 || msgsize < 1 || msgsize > (1 << 20) || nthreads < 1 || dur_s <= 0 || warm_s < 0 ||
	    (tls_version != 0 && tls_version != 12 && tls_version != 13))
		usage(argv[0]);
	if (tls_version != 0) {
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		int v = tls_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
		if (ssl_ctx == NULL || SSL_CTX_set_min_proto_version(ssl_ctx, v) != 1 ||
		    SSL_CTX_set_max_proto_version(ssl_ctx, v) != 1) {
			fprintf(stderr, "SSL_CTX_new failed\n");
			return 1;
		}
		SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	if (nthreads > nconn)
		nthreads = nconn;
	if (parse_addr(addr_str, &server) != 0) {
		fprintf(stderr, "bad -addr %s\n", addr_str);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* One descriptor per connection, one epoll set per thread and the three
	 * standard ones: raise the soft limit to the hard one (a C program keeps
	 * the soft limit it was given, often 1024) and say so plainly when even
	 * that is too few, rather than failing thousands of sockets with EMFILE. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		perror("getrlimit");
		return 1;
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		perror("setrlimit");
		return 1;
	}
	if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)nconn + (rlim_t)nthreads + 3 > rl.rlim_cur) {
		fprintf(stderr, "-c %d needs %d descriptors; the hard limit is %llu\n", nconn, nconn + nthreads + 3,
		        (unsigned long long)rl.rlim_cur);
		return 1;
	}

	size_t patlen = (size_t)OFFSET_MASK + 1 + (size_t)msgsize;
	pattern = malloc(patlen);
	if (pattern == NULL) {
		perror("malloc");
		return 1;
	}
	uint64_t x = 0x9E3779B97F4A7C15u; /* xorshift64: fixed, so runs are alike */
	for (size_t i = 0; i < patlen; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pattern[i] = (unsigned char)(x >> 32);
	}

	struct worker *ws = calloc((size_t)nthreads, sizeof(*ws));
	struct lconn *all = calloc((size_t)nconn, sizeof(*all));
	if (ws == NULL || all == NULL) {
		perror("calloc");
		return 1;
	}
	t_start = now_ns();
	int next = 0;
	for (int t = 0; t < nthreads; t++) {
		struct worker *w = &ws[t];
		w->first = next;
		w->count = nconn / nthreads + (t < nconn % nthreads ? 1 : 0);
		w->conns = all + next;
		next += w->count;
		w->rbuf = malloc(RBUF);
		w->wbuf = malloc((size_t)depth * (size_t)msgsize);
		if (w->rbuf == NULL || w->wbuf == NULL) {
			perror("malloc");
			return 1;
		}
		if (pthread_create(&w->th, NULL, run_worker, w) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	/* Every connection settles by the connect deadline at the latest: the
	 * workers fail the ones still connecting then. */
	while (__atomic_load_n(&settled, __ATOMIC_ACQUIRE) < nconn) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 10000000}; /* 10 ms */
		nanosleep(&ts, NULL);
	}
	uint64_t t_settled = now_ns();
	uint64_t measure = t_settled + (uint64_t)(warm_s * 1e9);
	__atomic_store_n(&t_measure, measure, __ATOMIC_RELEASE);
	__atomic_store_n(&t_end, measure + (uint64_t)(dur_s * 1e9), __ATOMIC_RELEASE);
	sleep_until(t_measure);
	double u0, s0, u1, s1;
	double srv0 = proc_cpu_seconds(server_pid);
	cpu_seconds(&u0, &s0);
	uint64_t m0 = now_ns();
	sleep_until(t_end);
	double srv1 = proc_cpu_seconds(server_pid);
	cpu_seconds(&u1, &s1);
	uint64_t m1 = now_ns();
	for (int t = 0; t < nthreads; t++)
		pthread_join(ws[t].th, NULL);

	uint64_t msgs = 0, errors = 0;
	int connected = 0;
	const char *err = "";
	static uint64_t hist[HBUCKETS];
	for (int t = 0; t < nthreads; t++) {
		msgs += ws[t].msgs;
		errors += ws[t].errors;
		connected += ws[t].connected;
		if (err[0] == '\0')
			err = ws[t].err;
		for (int i = 0; i < HBUCKETS; i++)
			hist[i] += ws[t].hist[i];
	}
	double q[4] = {0.5, 0.99, 0.999, 1.0};
	double qv[4] = {0, 0, 0, 0};
	for (int k = 0; k < 4; k++) {
		uint64_t want = (uint64_t)((double)msgs * q[k] + 0.5), acc = 0;
		if (want == 0)
			want = 1;
		for (int i = 0; i < HBUCKETS && msgs > 0; i++) {
			acc += hist[i];
			if (acc >= want) {
				qv[k] = hval(i) / 1000.0;
				break;
			}
		}
	}
	double wall = (double)(m1 - m0) / 1e9;   /* CPU was sampled over this */
	double win = (double)(t_end - t_measure) / 1e9; /* messages were counted over this */
	double cpu = (u1 - u0) + (s1 - s0);
	double srv = srv0 >= 0 && srv1 >= 0 ? srv1 - srv0 : -1;
	/* The error text is ours and holds no quote or backslash. */
	printf("{\"tool\":\"loadgen\",\"tls\":%d,\"addr\":\"%s\",\"conns\":%d,\"connected\":%d,\"depth\":%d,"
	       "\"size\":%d,\"threads\":%d,\"connect_s\":%.3f,\"warmup_s\":%.3f,\"duration_s\":%.3f,\"msgs\":%llu,"
	       "\"msgs_per_s\":%.1f,\"mib_per_s\":%.2f,\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,"
	       "\"lat_p999_us\":%.1f,\"lat_max_us\":%.1f,\"errors\":%llu,\"error\":\"%s\","
	       "\"client_cpu_s\":%.3f,\"client_user_s\":%.3f,\"client_sys_s\":%.3f,\"client_cpu_pct\":%.1f,"
	       "\"server_pid\":%d,\"server_cpu_s\":%.3f,\"server_cpu_pct\":%.1f}\n",
	       tls_version, addr_str, nconn, connected, depth, msgsize, nthreads, (double)(t_settled - t_start) / 1e9, warm_s,
	       win,
	       (unsigned long long)msgs, (double)msgs / win, (double)msgs * msgsize / win / (1024.0 * 1024.0),
	       qv[0], qv[1], qv[2], qv[3], (unsigned long long)errors, err, cpu, u1 - u0, s1 - s0, cpu / wall * 100.0,
	       server_pid, srv, srv >= 0 ? srv / wall * 100.0 : -1.0);
	return errors > 0 ? 1 : 0;
}
