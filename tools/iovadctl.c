// SPDX-License-Identifier: MIT
/*
 * iovadctl.c - the admin CLI of iovad: daemon status, devices with their
 * domain counters, clients, the IOVA states and streaming mappings of one
 * client, and on-demand paging (the daemon's ODP totals and every region);
 * with --prometheus (or the metrics command), the counters in the
 * Prometheus text exposition format.
 *
 * It speaks the wire protocol directly (proto.h), one request at a time on
 * one connection: HELLO, then the admin queries. Admin queries need uid 0 or
 * the daemon's own uid; the daemon answers -EPERM otherwise. Lists are paged
 * by the daemon (as many entries as fit in the negotiated frame): ask again
 * from start + count until start reaches total.
 *
 * Every socket operation has a deadline, so a wedged daemon cannot hang the
 * CLI. Internally everything returns 0 or -errno; main() turns that into a
 * message and exit status 1. Usage errors exit 2.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#ifndef IOVAD_VERSION
#define IOVAD_VERSION "0.0.0"
#endif

#define DEFAULT_SOCKET "/run/iovad/iovad.sock"
#define IO_TIMEOUT_MS  10000
#define EXIT_USAGE     2

/* The largest frame we offer in HELLO; smaller values exercise the paging. */
#ifndef IOVADCTL_FRAME
#define IOVADCTL_FRAME PROTO_FRAME_DEFAULT
#endif
_Static_assert(IOVADCTL_FRAME >= PROTO_FRAME_MIN && IOVADCTL_FRAME <= PROTO_FRAME_MAX,
	       "IOVADCTL_FRAME");

/* Entry kinds of CLIENT_MAPS. */
#define MAP_KIND_IOVA 1u
#define MAP_KIND_MAP  2u

/* ==== connection ============================================================ */

struct ctl {
	int fd;
	const char *path;
	uint16_t version;     /* negotiated; 0 until HELLO succeeded */
	uint32_t max_frame;   /* negotiated */
	uint64_t next_id;
	uint64_t session_id;  /* ours */
	uint8_t *buf;         /* one reply frame, IOVADCTL_FRAME bytes */
	size_t len;           /* of the reply in buf */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events, or the deadline passes (-ETIMEDOUT). */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r > 0)
			return 0;
	}
}

static int send_all(int fd, const void *buf, size_t len, int64_t deadline)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		int r;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			r = wait_fd(fd, POLLOUT, deadline);
			if (r)
				return r;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly len bytes; -ECONNRESET if the daemon closed the connection first. */
static int recv_all(int fd, void *buf, size_t len, int64_t deadline)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
		int r;

		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			r = wait_fd(fd, POLLIN, deadline);
			if (r)
				return r;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int ctl_connect(struct ctl *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	c->path = path;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	c->fd = fd;
	return 0;
}

/*
 * One request, one reply: send cmd with body, then read the reply frame into
 * c->buf and check it. Return: the reply's status (0 or -errno, the daemon's
 * refusal included), or -errno for a transport or protocol failure. On 0 the
 * reply holds at least min_len bytes.
 */
static int ctl_call(struct ctl *c, uint16_t cmd, const void *body, size_t blen, size_t min_len)
{
	uint32_t max_frame = c->version ? c->max_frame : IOVADCTL_FRAME;
	uint8_t req[sizeof(struct proto_hdr) + sizeof(struct proto_hello)];
	int64_t deadline = now_ms() + IO_TIMEOUT_MS;
	uint16_t version = c->version ? c->version : PROTO_VERSION;
	struct proto_status st;
	struct proto_hdr h;
	int64_t flen;
	int r, sr;

	if (blen > sizeof(req) - sizeof(h))
		return -EINVAL;
	proto_hdr_init(&h, version, cmd, (uint32_t)(sizeof(h) + blen), ++c->next_id);
	memcpy(req, &h, sizeof(h));
	if (blen)
		memcpy(req + sizeof(h), body, blen);
	/*
	 * A send failure may come from a daemon that refused us and closed:
	 * its error frame is still there to read, and says more.
	 */
	sr = send_all(c->fd, req, sizeof(h) + blen, deadline);
	r = recv_all(c->fd, c->buf, sizeof(h), deadline);
	if (r)
		return sr ? sr : r;
	flen = proto_frame_len(c->buf, sizeof(h), max_frame);
	if (flen < 0)
		return (int)flen;
	if ((size_t)flen < sizeof(h) + sizeof(st))
		return -EBADMSG;
	r = recv_all(c->fd, c->buf + sizeof(h), (size_t)flen - sizeof(h), deadline);
	if (r)
		return r;
	c->len = (size_t)flen;
	r = proto_check_reply(c->buf, c->len, c->version, max_frame, cmd, min_len);
	if (r)
		return r;
	memcpy(&h, c->buf, sizeof(h));
	memcpy(&st, c->buf + sizeof(h), sizeof(st));
	if (st.status > 0 || st.status < -4095)
		return -EBADMSG;
	if (h.type == PROTO_RPY_ERROR)
		return st.status ? st.status : -EPROTO;
	if (h.id != c->next_id)
		return -EBADMSG;
	if (!st.status && c->len < min_len)
		return -EBADMSG;
	return st.status;
}

static int ctl_hello(struct ctl *c)
{
	struct proto_hello h = {
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.max_frame = IOVADCTL_FRAME,
		.max_batch = 1,
	};
	struct proto_hello_rpy rpy;
	int r;

	r = ctl_call(c, PROTO_CMD_HELLO, &h, sizeof(h), sizeof(struct proto_hdr) + sizeof(rpy));
	if (r)
		return r;
	memcpy(&rpy, c->buf + sizeof(struct proto_hdr), sizeof(rpy));
	/* From version 5 the session's token follows (not ours to keep: iovadctl never resumes). */
	if (c->len != sizeof(struct proto_hdr) + sizeof(rpy) +
			      (rpy.version >= PROTO_VERSION_RESUME ? sizeof(struct proto_session) : 0))
		return -EBADMSG;
	if (rpy.version < PROTO_VERSION_MIN || rpy.version > PROTO_VERSION_MAX)
		return -EPROTONOSUPPORT;
	if (rpy.max_frame < PROTO_FRAME_MIN || rpy.max_frame > IOVADCTL_FRAME)
		return -EBADMSG;
	c->version = rpy.version;
	c->max_frame = rpy.max_frame;
	c->session_id = rpy.session_id;
	return 0;
}

static void ctl_close(struct ctl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

/*
 * ctl_list - every entry of LIST_DEVICES, LIST_CLIENTS or CLIENT_MAPS, page
 * by page, into a malloc'ed array of esz-byte entries (*ret, *ret_n).
 */
static int ctl_list(struct ctl *c, uint16_t cmd, uint64_t session_id, size_t esz, void **ret,
		    uint32_t *ret_n)
{
	const size_t head = sizeof(struct proto_hdr) + sizeof(struct proto_list_rpy);
	uint8_t *all = NULL;
	uint32_t start = 0, n = 0, cap = 0;
	int r;

	do {
		struct proto_list q = { .session_id = session_id, .start = start };
		struct proto_list_rpy rpy;

		r = ctl_call(c, cmd, &q, sizeof(q), head);
		if (r)
			goto err_free;
		memcpy(&rpy, c->buf + sizeof(struct proto_hdr), sizeof(rpy));
		/* The page must be exactly count entries, and make progress. */
		if (c->len != head + (size_t)rpy.count * esz ||
		    (start < rpy.total && (!rpy.count || rpy.count > rpy.total - start))) {
			r = -EBADMSG;
			goto err_free;
		}
		if (rpy.count > cap - n) {
			uint32_t ncap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
			uint8_t *p;

			/* Geometric: total is only a hint, it may change between pages. */
			if (ncap < n + rpy.count)
				ncap = n + rpy.count;
			p = realloc(all, (size_t)ncap * esz);
			if (!p) {
				r = -ENOMEM;
				goto err_free;
			}
			all = p;
			cap = ncap;
		}
		/* An empty list leaves all NULL: memcpy must not even see it. */
		if (rpy.count)
			memcpy(all + (size_t)n * esz, c->buf + head, (size_t)rpy.count * esz);
		n += rpy.count;
		start += rpy.count;
		if (start >= rpy.total)
			break;
	} while (true);
	*ret = all;
	*ret_n = n;
	return 0;

err_free:
	free(all);
	return r;
}

/* ==== output helpers ======================================================== */

/* A device name from the wire: not trusted to be terminated. */
static void wire_name(char dst[PROTO_DEV_NAME_MAX + 1], const char src[PROTO_DEV_NAME_MAX])
{
	size_t len = strnlen(src, PROTO_DEV_NAME_MAX);

	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* A string for a terminal: anything but printable ASCII becomes '?'. */
static void printable(char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			*s = '?';
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			/* Control bytes, DEL, non-ASCII (maybe not UTF-8): escape as code points. */
			if (*p < 0x20 || *p >= 0x7f)
				fprintf(f, "\\u%04x", (unsigned int)*p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

/* One "key": value member of an object; *first tracks the comma. */
static void json_key(FILE *f, bool *first, const char *key)
{
	fputs(*first ? "" : ", ", f);
	*first = false;
	json_str(f, key);
	fputs(": ", f);
}

static void json_u64(FILE *f, bool *first, const char *key, uint64_t v)
{
	json_key(f, first, key);
	fprintf(f, "%" PRIu64, v);
}

static void json_string(FILE *f, bool *first, const char *key, const char *v)
{
	json_key(f, first, key);
	json_str(f, v);
}

static void json_bool(FILE *f, bool *first, const char *key, bool v)
{
	json_key(f, first, key);
	fputs(v ? "true" : "false", f);
}

/*
 * A table of strings: a header row, then rows, printed with each column as
 * wide as its widest cell; numeric columns are right-aligned.
 */
#define CELL_MAX 40

struct table {
	uint32_t ncols;
	const char *const *heads;
	const bool *right;
	char (*cells)[CELL_MAX];
	uint32_t nrows, cap;
};

static int table_row(struct table *t)
{
	if (t->nrows == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 16;
		char (*n)[CELL_MAX] = realloc(t->cells, (size_t)cap * t->ncols * CELL_MAX);

		if (!n)
			return -ENOMEM;
		t->cells = n;
		t->cap = cap;
	}
	memset(t->cells[(size_t)t->nrows * t->ncols], 0, (size_t)t->ncols * CELL_MAX);
	t->nrows++;
	return 0;
}

/* Set column col of the last row. */
__attribute__((format(printf, 3, 4)))
static void table_set(struct table *t, uint32_t col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->cells[(size_t)(t->nrows - 1) * t->ncols + col], CELL_MAX, fmt, ap);
	va_end(ap);
}

static void table_print(FILE *f, const struct table *t)
{
	size_t w[32] = { 0 };

	for (uint32_t j = 0; j < t->ncols && j < 32; j++) {
		w[j] = strlen(t->heads[j]);
		for (uint32_t i = 0; i < t->nrows; i++) {
			size_t l = strlen(t->cells[(size_t)i * t->ncols + j]);

			if (l > w[j])
				w[j] = l;
		}
	}
	for (uint32_t i = 0; i <= t->nrows; i++) {
		for (uint32_t j = 0; j < t->ncols && j < 32; j++) {
			const char *s = i ? t->cells[(size_t)(i - 1) * t->ncols + j] : t->heads[j];
			bool last = j + 1 == t->ncols;

			if (t->right[j])
				fprintf(f, "%*s", (int)w[j], s);
			else
				fprintf(f, "%-*s", last ? 0 : (int)w[j], s);
			fputs(last ? "\n" : "  ", f);
		}
	}
}

static void table_free(struct table *t)
{
	free(t->cells);
	t->cells = NULL;
}

/* ==== commands ============================================================== */

struct opts {
	const char *socket;
	bool json;
	bool longfmt;
	bool prom;
};

/* ==== Prometheus text exposition format (version 0.0.4) ====================== */

/*
 * Every metric family is written as "# HELP", "# TYPE", then all its samples
 * together. Counters end in _total; current values are gauges. Device
 * counters carry {device="NAME",domain="N"}; devices of one domain share
 * their domain's counters, so sum by domain, not by device.
 */

/* HELP text: backslash and newline escaped. */
static void prom_help_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/*
 * A label value between double quotes: backslash, double quote and newline
 * escaped as the format requires. A name from the wire is not trusted to be
 * UTF-8: other control bytes and non-ASCII bytes become '?'.
 */
static void prom_label_value(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '"')
			fputs("\\\"", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p < 0x20 || *p >= 0x7f)
			fputc('?', f);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void prom_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s ", name);
	prom_help_text(f, help);
	fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* A family with one unlabelled sample. */
static void prom_single(FILE *f, const char *name, const char *type, const char *help,
			uint64_t v)
{
	prom_family(f, name, type, help);
	fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void prom_status(FILE *f, const struct proto_status_rpy *s, const char *backend)
{
	prom_single(f, "iovad_uptime_seconds", "gauge",
		    "Seconds since the daemon started (whole seconds).",
		    s->uptime_ns / 1000000000u);
	prom_single(f, "iovad_pid", "gauge", "Process id of the daemon.", s->pid);
	prom_family(f, "iovad_io_backend_info", "gauge",
		    "The daemon's I/O backend, in the backend label; the value is always 1.");
	fputs("iovad_io_backend_info{backend=", f);
	prom_label_value(f, backend);
	fputs("} 1\n", f);
	prom_single(f, "iovad_clients", "gauge", "Clients connected now.", s->clients);
	prom_single(f, "iovad_devices", "gauge", "Devices the daemon offers.", s->devices);
	prom_single(f, "iovad_sessions_total", "counter", "Client sessions served.",
		    s->sessions_total);
	prom_single(f, "iovad_frames_in_total", "counter", "Request frames received.",
		    s->frames_in);
	prom_single(f, "iovad_frames_bad_total", "counter", "Request frames refused as malformed.",
		    s->frames_bad);
	prom_single(f, "iovad_teardowns_total", "counter",
		    "Sessions that ended still holding resources, torn down by the daemon.",
		    s->teardowns);
	prom_single(f, "iovad_leaked_states_total", "counter",
		    "IOVA states torn down on disconnect.", s->leaked_states);
	prom_single(f, "iovad_leaked_maps_total", "counter",
		    "Streaming mappings torn down on disconnect.", s->leaked_maps);
	prom_single(f, "iovad_leaked_mems_total", "counter",
		    "Memory objects released on disconnect.", s->leaked_mems);
	prom_single(f, "iovad_mem_bytes", "gauge", "Bytes of client memory imported now.",
		    s->mem_bytes);
}

static const char *io_backend_name(uint32_t io)
{
	switch (io) {
	case 1:
		return "epoll";
	case 2:
		return "io_uring";
	default:
		return "unknown";
	}
}

static int get_status(struct ctl *c, struct proto_status_rpy *s)
{
	const size_t want = sizeof(struct proto_hdr) + sizeof(struct proto_status_rpy);
	int r;

	r = ctl_call(c, PROTO_CMD_STATUS, NULL, 0, want);
	if (r)
		return r;
	if (c->len != want)
		return -EBADMSG;
	memcpy(s, c->buf + sizeof(struct proto_hdr), sizeof(*s));
	return 0;
}

static int cmd_status(struct ctl *c, const struct opts *o)
{
	struct proto_status_rpy s;
	uint64_t up_s;
	int r;

	r = get_status(c, &s);
	if (r)
		return r;
	if (o->prom) {
		prom_status(stdout, &s, io_backend_name(s.io_backend));
		return 0;
	}
	if (o->json) {
		bool first = true;

		fputs("{", stdout);
		json_u64(stdout, &first, "pid", s.pid);
		json_u64(stdout, &first, "uptime_ns", s.uptime_ns);
		json_string(stdout, &first, "io_backend", io_backend_name(s.io_backend));
		json_u64(stdout, &first, "io_backend_id", s.io_backend);
		json_u64(stdout, &first, "clients", s.clients);
		json_u64(stdout, &first, "devices", s.devices);
		json_u64(stdout, &first, "sessions_total", s.sessions_total);
		json_u64(stdout, &first, "frames_in", s.frames_in);
		json_u64(stdout, &first, "frames_bad", s.frames_bad);
		json_u64(stdout, &first, "teardowns", s.teardowns);
		json_u64(stdout, &first, "leaked_states", s.leaked_states);
		json_u64(stdout, &first, "leaked_maps", s.leaked_maps);
		json_u64(stdout, &first, "leaked_mems", s.leaked_mems);
		json_u64(stdout, &first, "mem_bytes", s.mem_bytes);
		fputs("}\n", stdout);
		return 0;
	}
	up_s = s.uptime_ns / 1000000000u;
	printf("pid:              %" PRIu32 "\n", s.pid);
	printf("uptime:           %" PRIu64 "d %02" PRIu64 ":%02" PRIu64 ":%02" PRIu64
	       " (%" PRIu64 ".%03" PRIu64 " s)\n",
	       up_s / 86400, up_s / 3600 % 24, up_s / 60 % 60, up_s % 60, up_s,
	       s.uptime_ns / 1000000u % 1000);
	printf("io backend:       %s (%" PRIu32 ")\n", io_backend_name(s.io_backend),
	       s.io_backend);
	printf("clients:          %" PRIu32 "\n", s.clients);
	printf("devices:          %" PRIu32 "\n", s.devices);
	printf("sessions served:  %" PRIu64 "\n", s.sessions_total);
	printf("frames in:        %" PRIu64 "\n", s.frames_in);
	printf("frames bad:       %" PRIu64 "\n", s.frames_bad);
	printf("teardowns:        %" PRIu64 "\n", s.teardowns);
	printf("leaked states:    %" PRIu64 "\n", s.leaked_states);
	printf("leaked maps:      %" PRIu64 "\n", s.leaked_maps);
	printf("leaked mems:      %" PRIu64 "\n", s.leaked_mems);
	printf("client memory:    %" PRIu64 " bytes\n", s.mem_bytes);
	return 0;
}

static unsigned int mask_bits(uint64_t mask)
{
	return mask ? 64u - (unsigned int)__builtin_clzll(mask) : 0u;
}

/* "untrusted,non-coherent,lazy", or "-" when none. */
static void flags_str(char *buf, size_t len, uint32_t flags)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} names[] = {
		{ PROTO_DEV_UNTRUSTED, "untrusted" },
		{ PROTO_DEV_NON_COHERENT, "non-coherent" },
		{ PROTO_DEV_LAZY, "lazy" },
		{ PROTO_DEV_VISIBLE_ON_LINK, "visible-on-link" },
	};
	uint32_t rest = flags & ~(uint32_t)PROTO_DEV_IDENTITY;
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(rest & names[i].bit))
			continue;
		rest &= ~names[i].bit;
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s",
					off ? "," : "", names[i].name);
	}
	if (rest)
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%#" PRIx32,
					off ? "," : "", rest);
	if (!off)
		snprintf(buf, len, "-");
}

/* The counters of struct proto_dev_stats, in order, for --long and JSON. */
static const char *const stat_names[] = {
	"iova_allocs", "iova_frees", "links", "unlinks", "syncs", "iotlb_flushes",
	"bounced_bytes", "io_page_faults", "map_phys", "unmap_phys", "dma_reads", "dma_writes",
	"dma_bytes", "free_busy", "mapped_bytes", "table_bytes",
};
#define NSTATS (sizeof(stat_names) / sizeof(stat_names[0]))
_Static_assert(NSTATS * sizeof(uint64_t) == sizeof(struct proto_dev_stats), "stat_names");

static void stats_array(const struct proto_dev_stats *s, uint64_t v[NSTATS])
{
	memcpy(v, s, sizeof(*s));
}

/* Prometheus: the counters of struct proto_dev_stats, in order; gauges have no _total. */
static const struct {
	const char *name;
	bool gauge;
	const char *help;
} prom_dev_stats[] = {
	{ "iovad_device_iova_allocs_total", false, "IOVA allocations in the device's domain." },
	{ "iovad_device_iova_frees_total", false, "IOVA states freed in the device's domain." },
	{ "iovad_device_links_total", false, "dma_iova_link calls in the device's domain." },
	{ "iovad_device_unlinks_total", false, "dma_iova_unlink calls in the device's domain." },
	{ "iovad_device_syncs_total", false, "dma_iova_sync calls in the device's domain." },
	{ "iovad_device_iotlb_flushes_total", false, "IOTLB flushes of the device's domain." },
	{ "iovad_device_bounced_bytes_total", false, "Bytes bounced through swiotlb." },
	{ "iovad_device_io_page_faults_total", false, "I/O page faults in the device's domain." },
	{ "iovad_device_map_phys_total", false, "dma_map_phys calls in the device's domain." },
	{ "iovad_device_unmap_phys_total", false, "dma_unmap_phys calls in the device's domain." },
	{ "iovad_device_dma_reads_total", false, "Device DMA reads in the device's domain." },
	{ "iovad_device_dma_writes_total", false, "Device DMA writes in the device's domain." },
	{ "iovad_device_dma_bytes_total", false, "Bytes moved by device DMA in the device's domain." },
	{ "iovad_device_free_busy_total", false, "Frees refused: ranges still linked." },
	{ "iovad_device_mapped_bytes", true, "Bytes mapped in the device's domain now." },
	{ "iovad_device_table_bytes", true, "Bytes of IO page table of the device's domain now." },
};
_Static_assert(sizeof(prom_dev_stats) / sizeof(prom_dev_stats[0]) == NSTATS, "prom_dev_stats");

/* device="NAME",domain="N" (without the braces) */
static void prom_dev_label_pairs(FILE *f, const struct proto_dev_entry *d)
{
	char name[PROTO_DEV_NAME_MAX + 1], dom[16];

	wire_name(name, d->name);
	snprintf(dom, sizeof(dom), "%" PRIu32, d->domain);
	fputs("device=", f);
	prom_label_value(f, name);
	fputs(",domain=", f);
	prom_label_value(f, dom);
}

/* {device="NAME",domain="N"} */
static void prom_dev_labels(FILE *f, const struct proto_dev_entry *d)
{
	fputc('{', f);
	prom_dev_label_pairs(f, d);
	fputc('}', f);
}

static void prom_devices(FILE *f, const struct proto_dev_entry *devs, uint32_t n)
{
	char flags[CELL_MAX];

	prom_family(f, "iovad_device_info", "gauge",
		    "A device and its properties in labels; the value is always 1.");
	for (uint32_t i = 0; i < n; i++) {
		const struct proto_dev_entry *d = &devs[i];

		flags_str(flags, sizeof(flags), d->flags);
		fputs("iovad_device_info{", f);
		prom_dev_label_pairs(f, d);
		fputs(",type=", f);
		prom_label_value(f, d->flags & PROTO_DEV_IDENTITY ? "identity" : "translating");
		fputs(",flags=", f);
		prom_label_value(f, flags);
		fputs("} 1\n", f);
	}
	prom_family(f, "iovad_device_granule_bytes", "gauge",
		    "IOVA granule of the device's domain in bytes (0: identity domain).");
	for (uint32_t i = 0; i < n; i++) {
		bool identity = devs[i].flags & PROTO_DEV_IDENTITY;

		fputs("iovad_device_granule_bytes", f);
		prom_dev_labels(f, &devs[i]);
		fprintf(f, " %" PRIu64 "\n", identity || devs[i].granule_shift >= 64 ? 0 :
			UINT64_C(1) << devs[i].granule_shift);
	}
	prom_family(f, "iovad_device_dma_mask_bits", "gauge", "Width of the device's DMA mask in bits.");
	for (uint32_t i = 0; i < n; i++) {
		fputs("iovad_device_dma_mask_bits", f);
		prom_dev_labels(f, &devs[i]);
		fprintf(f, " %u\n", mask_bits(devs[i].dma_mask));
	}
	for (size_t k = 0; k < NSTATS; k++) {
		prom_family(f, prom_dev_stats[k].name, prom_dev_stats[k].gauge ? "gauge" : "counter",
			    prom_dev_stats[k].help);
		for (uint32_t i = 0; i < n; i++) {
			uint64_t v[NSTATS];

			stats_array(&devs[i].stats, v);
			fputs(prom_dev_stats[k].name, f);
			prom_dev_labels(f, &devs[i]);
			fprintf(f, " %" PRIu64 "\n", v[k]);
		}
	}
}

static int get_devices(struct ctl *c, struct proto_dev_entry **ret, uint32_t *ret_n)
{
	void *p;
	int r;

	r = ctl_list(c, PROTO_CMD_LIST_DEVICES, 0, sizeof(struct proto_dev_entry), &p, ret_n);
	if (r)
		return r;
	*ret = p;
	return 0;
}

static void devices_json(const struct proto_dev_entry *devs, uint32_t n)
{
	fputs("[", stdout);
	for (uint32_t i = 0; i < n; i++) {
		const struct proto_dev_entry *d = &devs[i];
		char name[PROTO_DEV_NAME_MAX + 1];
		bool identity = d->flags & PROTO_DEV_IDENTITY;
		uint64_t v[NSTATS];
		bool first = true;

		wire_name(name, d->name);
		stats_array(&d->stats, v);
		fputs(i ? ",\n " : "\n ", stdout);
		fputs("{", stdout);
		json_u64(stdout, &first, "index", i);
		json_string(stdout, &first, "name", name);
		json_u64(stdout, &first, "domain", d->domain);
		json_string(stdout, &first, "type", identity ? "identity" : "translating");
		json_u64(stdout, &first, "granule_shift", d->granule_shift);
		json_u64(stdout, &first, "granule",
			 identity || d->granule_shift >= 64 ? 0 : UINT64_C(1) << d->granule_shift);
		json_u64(stdout, &first, "dma_mask", d->dma_mask);
		json_u64(stdout, &first, "dma_mask_bits", mask_bits(d->dma_mask));
		json_u64(stdout, &first, "flags", d->flags);
		json_bool(stdout, &first, "untrusted", d->flags & PROTO_DEV_UNTRUSTED);
		json_bool(stdout, &first, "non_coherent", d->flags & PROTO_DEV_NON_COHERENT);
		json_bool(stdout, &first, "lazy", d->flags & PROTO_DEV_LAZY);
		json_bool(stdout, &first, "visible_on_link", d->flags & PROTO_DEV_VISIBLE_ON_LINK);
		json_key(stdout, &first, "stats");
		fputs("{", stdout);
		first = true;
		for (size_t k = 0; k < NSTATS; k++)
			json_u64(stdout, &first, stat_names[k], v[k]);
		fputs("}}", stdout);
	}
	fputs(n ? "\n]\n" : "]\n", stdout);
}

static int cmd_devices(struct ctl *c, const struct opts *o)
{
	/* Compact: identity, then the counters that say the most. */
	static const char *const heads_short[] = {
		"NAME", "DOM", "TYPE", "GRANULE", "MASK", "FLAGS", "ALLOCS", "FREES", "LINKS",
		"UNLINKS", "MAPS", "UNMAPS", "FLUSHES", "FAULTS", "MAPPED", "TABLE",
	};
	static const uint32_t short_stats[] = { 0, 1, 2, 3, 8, 9, 5, 7, 14, 15 };
	static const char *const heads_long[6 + NSTATS] = {
		"NAME", "DOM", "TYPE", "GRANULE", "MASK", "FLAGS", "IOVA_ALLOCS", "IOVA_FREES",
		"LINKS", "UNLINKS", "SYNCS", "IOTLB_FLUSHES", "BOUNCED_BYTES", "IO_PAGE_FAULTS",
		"MAP_PHYS", "UNMAP_PHYS", "DMA_READS", "DMA_WRITES", "DMA_BYTES", "FREE_BUSY",
		"MAPPED_BYTES", "TABLE_BYTES",
	};
	static const bool right[6 + NSTATS] = {
		false, true, false, true, true, false, true, true, true, true, true, true,
		true, true, true, true, true, true, true, true, true, true,
	};
	struct proto_dev_entry *devs = NULL;
	struct table t = { .right = right };
	uint32_t n;
	int r;

	_Static_assert(sizeof(heads_short) / sizeof(heads_short[0]) ==
		       6 + sizeof(short_stats) / sizeof(short_stats[0]), "short columns");
	r = get_devices(c, &devs, &n);
	if (r)
		return r;
	if (o->prom) {
		prom_devices(stdout, devs, n);
		goto out;
	}
	if (o->json) {
		devices_json(devs, n);
		goto out;
	}
	t.heads = o->longfmt ? heads_long : heads_short;
	t.ncols = o->longfmt ? 6 + NSTATS : sizeof(heads_short) / sizeof(heads_short[0]);
	for (uint32_t i = 0; i < n; i++) {
		const struct proto_dev_entry *d = &devs[i];
		char name[PROTO_DEV_NAME_MAX + 1], flags[CELL_MAX];
		bool identity = d->flags & PROTO_DEV_IDENTITY;
		uint64_t v[NSTATS];

		r = table_row(&t);
		if (r)
			goto out;
		wire_name(name, d->name);
		printable(name);
		flags_str(flags, sizeof(flags), d->flags);
		stats_array(&d->stats, v);
		table_set(&t, 0, "%s", name);
		table_set(&t, 1, "%" PRIu32, d->domain);
		table_set(&t, 2, "%s", identity ? "identity" : "translating");
		if (identity || d->granule_shift >= 64)
			table_set(&t, 3, "-");
		else
			table_set(&t, 3, "%" PRIu64, UINT64_C(1) << d->granule_shift);
		table_set(&t, 4, "%u", mask_bits(d->dma_mask));
		table_set(&t, 5, "%s", flags);
		for (uint32_t k = 6; k < t.ncols; k++)
			table_set(&t, k, "%" PRIu64, v[o->longfmt ? k - 6 : short_stats[k - 6]]);
	}
	table_print(stdout, &t);
out:
	table_free(&t);
	free(devs);
	return r;
}

static int cmd_clients(struct ctl *c, const struct opts *o)
{
	static const char *const heads[] = {
		"SESSION", "PID", "UID", "GID", "MEMS", "MEM_BYTES", "STATES", "MAPS", "LINKED",
		"REQUESTS", "PATH",
	};
	static const bool right[] = {
		true, true, true, true, true, true, true, true, true, true, false,
	};
	struct table t = { .ncols = 11, .heads = heads, .right = right };
	struct proto_client_entry *cl;
	void *p = NULL;
	uint32_t n;
	int r;

	r = ctl_list(c, PROTO_CMD_LIST_CLIENTS, 0, sizeof(*cl), &p, &n);
	if (r)
		return r;
	cl = p;
	if (o->json) {
		fputs("[", stdout);
		for (uint32_t i = 0; i < n; i++) {
			bool first = true;

			fputs(i ? ",\n {" : "\n {", stdout);
			json_u64(stdout, &first, "session_id", cl[i].session_id);
			json_bool(stdout, &first, "self", cl[i].session_id == c->session_id);
			json_u64(stdout, &first, "pid", cl[i].pid);
			json_u64(stdout, &first, "uid", cl[i].uid);
			json_u64(stdout, &first, "gid", cl[i].gid);
			json_u64(stdout, &first, "mems", cl[i].mems);
			json_u64(stdout, &first, "mem_bytes", cl[i].mem_bytes);
			json_u64(stdout, &first, "states", cl[i].states);
			json_u64(stdout, &first, "maps", cl[i].maps);
			json_u64(stdout, &first, "linked_bytes", cl[i].linked_bytes);
			json_u64(stdout, &first, "requests", cl[i].requests);
			json_bool(stdout, &first, "rings", cl[i].flags & PROTO_CLIENT_RINGS);
			fputs("}", stdout);
		}
		fputs(n ? "\n]\n" : "]\n", stdout);
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		r = table_row(&t);
		if (r)
			goto out;
		table_set(&t, 0, "%" PRIu64 "%s", cl[i].session_id,
			  cl[i].session_id == c->session_id ? "*" : "");
		table_set(&t, 1, "%" PRIu32, cl[i].pid);
		table_set(&t, 2, "%" PRIu32, cl[i].uid);
		table_set(&t, 3, "%" PRIu32, cl[i].gid);
		table_set(&t, 4, "%" PRIu64, cl[i].mems);
		table_set(&t, 5, "%" PRIu64, cl[i].mem_bytes);
		table_set(&t, 6, "%" PRIu64, cl[i].states);
		table_set(&t, 7, "%" PRIu64, cl[i].maps);
		table_set(&t, 8, "%" PRIu64, cl[i].linked_bytes);
		table_set(&t, 9, "%" PRIu64, cl[i].requests);
		/* How its requests travel: shared-memory rings, or the socket alone. */
		table_set(&t, 10, "%s", cl[i].flags & PROTO_CLIENT_RINGS ? "rings" : "socket");
	}
	table_print(stdout, &t);
out:
	table_free(&t);
	free(p);
	return r;
}

static int cmd_mappings(struct ctl *c, const struct opts *o, uint64_t session_id)
{
	static const char *const heads[] = { "KIND", "DEVICE", "IOVA", "SIZE", "LINKED" };
	static const bool right[] = { false, false, true, true, true };
	struct table t = { .ncols = 5, .heads = heads, .right = right };
	struct proto_dev_entry *devs = NULL;
	struct proto_map_entry *m;
	uint32_t n, ndevs;
	void *p = NULL;
	int r;

	r = get_devices(c, &devs, &ndevs);
	if (r)
		return r;
	r = ctl_list(c, PROTO_CMD_CLIENT_MAPS, session_id, sizeof(*m), &p, &n);
	if (r)
		goto out;
	m = p;
	if (o->json)
		fputs("[", stdout);
	for (uint32_t i = 0; i < n; i++) {
		const char *kind = m[i].kind == MAP_KIND_IOVA ? "iova" :
				   m[i].kind == MAP_KIND_MAP ? "map" : "unknown";
		char dev[PROTO_DEV_NAME_MAX + 1];

		if (m[i].dev < ndevs)
			wire_name(dev, devs[m[i].dev].name);
		else
			snprintf(dev, sizeof(dev), "#%" PRIu32, m[i].dev);
		if (o->json) {
			bool first = true;

			fputs(i ? ",\n {" : "\n {", stdout);
			json_string(stdout, &first, "kind", kind);
			json_string(stdout, &first, "device", dev);
			json_u64(stdout, &first, "device_index", m[i].dev);
			json_u64(stdout, &first, "iova", m[i].iova);
			json_u64(stdout, &first, "size", m[i].size);
			json_u64(stdout, &first, "linked_bytes", m[i].linked_bytes);
			fputs("}", stdout);
			continue;
		}
		r = table_row(&t);
		if (r)
			goto out;
		printable(dev);
		table_set(&t, 0, "%s", kind);
		table_set(&t, 1, "%s", dev);
		table_set(&t, 2, "%#" PRIx64, m[i].iova);
		table_set(&t, 3, "%" PRIu64, m[i].size);
		table_set(&t, 4, "%" PRIu64, m[i].linked_bytes);
	}
	if (o->json)
		fputs(n ? "\n]\n" : "]\n", stdout);
	else
		table_print(stdout, &t);
out:
	table_free(&t);
	free(p);
	free(devs);
	return r;
}

/* ==== on-demand paging ======================================================= */

/* The counters of struct proto_odp_counters, in order, for JSON and Prometheus. */
static const struct {
	const char *name;   /* JSON key */
	const char *prom;   /* Prometheus family */
	bool gauge;
	const char *help;
} odp_stats[] = {
	{ "page_faults", "iovad_odp_page_faults_total", false,
	  "Pages mapped or upgraded by ODP faults." },
	{ "page_faults_handled", "iovad_odp_page_faults_handled_total", false,
	  "ODP fault events served successfully." },
	{ "page_invalidations", "iovad_odp_page_invalidations_total", false,
	  "ODP pages unmapped by invalidations." },
	{ "page_invalidations_handled", "iovad_odp_page_invalidations_handled_total", false,
	  "Invalidations that intersected an ODP region." },
	{ "page_prefetch", "iovad_odp_page_prefetch_total", false,
	  "Pages mapped or upgraded by ODP prefetch." },
	{ "fault_errors", "iovad_odp_fault_errors_total", false,
	  "ODP faults answered with an error." },
	{ "fault_retries", "iovad_odp_fault_retries_total", false,
	  "ODP fault resolves that raced an invalidation and retried." },
	{ "perm_upgrades", "iovad_odp_perm_upgrades_total", false,
	  "Read-only ODP pages made writable in place." },
	{ "syncs", "iovad_odp_syncs_total", false, "dma_iova_sync calls of the fault service." },
	{ "flushes", "iovad_odp_flushes_total", false, "IOTLB flushes of the fault service." },
	{ "user_faults", "iovad_odp_user_faults_total", false,
	  "ODP faults sent to a client's own fault handler." },
	{ "user_fault_timeouts", "iovad_odp_user_fault_timeouts_total", false,
	  "User-handled ODP faults not answered in time." },
	{ "mapped_bytes", "iovad_odp_mapped_bytes", true, "Bytes mapped in ODP regions now." },
	{ "fault_count", "iovad_odp_faults_timed_total", false,
	  "ODP faults in the fault latency histogram." },
	{ "fault_p50_ns", "iovad_odp_fault_latency_p50_nanoseconds", true,
	  "Median ODP fault service latency, fault to resume (histogram bucket bound)." },
	{ "fault_p99_ns", "iovad_odp_fault_latency_p99_nanoseconds", true,
	  "99th percentile ODP fault service latency, fault to resume (histogram bucket bound)." },
};
#define NODP_STATS (sizeof(odp_stats) / sizeof(odp_stats[0]))
_Static_assert(NODP_STATS * sizeof(uint64_t) == sizeof(struct proto_odp_counters), "odp_stats");

static void odp_array(const struct proto_odp_counters *s, uint64_t v[NODP_STATS])
{
	memcpy(v, s, sizeof(*s));
}

/* The daemon's ODP totals: regions now and gone, every session. Admin only. */
static int get_odp_totals(struct ctl *c, struct proto_odp_counters *ret)
{
	const size_t want = sizeof(struct proto_hdr) + sizeof(struct proto_odp_stats_rpy);
	struct proto_odp_ref q = { .odp = 0, .flags = PROTO_ODP_STATS_DAEMON };
	struct proto_odp_stats_rpy rpy;
	int r;

	/* A version 1 daemon has no ODP, and would close on the request. */
	if (c->version < PROTO_VERSION_ODP)
		return -EOPNOTSUPP;
	r = ctl_call(c, PROTO_CMD_ODP_STATS, &q, sizeof(q), want);
	if (r)
		return r;
	if (c->len != want)
		return -EBADMSG;
	memcpy(&rpy, c->buf + sizeof(struct proto_hdr), sizeof(rpy));
	*ret = rpy.c;
	return 0;
}

static void prom_odp(FILE *f, const struct proto_odp_counters *s)
{
	uint64_t v[NODP_STATS];

	odp_array(s, v);
	for (size_t k = 0; k < NODP_STATS; k++)
		prom_single(f, odp_stats[k].prom, odp_stats[k].gauge ? "gauge" : "counter",
			    odp_stats[k].help, v[k]);
}

/* "implicit,user-faults", or "-" when none. */
static void odp_flags_str(char *buf, size_t len, uint32_t flags)
{
	uint32_t rest = flags & ~(uint32_t)PROTO_ODP_FLAGS;

	snprintf(buf, len, "%s%s%s%s", flags & PROTO_ODP_IMPLICIT ? "implicit" : "",
		 (flags & PROTO_ODP_IMPLICIT) && (flags & PROTO_ODP_USER_FAULTS) ? "," : "",
		 flags & PROTO_ODP_USER_FAULTS ? "user-faults" : "",
		 !(flags & PROTO_ODP_FLAGS) && !rest ? "-" : "");
	if (rest) {
		size_t off = strlen(buf);

		snprintf(buf + off, off < len ? len - off : 0, "%s%#" PRIx32, off ? "," : "", rest);
	}
}

/* The device's rights: "rw", "r-", "-w" or "--" (local read is always implied). */
static const char *odp_access_str(uint32_t access)
{
	static const char *const s[] = { "--", "r-", "-w", "rw" };

	return s[((access & PROTO_ODP_ACCESS_DEVICE_READ) ? 1 : 0) |
		 ((access & PROTO_ODP_ACCESS_DEVICE_WRITE) ? 2 : 0)];
}

static void odp_json_counters(const struct proto_odp_counters *s)
{
	uint64_t v[NODP_STATS];
	bool first = true;

	odp_array(s, v);
	fputs("{", stdout);
	for (size_t k = 0; k < NODP_STATS; k++)
		json_u64(stdout, &first, odp_stats[k].name, v[k]);
	fputs("}", stdout);
}

static void odp_json(const struct proto_odp_counters *tot, const struct proto_odp_entry *e,
		     uint32_t n, const struct proto_dev_entry *devs, uint32_t ndevs)
{
	fputs("{\"totals\": ", stdout);
	odp_json_counters(tot);
	fputs(", \"regions\": [", stdout);
	for (uint32_t i = 0; i < n; i++) {
		char dev[PROTO_DEV_NAME_MAX + 1];
		bool first = true;

		if (e[i].dev < ndevs)
			wire_name(dev, devs[e[i].dev].name);
		else
			snprintf(dev, sizeof(dev), "#%" PRIu32, e[i].dev);
		fputs(i ? ",\n {" : "\n {", stdout);
		json_u64(stdout, &first, "session_id", e[i].session_id);
		json_u64(stdout, &first, "odp", e[i].odp);
		json_string(stdout, &first, "device", dev);
		json_u64(stdout, &first, "device_index", e[i].dev);
		json_u64(stdout, &first, "flags", e[i].flags);
		json_bool(stdout, &first, "implicit", e[i].flags & PROTO_ODP_IMPLICIT);
		json_bool(stdout, &first, "user_faults", e[i].flags & PROTO_ODP_USER_FAULTS);
		json_u64(stdout, &first, "access", e[i].access);
		json_bool(stdout, &first, "device_read",
			  e[i].access & PROTO_ODP_ACCESS_DEVICE_READ);
		json_bool(stdout, &first, "device_write",
			  e[i].access & PROTO_ODP_ACCESS_DEVICE_WRITE);
		json_u64(stdout, &first, "iova", e[i].iova);
		json_u64(stdout, &first, "size", e[i].size);
		json_key(stdout, &first, "stats");
		odp_json_counters(&e[i].c);
		fputs("}", stdout);
	}
	fputs(n ? "\n]}\n" : "]}\n", stdout);
}

/* odp: the daemon's totals, then one row per region of every session. */
static int cmd_odp(struct ctl *c, const struct opts *o)
{
	static const char *const heads[] = {
		"SESSION", "ODP", "DEVICE", "FLAGS", "ACCESS", "IOVA", "SIZE", "MAPPED", "FAULTS",
		"HANDLED", "PREFETCH", "INVAL", "ERRORS", "RETRIES", "USER", "TIMEOUTS", "P50_NS",
		"P99_NS",
	};
	static const bool right[] = {
		true, true, false, false, false, true, true, true, true, true, true, true, true,
		true, true, true, true, true,
	};
	struct table t = { .ncols = sizeof(heads) / sizeof(heads[0]), .heads = heads,
			   .right = right };
	struct proto_dev_entry *devs = NULL;
	struct proto_odp_counters tot;
	struct proto_odp_entry *e;
	uint32_t n, ndevs;
	void *p = NULL;
	int r;

	_Static_assert(sizeof(heads) / sizeof(heads[0]) == sizeof(right) / sizeof(right[0]),
		       "odp columns");
	/* Everything asked before anything is printed: a failure prints nothing. */
	r = get_odp_totals(c, &tot);
	if (r)
		return r;
	if (o->prom) {
		prom_odp(stdout, &tot);
		return 0;
	}
	r = get_devices(c, &devs, &ndevs);
	if (r)
		return r;
	r = ctl_list(c, PROTO_CMD_LIST_ODP, 0, sizeof(*e), &p, &n);
	if (r)
		goto out;
	e = p;
	if (o->json) {
		odp_json(&tot, e, n, devs, ndevs);
		goto out;
	}
	printf("page faults:                 %" PRIu64 "\n", tot.page_faults);
	printf("page faults handled:         %" PRIu64 "\n", tot.page_faults_handled);
	printf("page invalidations:          %" PRIu64 "\n", tot.page_invalidations);
	printf("page invalidations handled:  %" PRIu64 "\n", tot.page_invalidations_handled);
	printf("page prefetch:               %" PRIu64 "\n", tot.page_prefetch);
	printf("fault errors:                %" PRIu64 "\n", tot.fault_errors);
	printf("fault retries:               %" PRIu64 "\n", tot.fault_retries);
	printf("permission upgrades:         %" PRIu64 "\n", tot.perm_upgrades);
	printf("syncs:                       %" PRIu64 "\n", tot.syncs);
	printf("flushes:                     %" PRIu64 "\n", tot.flushes);
	printf("user faults:                 %" PRIu64 "\n", tot.user_faults);
	printf("user fault timeouts:         %" PRIu64 "\n", tot.user_fault_timeouts);
	printf("mapped bytes:                %" PRIu64 "\n", tot.mapped_bytes);
	printf("fault latency:               p50 %" PRIu64 " ns, p99 %" PRIu64 " ns (%" PRIu64
	       " faults)\n", tot.fault_p50_ns, tot.fault_p99_ns, tot.fault_count);
	fputs("\n", stdout);
	for (uint32_t i = 0; i < n; i++) {
		char dev[PROTO_DEV_NAME_MAX + 1], flags[CELL_MAX];

		r = table_row(&t);
		if (r)
			goto out;
		if (e[i].dev < ndevs)
			wire_name(dev, devs[e[i].dev].name);
		else
			snprintf(dev, sizeof(dev), "#%" PRIu32, e[i].dev);
		printable(dev);
		odp_flags_str(flags, sizeof(flags), e[i].flags);
		table_set(&t, 0, "%" PRIu64, e[i].session_id);
		table_set(&t, 1, "%" PRIu32, e[i].odp);
		table_set(&t, 2, "%s", dev);
		table_set(&t, 3, "%s", flags);
		table_set(&t, 4, "%s", odp_access_str(e[i].access));
		table_set(&t, 5, "%#" PRIx64, e[i].iova);
		table_set(&t, 6, "%" PRIu64, e[i].size);
		table_set(&t, 7, "%" PRIu64, e[i].c.mapped_bytes);
		table_set(&t, 8, "%" PRIu64, e[i].c.page_faults);
		table_set(&t, 9, "%" PRIu64, e[i].c.page_faults_handled);
		table_set(&t, 10, "%" PRIu64, e[i].c.page_prefetch);
		table_set(&t, 11, "%" PRIu64, e[i].c.page_invalidations);
		table_set(&t, 12, "%" PRIu64, e[i].c.fault_errors);
		table_set(&t, 13, "%" PRIu64, e[i].c.fault_retries);
		table_set(&t, 14, "%" PRIu64, e[i].c.user_faults);
		table_set(&t, 15, "%" PRIu64, e[i].c.user_fault_timeouts);
		table_set(&t, 16, "%" PRIu64, e[i].c.fault_p50_ns);
		table_set(&t, 17, "%" PRIu64, e[i].c.fault_p99_ns);
	}
	table_print(stdout, &t);
out:
	table_free(&t);
	free(p);
	free(devs);
	return r;
}

/*
 * metrics: STATUS, LIST_DEVICES and the ODP totals in one exposition; nothing
 * is printed unless all succeed. A version 1 daemon has no ODP: its
 * exposition simply has no iovad_odp_* families.
 */
static int cmd_metrics(struct ctl *c)
{
	struct proto_dev_entry *devs = NULL;
	struct proto_odp_counters odp;
	struct proto_status_rpy s;
	bool have_odp;
	uint32_t n;
	int r;

	r = get_status(c, &s);
	if (r)
		return r;
	r = get_devices(c, &devs, &n);
	if (r)
		return r;
	have_odp = c->version >= PROTO_VERSION_ODP;
	if (have_odp) {
		r = get_odp_totals(c, &odp);
		if (r) {
			free(devs);
			return r;
		}
	}
	prom_status(stdout, &s, io_backend_name(s.io_backend));
	prom_devices(stdout, devs, n);
	if (have_odp)
		prom_odp(stdout, &odp);
	free(devs);
	return 0;
}

/* ==== main ================================================================== */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: iovadctl [OPTIONS] COMMAND [ARGS]\n"
		"Query a running iovad (admin: uid 0 or the daemon's uid).\n\n"
		"Commands:\n"
		"  status                daemon status and totals\n"
		"  devices               devices and their domain counters\n"
		"  clients               connected clients (* marks this iovadctl)\n"
		"  mappings SESSION_ID   IOVA states and streaming mappings of a client\n"
		"  odp                   on-demand paging: the daemon's totals and every region\n"
		"  metrics               status, devices and ODP totals (Prometheus format)\n\n"
		"Options:\n"
		"  -s, --socket PATH     daemon socket (default: $IOVAD_SOCKET, else %s)\n"
		"  -j, --json            JSON output\n"
		"  -p, --prometheus      Prometheus text format (status, devices, odp, metrics);\n"
		"                        not with --json\n"
		"  -l, --long            devices: every counter\n"
		"  -h, --help            this text\n"
		"  -V, --version         the version\n",
		DEFAULT_SOCKET);
}

static int usage_error(void)
{
	fprintf(stderr, "Try 'iovadctl --help' for more information.\n");
	return EXIT_USAGE;
}

/* Why an error happened, when the errno alone does not say. */
static const char *hint(int err, const char *what)
{
	switch (err) {
	case -ENOENT:
	case -ECONNREFUSED:
		return !strcmp(what, "connect") ? " (is iovad running?)" : "";
	case -EACCES:
		return !strcmp(what, "connect") ? " (no permission on the socket)" :
		       " (not allowed by iovad's access policy)";
	case -EPERM:
		return " (admin queries need uid 0 or the daemon's uid)";
	case -ESRCH:
		return " (no such session)";
	case -ECONNRESET:
		return " (iovad closed the connection)";
	case -EBADMSG:
	case -EMSGSIZE:
	case -EPROTO:
		return " (malformed reply from iovad)";
	case -EPROTONOSUPPORT:
		return " (protocol version mismatch)";
	case -ETIMEDOUT:
		return " (iovad did not answer)";
	case -EOPNOTSUPP:
		return !strcmp(what, "odp") ? " (iovad does not speak protocol version 2: no ODP)" :
		       "";
	default:
		return "";
	}
}

enum cmd { CMD_STATUS, CMD_DEVICES, CMD_CLIENTS, CMD_MAPPINGS, CMD_ODP, CMD_METRICS };

static int parse_u64(const char *s, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "long", no_argument, NULL, 'l' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct ctl c = { .fd = -1 };
	struct opts o = { 0 };
	uint64_t session_id = 0;
	const char *name;
	enum cmd cmd;
	int ch, r, nargs;

	while ((ch = getopt_long(argc, argv, "s:jlphV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			o.socket = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 'l':
			o.longfmt = true;
			break;
		case 'p':
			o.prom = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("iovadctl %s (protocol %d..%d)\n", IOVAD_VERSION, PROTO_VERSION_MIN,
			       PROTO_VERSION_MAX);
			return 0;
		default:
			return usage_error();
		}
	}
	if (o.json && o.prom) {
		fprintf(stderr, "iovadctl: --json and --prometheus exclude each other\n");
		return usage_error();
	}
	if (optind >= argc) {
		fprintf(stderr, "iovadctl: missing command\n");
		return usage_error();
	}
	name = argv[optind];
	nargs = 0;
	if (!strcmp(name, "status")) {
		cmd = CMD_STATUS;
	} else if (!strcmp(name, "devices")) {
		cmd = CMD_DEVICES;
	} else if (!strcmp(name, "clients")) {
		cmd = CMD_CLIENTS;
	} else if (!strcmp(name, "mappings")) {
		cmd = CMD_MAPPINGS;
		nargs = 1;
	} else if (!strcmp(name, "odp")) {
		cmd = CMD_ODP;
	} else if (!strcmp(name, "metrics")) {
		cmd = CMD_METRICS;
	} else {
		fprintf(stderr, "iovadctl: unknown command '%s'\n", name);
		return usage_error();
	}
	if (argc - optind - 1 != nargs) {
		fprintf(stderr, "iovadctl: %s: %s\n", name,
			nargs ? "expected one argument: SESSION_ID" : "takes no arguments");
		return usage_error();
	}
	if (o.prom && (cmd == CMD_CLIENTS || cmd == CMD_MAPPINGS)) {
		fprintf(stderr, "iovadctl: %s: no Prometheus output (--prometheus applies to "
			"status, devices, odp and metrics)\n", name);
		return usage_error();
	}
	if (cmd == CMD_METRICS && o.json) {
		fprintf(stderr, "iovadctl: metrics: always in the Prometheus format, not JSON\n");
		return usage_error();
	}
	if (cmd == CMD_MAPPINGS && parse_u64(argv[optind + 1], &session_id)) {
		fprintf(stderr, "iovadctl: mappings: '%s' is not a session id\n",
			argv[optind + 1]);
		return usage_error();
	}
	if (!o.socket) {
		o.socket = getenv("IOVAD_SOCKET");
		if (!o.socket || !*o.socket)
			o.socket = DEFAULT_SOCKET;
	}

	c.buf = malloc(IOVADCTL_FRAME);
	if (!c.buf) {
		fprintf(stderr, "iovadctl: %s\n", strerror(ENOMEM));
		return 1;
	}
	r = ctl_connect(&c, o.socket);
	if (r) {
		fprintf(stderr, "iovadctl: cannot connect to %s: %s%s\n", o.socket, strerror(-r),
			hint(r, "connect"));
		ctl_close(&c);
		return 1;
	}
	r = ctl_hello(&c);
	if (r) {
		fprintf(stderr, "iovadctl: hello to %s: %s%s\n", o.socket, strerror(-r),
			hint(r, "hello"));
		ctl_close(&c);
		return 1;
	}
	switch (cmd) {
	case CMD_STATUS:
		r = cmd_status(&c, &o);
		break;
	case CMD_DEVICES:
		r = cmd_devices(&c, &o);
		break;
	case CMD_CLIENTS:
		r = cmd_clients(&c, &o);
		break;
	case CMD_MAPPINGS:
		r = cmd_mappings(&c, &o, session_id);
		break;
	case CMD_ODP:
		r = cmd_odp(&c, &o);
		break;
	case CMD_METRICS:
		r = cmd_metrics(&c);
		break;
	}
	ctl_close(&c);
	if (r) {
		if (cmd == CMD_MAPPINGS && r == -ESRCH)
			fprintf(stderr, "iovadctl: mappings: %s (no session %" PRIu64 ")\n",
				strerror(-r), session_id);
		else
			fprintf(stderr, "iovadctl: %s: %s%s\n", name, strerror(-r), hint(r, name));
		return 1;
	}
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "iovadctl: writing the output: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}
