// SPDX-License-Identifier: MIT
/*
 * config.c - the configuration file, parsed with libinih.
 *
 * libinih calls the handler for every name = value line; the handler knows
 * the line number because the reader below counts the lines it hands over
 * (Debian's libinih is built without INI_HANDLER_LINENO).
 */
#include "config.h"
#include "ring.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct parse {
	struct config *c;
	FILE *f;
	const char *path;
	unsigned int line;
	bool had_device;
	char *err;
	size_t errlen;
	int r;
};

static int fail(struct parse *p, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct parse *p, int r, const char *fmt, ...)
{
	int n;
	va_list ap;

	if (p->r)
		return 0; /* keep the first error */
	p->r = r;
	n = snprintf(p->err, p->errlen, "%s:%u: ", p->path, p->line);
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < p->errlen)
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return 0;
}

static char *counting_reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *s = fgets(str, num, p->f);

	if (s)
		p->line++;
	return s;
}

/* ==== values ================================================================ */

static bool parse_u64(const char *v, uint64_t *ret)
{
	char *end;
	unsigned long long x;

	if (!*v || *v == '-' || isspace((unsigned char)*v))
		return false;
	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || *end)
		return false;
	*ret = x;
	return true;
}

/* A size: a number with an optional K, M or G (powers of 1024). */
static bool parse_size(const char *v, uint64_t *ret)
{
	char buf[64], *end;
	size_t n = strlen(v);
	unsigned int shift = 0;
	uint64_t x;

	if (!n || n >= sizeof(buf))
		return false;
	memcpy(buf, v, n + 1);
	end = buf + n - 1;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		break;
	}
	if (shift)
		*end = 0;
	if (!parse_u64(buf, &x) || (shift && x > (UINT64_MAX >> shift)))
		return false;
	*ret = x << shift;
	return true;
}

static bool parse_bool(const char *v, bool *ret)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1")) {
		*ret = true;
		return true;
	}
	if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0")) {
		*ret = false;
		return true;
	}
	return false;
}

static bool parse_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *ret)
{
	uint64_t x;

	if (!parse_size(v, &x) || x < lo || x > hi)
		return false;
	*ret = (uint32_t)x;
	return true;
}

/* A comma-separated list of names or numbers, resolved to uids or gids. */
static int parse_ids(struct parse *p, const char *key, const char *v, bool groups)
{
	char buf[512], *save = NULL, *tok;
	size_t n = strlen(v);

	if (n >= sizeof(buf))
		return fail(p, -EINVAL, "%s: list too long", key);
	memcpy(buf, v, n + 1);
	for (tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		uint64_t id;
		unsigned int *count = groups ? &p->c->ngids : &p->c->nuids;

		if (*count >= CFG_MAX_IDS)
			return fail(p, -EINVAL, "%s: more than %d entries", key, CFG_MAX_IDS);
		if (!parse_u64(tok, &id)) {
			if (groups) {
				struct group *g = getgrnam(tok);

				if (!g)
					return fail(p, -EINVAL, "%s: no such group '%s'", key, tok);
				id = g->gr_gid;
			} else {
				struct passwd *pw = getpwnam(tok);

				if (!pw)
					return fail(p, -EINVAL, "%s: no such user '%s'", key, tok);
				id = pw->pw_uid;
			}
		}
		if (groups)
			p->c->gids[(*count)++] = (gid_t)id;
		else
			p->c->uids[(*count)++] = (uid_t)id;
	}
	return 1;
}

/* ==== sections ================================================================ */

#define BAD(key, v, what) fail(p, -EINVAL, "bad value '%s' for %s: expected %s", v, key, what)

/*
 * rdma_listen = ADDR:PORT, ADDR an IPv4 address or a bracketed IPv6 one:
 * numeric only, as rdma_cm binds to the RDMA device that owns the address
 * (a name could resolve to an address no RDMA device has, or to several).
 */
static int rdma_listen_key(struct parse *p, const char *k, const char *v)
{
	struct config *c = p->c;
	char host[64], *end;
	const char *colon;
	unsigned char any[16];
	unsigned long port;
	size_t hl;
	int af = AF_INET;

	if (v[0] == '[') {
		const char *rb = strchr(v, ']');

		if (!rb || rb[1] != ':')
			return BAD(k, v, "ADDR:PORT ([IPv6]:PORT for IPv6)");
		hl = (size_t)(rb - v - 1);
		colon = rb + 1;
		v++;
		af = AF_INET6;
	} else {
		colon = strrchr(v, ':');
		if (!colon)
			return BAD(k, v, "ADDR:PORT");
		hl = (size_t)(colon - v);
	}
	if (!hl || hl >= sizeof(c->rdma_listen_host))
		return BAD(k, v, "ADDR:PORT with a numeric address");
	memcpy(host, v, hl);
	host[hl] = '\0';
	if (inet_pton(af, host, any) != 1)
		return BAD(k, v, af == AF_INET ? "ADDR:PORT, ADDR an IPv4 address ([IPv6]:PORT)" :
				  "[IPv6]:PORT with an IPv6 address");
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!isdigit((unsigned char)colon[1]) || *end || errno || port < 1 || port > 65535)
		return BAD(k, v, "ADDR:PORT, PORT 1..65535");
	strcpy(c->rdma_listen_host, host);
	c->rdma_listen_port = (uint16_t)port;
	c->rdma_listen_line = p->line;
	return 1;
}

static int daemon_key(struct parse *p, const char *k, const char *v)
{
	struct config *c = p->c;

	if (!strcmp(k, "socket")) {
		if (strlen(v) >= sizeof(c->socket) || v[0] != '/')
			return BAD(k, v, "an absolute path shorter than 108 bytes");
		strcpy(c->socket, v);
	} else if (!strcmp(k, "io")) {
		if (!strcmp(v, "uring"))
			c->io = IO_URING;
		else if (!strcmp(v, "epoll"))
			c->io = IO_EPOLL;
		else
			return BAD(k, v, "uring or epoll");
	} else if (!strcmp(k, "rdma_listen")) {
		return rdma_listen_key(p, k, v);
	} else if (!strcmp(k, "log_level")) {
		static const char *const names[] = { "err", "warning", "notice", "info", "debug" };

		for (int i = 0; i < 5; i++)
			if (!strcmp(v, names[i])) {
				c->log_level = LOG_ERR_ + i;
				return 1;
			}
		return BAD(k, v, "err, warning, notice, info or debug");
	} else {
		return fail(p, -EINVAL, "unknown key '%s' in [daemon]", k);
	}
	return 1;
}

static int policy_key(struct parse *p, const char *k, const char *v)
{
	if (!strcmp(k, "allow_users"))
		return parse_ids(p, k, v, false);
	if (!strcmp(k, "allow_groups"))
		return parse_ids(p, k, v, true);
	if (!strcmp(k, "allow_socket_group")) {
		if (!parse_bool(v, &p->c->allow_socket_group))
			return BAD(k, v, "yes or no");
		return 1;
	}
	return fail(p, -EINVAL, "unknown key '%s' in [policy]", k);
}

static int limits_key(struct parse *p, const char *k, const char *v)
{
	struct limits *l = &p->c->lim;
	static const struct {
		const char *name;
		size_t off;
		uint32_t lo, hi;
	} u32keys[] = {
		{ "max_mems", offsetof(struct limits, max_mems), 1, 1u << 20 },
		{ "max_states", offsetof(struct limits, max_states), 1, 1u << 24 },
		{ "max_maps", offsetof(struct limits, max_maps), 1, 1u << 24 },
		{ "max_links", offsetof(struct limits, max_links), 1, 1u << 26 },
		{ "max_inflight", offsetof(struct limits, max_inflight), 1, 65536 },
		{ "max_frame", offsetof(struct limits, max_frame), PROTO_FRAME_MIN, PROTO_FRAME_MAX },
		{ "max_batch", offsetof(struct limits, max_batch), 1, PROTO_BATCH_MAX },
		{ "max_fds", offsetof(struct limits, max_fds), 1, 256 },
		{ "max_odp", offsetof(struct limits, max_odp), 1, 1u << 16 },
		{ "max_conns", offsetof(struct limits, max_conns), 1, 1u << 20 },
		{ "max_conns_per_uid", offsetof(struct limits, max_conns_per_uid), 1, 1u << 20 },
	};

	for (size_t i = 0; i < sizeof(u32keys) / sizeof(u32keys[0]); i++) {
		if (strcmp(k, u32keys[i].name))
			continue;
		if (!parse_u32(v, u32keys[i].lo, u32keys[i].hi,
			       (uint32_t *)((char *)l + u32keys[i].off))) {
			char what[64];

			snprintf(what, sizeof(what), "a number from %u to %u", u32keys[i].lo,
				 u32keys[i].hi);
			return BAD(k, v, what);
		}
		return 1;
	}
	if (!strcmp(k, "max_mem_bytes")) {
		if (!parse_size(v, &l->max_mem_bytes) || !l->max_mem_bytes)
			return BAD(k, v, "a size such as 64G");
		return 1;
	}
	if (!strcmp(k, "max_iova_bytes")) {
		if (!parse_size(v, &l->max_iova_bytes) || l->max_iova_bytes < 4096)
			return BAD(k, v, "a size such as 64T");
		return 1;
	}
	if (!strcmp(k, "max_table_bytes")) {
		if (!parse_size(v, &l->max_table_bytes) || l->max_table_bytes < 65536)
			return BAD(k, v, "a size from 64K, such as 256M");
		return 1;
	}
	if (!strcmp(k, "max_unsent_bytes")) {
		uint64_t x;

		if (!parse_size(v, &x) || x < 65536 || x > (UINT64_C(1) << 30))
			return BAD(k, v, "a size from 64K to 1G");
		l->out_high = x;
		l->out_low = x / 4;
		return 1;
	}
	return fail(p, -EINVAL, "unknown key '%s' in [limits]", k);
}

static int odp_key(struct parse *p, const char *k, const char *v)
{
	struct odp_settings *o = &p->c->odp;
	uint64_t x;

	if (!strcmp(k, "fault_around")) {
		if (!parse_size(v, &x) || x < 4096 || x > ODP_WINDOW_MAX || (x & (x - 1)))
			return BAD(k, v, "a power of two from 4K to 4M");
		o->window = x;
	} else if (!strcmp(k, "sync")) {
		if (!strcmp(v, "batch"))
			o->sync = ODP_SYNC_BATCH;
		else if (!strcmp(v, "per-page"))
			o->sync = ODP_SYNC_PER_PAGE;
		else
			return BAD(k, v, "batch or per-page");
	} else if (!strcmp(k, "implicit_size")) {
		if (!parse_size(v, &x) || x < (UINT64_C(1) << 21) ||
		    x > (UINT64_C(1) << (PGTBL_IAS_BITS - 1)) || (x & ((UINT64_C(1) << 21) - 1)))
			return BAD(k, v, "a multiple of 2M from 2M to 128T");
		o->implicit_size = x;
	} else if (!strcmp(k, "user_fault_timeout_ms")) {
		if (!parse_u32(v, 1, 600000, &o->user_fault_timeout_ms))
			return BAD(k, v, "a number from 1 to 600000");
	} else {
		return fail(p, -EINVAL, "unknown key '%s' in [odp]", k);
	}
	return 1;
}

static int domain_key(struct parse *p, struct cfg_domain *d, const char *k, const char *v)
{
	struct dom_config *dc = &d->dom;
	uint64_t x;
	bool b;

	if (!strcmp(k, "type")) {
		if (!strcmp(v, "translating"))
			dc->type = DOM_TRANSLATING;
		else if (!strcmp(v, "identity"))
			dc->type = DOM_IDENTITY;
		else
			return BAD(k, v, "translating or identity");
	} else if (!strcmp(k, "granule")) {
		if (!parse_size(v, &x) || (x != 4096 && x != 16384 && x != 65536))
			return BAD(k, v, "4K, 16K or 64K");
		dc->granule_shift = (unsigned int)__builtin_ctzll(x);
	} else if (!strcmp(k, "flush")) {
		if (!strcmp(v, "strict"))
			dc->flush = DOM_FLUSH_STRICT;
		else if (!strcmp(v, "lazy"))
			dc->flush = DOM_FLUSH_LAZY;
		else
			return BAD(k, v, "strict or lazy");
	} else if (!strcmp(k, "visibility")) {
		if (!strcmp(v, "sync"))
			dc->visibility = DOM_VISIBLE_ON_SYNC;
		else if (!strcmp(v, "link"))
			dc->visibility = DOM_VISIBLE_ON_LINK;
		else
			return BAD(k, v, "sync or link");
	} else if (!strcmp(k, "aperture_start")) {
		if (!parse_u64(v, &dc->aperture_start))
			return BAD(k, v, "an address");
	} else if (!strcmp(k, "aperture_end")) {
		if (!parse_u64(v, &dc->aperture_end))
			return BAD(k, v, "an address");
	} else if (!strcmp(k, "from_device_rw")) {
		if (!parse_bool(v, &dc->from_device_rw))
			return BAD(k, v, "yes or no");
	} else if (!strcmp(k, "blocks")) {
		if (!parse_bool(v, &b))
			return BAD(k, v, "yes or no");
		dc->no_blocks = !b;
	} else if (!strcmp(k, "iotlb_entries")) {
		if (!parse_u64(v, &x) || !x || x > IOTLB_MAX_ENTRIES || (x & (x - 1)))
			return BAD(k, v, "a power of two up to 65536");
		dc->iotlb_entries = (uint32_t)x;
	} else if (!strcmp(k, "fq_timeout_ms")) {
		if (!parse_u64(v, &x) || !x || x > 10000)
			return BAD(k, v, "1 to 10000");
		dc->fq_timeout_ns = x * 1000000u;
	} else if (!strcmp(k, "swiotlb")) {
		if (!parse_size(v, &x) || x < 65536 || x > (UINT64_C(1) << 30))
			return BAD(k, v, "a size from 64K to 1G");
		dc->swiotlb_bytes = x;
	} else if (!strcmp(k, "max_table_bytes")) {
		if (!parse_size(v, &dc->max_table_bytes))
			return BAD(k, v, "a size (0: no cap)");
	} else if (!strcmp(k, "merge_links")) {
		if (!parse_bool(v, &b))
			return BAD(k, v, "yes or no");
		d->no_merge_links = !b;
	} else {
		return fail(p, -EINVAL, "unknown key '%s' in [domain %s]", k, d->name);
	}
	return 1;
}

static int device_key(struct parse *p, struct cfg_device *d, const char *k, const char *v)
{
	bool b;

	if (!strcmp(k, "domain")) {
		if (!*v || strlen(v) >= CFG_NAME_MAX)
			return BAD(k, v, "a domain name");
		strcpy(d->domain, v);
	} else if (!strcmp(k, "dma_mask_bits")) {
		if (!parse_u32(v, 12, 64, &d->dma_mask_bits))
			return BAD(k, v, "12 to 64");
	} else if (!strcmp(k, "trusted")) {
		if (!parse_bool(v, &b))
			return BAD(k, v, "yes or no");
		d->untrusted = !b;
	} else if (!strcmp(k, "coherent")) {
		if (!parse_bool(v, &b))
			return BAD(k, v, "yes or no");
		d->non_coherent = !b;
	} else if (!strcmp(k, "pci")) {
		if (!parse_bool(v, &b))
			return BAD(k, v, "yes or no");
		d->not_pci = !b;
	} else if (!strcmp(k, "backend")) {
		if (!strcmp(v, "sim"))
			d->backend = DEV_BACKEND_SIM;
		else if (!strcmp(v, "rxe"))
			d->backend = DEV_BACKEND_RXE;
		else
			return BAD(k, v, "sim or rxe");
	} else if (!strcmp(k, "rdma_device")) {
		if (!*v || strlen(v) >= CFG_NAME_MAX)
			return BAD(k, v, "an RDMA device name");
		strcpy(d->rdma_device, v);
	} else if (!strcmp(k, "odp")) {
		if (!strcmp(v, "emulate"))
			d->odp_mr = false;
		else if (!strcmp(v, "mr"))
			d->odp_mr = true;
		else
			return BAD(k, v, "emulate or mr");
	} else {
		return fail(p, -EINVAL, "unknown key '%s' in [device %s]", k, d->name);
	}
	return 1;
}

/* "device sim0" -> kind "device", name "sim0". */
static bool split_section(const char *section, const char *kind, const char **name)
{
	size_t n = strlen(kind);

	if (strncmp(section, kind, n) || section[n] != ' ')
		return false;
	*name = section + n + 1;
	while (**name == ' ')
		(*name)++;
	return true;
}

static struct cfg_domain *domain_named(struct config *c, const char *name)
{
	for (unsigned int i = 0; i < c->ndoms; i++)
		if (!strcmp(c->doms[i].name, name))
			return &c->doms[i];
	return NULL;
}

static struct cfg_device *device_named(struct config *c, const char *name)
{
	for (unsigned int i = 0; i < c->ndevs; i++)
		if (!strcmp(c->devs[i].name, name))
			return &c->devs[i];
	return NULL;
}

static bool good_name(const char *n)
{
	size_t len = strlen(n);

	if (!len || len >= CFG_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '-' && n[i] != '_' && n[i] != '.')
			return false;
	return true;
}

static int rings_key(struct parse *p, const char *k, const char *v)
{
	struct ring_settings *g = &p->c->rings;
	uint64_t x;

	if (!strcmp(k, "enable")) {
		if (!parse_bool(v, &g->enable))
			return BAD(k, v, "yes or no");
	} else if (!strcmp(k, "spin_us")) {
		if (!parse_u32(v, 0, 1000000, &g->spin_us))
			return BAD(k, v, "a number from 0 to 1000000");
	} else if (!strcmp(k, "spin_max_us")) {
		if (!parse_u32(v, 0, 1000000, &g->spin_max_us))
			return BAD(k, v, "a number from 0 to 1000000");
	} else if (!strcmp(k, "max_polled")) {
		if (!parse_u32(v, 1, 65536, &g->max_polled))
			return BAD(k, v, "a number from 1 to 65536");
	} else if (!strcmp(k, "max_size")) {
		if (!parse_size(v, &x) || x > UINT32_MAX || !proto_ring_size_ok((uint32_t)x))
			return BAD(k, v, "a power of two from 8K to 64M");
		g->max_size = (uint32_t)x;
	} else {
		return fail(p, -EINVAL, "unknown key '%s' in [rings]", k);
	}
	return 1;
}

static int persist_key(struct parse *p, const char *k, const char *v)
{
	struct persist_settings *g = &p->c->persist;
	uint64_t x;

	if (!strcmp(k, "state_dir")) {
		if (*v && *v != '/')
			return BAD(k, v, "an absolute path, or nothing (off)");
		if (strlen(v) >= sizeof(g->state_dir))
			return BAD(k, v, "a shorter path");
		snprintf(g->state_dir, sizeof(g->state_dir), "%s", v);
	} else if (!strcmp(k, "sync")) {
		if (!strcmp(v, "fdatasync"))
			g->sync = true;
		else if (!strcmp(v, "none"))
			g->sync = false;
		else
			return BAD(k, v, "fdatasync or none");
	} else if (!strcmp(k, "grace_ms")) {
		if (!parse_u32(v, 0, 86400000, &g->grace_ms))
			return BAD(k, v, "a number from 0 to 86400000");
	} else if (!strcmp(k, "checkpoint_bytes")) {
		if (!parse_size(v, &x) || x < (1u << 20))
			return BAD(k, v, "a size of at least 1M");
		g->checkpoint_bytes = x;
	} else if (!strcmp(k, "require_fdstore")) {
		if (!parse_bool(v, &g->require_fdstore))
			return BAD(k, v, "yes or no");
	} else {
		return fail(p, -EINVAL, "unknown key '%s' in [persist]", k);
	}
	return 1;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse *p = user;
	struct config *c = p->c;
	const char *name;

	if (p->r)
		return 0;
	if (!strcmp(section, "daemon"))
		return daemon_key(p, key, value);
	if (!strcmp(section, "policy"))
		return policy_key(p, key, value);
	if (!strcmp(section, "limits"))
		return limits_key(p, key, value);
	if (!strcmp(section, "odp"))
		return odp_key(p, key, value);
	if (!strcmp(section, "rings"))
		return rings_key(p, key, value);
	if (!strcmp(section, "persist"))
		return persist_key(p, key, value);
	if (!strncmp(section, "domain ", 7) || !strncmp(section, "device ", 7)) {
		/* The file describes the topology: the built-in device set goes. */
		if (!p->had_device) {
			p->had_device = true;
			c->ndevs = 0;
			c->ndoms = 0;
		}
	}
	if (split_section(section, "domain", &name)) {
		struct cfg_domain *d = domain_named(c, name);

		if (!good_name(name))
			return fail(p, -EINVAL, "bad domain name '%s'", name);
		if (!d) {
			if (c->ndoms == CFG_MAX_DOMAINS)
				return fail(p, -EINVAL, "more than %d domains", CFG_MAX_DOMAINS);
			d = &c->doms[c->ndoms++];
			memset(d, 0, sizeof(*d));
			strcpy(d->name, name);
			d->line = p->line;
		}
		return domain_key(p, d, key, value);
	}
	if (split_section(section, "device", &name)) {
		struct cfg_device *d;

		if (!good_name(name))
			return fail(p, -EINVAL, "bad device name '%s'", name);
		d = device_named(c, name);
		if (!d) {
			if (c->ndevs == CFG_MAX_DEVICES)
				return fail(p, -EINVAL, "more than %d devices", CFG_MAX_DEVICES);
			d = &c->devs[c->ndevs++];
			memset(d, 0, sizeof(*d));
			strcpy(d->name, name);
			d->line = p->line;
		}
		return device_key(p, d, key, value);
	}
	return fail(p, -EINVAL, "unknown section [%s]", section);
}

/* ==== loading ===================================================================== */

static void add_default(struct config *c, const char *name, struct dom_config dom,
			unsigned int mask_bits, bool untrusted)
{
	struct cfg_domain *d = &c->doms[c->ndoms++];
	struct cfg_device *v = &c->devs[c->ndevs++];

	memset(d, 0, sizeof(*d));
	memset(v, 0, sizeof(*v));
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->dom = dom;
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->domain, sizeof(v->domain), "%s", name);
	v->dma_mask_bits = mask_bits;
	v->untrusted = untrusted;
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->socket, "/run/iovad/iovad.sock");
	c->io = IO_URING;
	c->log_level = LOG_NOTICE_;
	c->allow_socket_group = true;
	c->lim = (struct limits){
		.max_mems = 4096,
		.max_mem_bytes = UINT64_C(64) << 30,
		.max_states = 65536,
		.max_maps = 65536,
		.max_links = 1u << 20,
		.max_devs = 64,
		.max_inflight = 64,
		.max_frame = PROTO_FRAME_DEFAULT,
		.max_batch = PROTO_BATCH_DEFAULT,
		.max_fds = 16,
		.max_odp = 1024,
		.out_high = 1u << 20,
		.out_low = 256u << 10,
		.max_iova_bytes = UINT64_C(64) << 40,
		.max_table_bytes = UINT64_C(256) << 20,
		.max_conns = 16384,
		.max_conns_per_uid = 1024,
	};
	c->odp = (struct odp_settings){
		.sync = ODP_SYNC_BATCH,
		.window = ODP_WINDOW_DEFAULT,
		.implicit_size = UINT64_C(1) << 40,
		.user_fault_timeout_ms = 5000,
	};
	c->rings = (struct ring_settings){
		.enable = true,
		.spin_us = 50,
		.spin_max_us = 1000,
		.max_size = 4u << 20,
		.max_polled = 16,
	};
	c->persist = (struct persist_settings){
		.sync = true,
		.grace_ms = 30000,
		.checkpoint_bytes = UINT64_C(64) << 20,
		.require_fdstore = true,
	};
	/* The issue's default set, each device on a domain of its own. */
	add_default(c, "sim0", (struct dom_config){ 0 }, 64, false);
	add_default(c, "sim-lazy0", (struct dom_config){ .flush = DOM_FLUSH_LAZY }, 64, false);
	add_default(c, "sim32", (struct dom_config){ 0 }, 32, false);
	add_default(c, "untrusted0", (struct dom_config){ 0 }, 64, true);
	add_default(c, "identity0", (struct dom_config){ .type = DOM_IDENTITY }, 64, false);
	add_default(c, "sim64k0", (struct dom_config){ .granule_shift = 16 }, 64, false);
}

/* Devices without a domain get one of their own; named domains must exist. */
static int resolve(struct parse *p)
{
	struct config *c = p->c;

	for (unsigned int i = 0; i < c->ndevs; i++) {
		struct cfg_device *d = &c->devs[i];

		if (!d->domain[0]) {
			if (domain_named(c, d->name)) {
				p->line = d->line;
				return fail(p, -EINVAL, "device %s has no domain, and a domain of its "
					    "name exists: say 'domain = %s'", d->name, d->name);
			}
			if (c->ndoms == CFG_MAX_DOMAINS) {
				p->line = d->line;
				return fail(p, -EINVAL, "more than %d domains", CFG_MAX_DOMAINS);
			}
			strcpy(d->domain, d->name);
			memset(&c->doms[c->ndoms], 0, sizeof(c->doms[0]));
			strcpy(c->doms[c->ndoms].name, d->name);
			c->doms[c->ndoms].line = d->line;
			c->ndoms++;
		} else if (!domain_named(c, d->domain)) {
			p->line = d->line;
			return fail(p, -EINVAL, "device %s: no domain named '%s'", d->name, d->domain);
		}
		if (!d->dma_mask_bits)
			d->dma_mask_bits = 64;
		/* Checked here, not per key: the two keys may come in either order. */
		if (d->backend == DEV_BACKEND_RXE && !d->rdma_device[0]) {
			p->line = d->line;
			return fail(p, -EINVAL, "device %s: backend = rxe needs rdma_device",
				    d->name);
		}
		if (d->backend != DEV_BACKEND_RXE && d->rdma_device[0]) {
			p->line = d->line;
			return fail(p, -EINVAL, "device %s: rdma_device needs backend = rxe",
				    d->name);
		}
		if (d->backend != DEV_BACKEND_RXE && d->odp_mr) {
			p->line = d->line;
			return fail(p, -EINVAL, "device %s: odp = mr needs backend = rxe", d->name);
		}
	}
	/* Peers reach MRs only through an rxe device's PD: without one there is nothing. */
	if (c->rdma_listen_host[0]) {
		bool rxe = false;

		for (unsigned int i = 0; i < c->ndevs; i++)
			rxe |= c->devs[i].backend == DEV_BACKEND_RXE;
		if (!rxe) {
			p->line = c->rdma_listen_line;
			return fail(p, -EINVAL, "rdma_listen needs a device with backend = rxe");
		}
	}
	return 0;
}

int config_load(const char *path, struct config *c, char *err, size_t errlen)
{
	struct parse p = { .c = c, .path = path, .err = err, .errlen = errlen };
	int r;

	config_defaults(c);
	p.f = fopen(path, "re");
	if (!p.f) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = ini_parse_stream(counting_reader, &p, handler, &p);
	fclose(p.f);
	if (p.r)
		return p.r;
	if (r) {
		/* A line libinih itself could not parse (no '=', unclosed [section]). */
		p.line = r > 0 ? (unsigned int)r : p.line;
		fail(&p, -EINVAL, "syntax error");
		return p.r;
	}
	if (p.had_device && !c->ndevs) {
		snprintf(err, errlen, "%s: no devices", path);
		return -EINVAL;
	}
	resolve(&p);
	return p.r;
}

/* ==== printing ===================================================================== */

static const char *yn(bool b)
{
	return b ? "yes" : "no";
}

void config_print(const struct config *c, FILE *f)
{
	static const char *const levels[] = { "err", "warning", "notice", "info", "debug" };
	const struct limits *l = &c->lim;

	fprintf(f, "[daemon]\nsocket = %s\nio = %s\nlog_level = %s\n", c->socket,
		c->io == IO_EPOLL ? "epoll" : "uring", levels[c->log_level - LOG_ERR_]);
	if (c->rdma_listen_host[0]) {
		bool v6 = strchr(c->rdma_listen_host, ':');

		fprintf(f, "rdma_listen = %s%s%s:%u\n", v6 ? "[" : "", c->rdma_listen_host,
			v6 ? "]" : "", c->rdma_listen_port);
	}
	fputc('\n', f);
	fprintf(f, "[policy]\nallow_socket_group = %s\nallow_users =", yn(c->allow_socket_group));
	for (unsigned int i = 0; i < c->nuids; i++)
		fprintf(f, "%s%u", i ? ", " : " ", (unsigned int)c->uids[i]);
	fprintf(f, "\nallow_groups =");
	for (unsigned int i = 0; i < c->ngids; i++)
		fprintf(f, "%s%u", i ? ", " : " ", (unsigned int)c->gids[i]);
	fprintf(f, "\n\n[limits]\nmax_mems = %u\nmax_mem_bytes = %" PRIu64 "\nmax_states = %u\n"
		"max_maps = %u\nmax_links = %u\nmax_inflight = %u\nmax_frame = %u\n"
		"max_batch = %u\nmax_fds = %u\nmax_odp = %u\nmax_unsent_bytes = %zu\n"
		"max_iova_bytes = %" PRIu64 "\nmax_table_bytes = %" PRIu64 "\nmax_conns = %u\n"
		"max_conns_per_uid = %u\n",
		l->max_mems, l->max_mem_bytes, l->max_states, l->max_maps, l->max_links,
		l->max_inflight, l->max_frame, l->max_batch, l->max_fds, l->max_odp, l->out_high,
		l->max_iova_bytes, l->max_table_bytes, l->max_conns, l->max_conns_per_uid);
	fprintf(f, "\n[odp]\nfault_around = %" PRIu64 "K\nsync = %s\nimplicit_size = %" PRIu64
		"M\nuser_fault_timeout_ms = %u\n", c->odp.window >> 10,
		c->odp.sync == ODP_SYNC_PER_PAGE ? "per-page" : "batch", c->odp.implicit_size >> 20,
		c->odp.user_fault_timeout_ms);
	fprintf(f, "\n[rings]\nenable = %s\nspin_us = %u\nspin_max_us = %u\nmax_polled = %u\n"
		"max_size = %uK\n", yn(c->rings.enable), c->rings.spin_us, c->rings.spin_max_us,
		c->rings.max_polled, c->rings.max_size >> 10);
	fprintf(f, "\n[persist]\nstate_dir = %s\nsync = %s\ngrace_ms = %u\ncheckpoint_bytes = %"
		PRIu64 "K\nrequire_fdstore = %s\n", c->persist.state_dir,
		c->persist.sync ? "fdatasync" : "none", c->persist.grace_ms,
		c->persist.checkpoint_bytes >> 10, yn(c->persist.require_fdstore));
	for (unsigned int i = 0; i < c->ndoms; i++) {
		const struct dom_config *d = &c->doms[i].dom;

		fprintf(f, "\n[domain %s]\ntype = %s\n", c->doms[i].name,
			d->type == DOM_IDENTITY ? "identity" : "translating");
		if (d->type == DOM_IDENTITY)
			continue;
		fprintf(f, "granule = %uK\nflush = %s\nvisibility = %s\naperture_start = %#" PRIx64
			"\naperture_end = %#" PRIx64 "\nfrom_device_rw = %s\nblocks = %s\n"
			"iotlb_entries = %u\nfq_timeout_ms = %" PRIu64 "\nswiotlb = %" PRIu64 "K\n"
			"max_table_bytes = %" PRIu64 "\nmerge_links = %s\n",
			(1u << (d->granule_shift ? d->granule_shift : 12)) >> 10,
			d->flush == DOM_FLUSH_LAZY ? "lazy" : "strict",
			d->visibility == DOM_VISIBLE_ON_LINK ? "link" : "sync", d->aperture_start,
			d->aperture_end ? d->aperture_end : (UINT64_C(1) << PGTBL_IAS_BITS) - 1,
			yn(d->from_device_rw), yn(!d->no_blocks),
			d->iotlb_entries ? d->iotlb_entries : IOTLB_DEFAULT_ENTRIES,
			(d->fq_timeout_ns ? d->fq_timeout_ns : DOM_FQ_TIMEOUT_NS) / 1000000u,
			(d->swiotlb_bytes ? d->swiotlb_bytes : DOM_DEFAULT_SWIOTLB_BYTES) >> 10,
			d->max_table_bytes, yn(!c->doms[i].no_merge_links));
	}
	for (unsigned int i = 0; i < c->ndevs; i++) {
		const struct cfg_device *d = &c->devs[i];

		fprintf(f, "\n[device %s]\ndomain = %s\ndma_mask_bits = %u\ntrusted = %s\n"
			"coherent = %s\npci = %s\n", d->name, d->domain, d->dma_mask_bits,
			yn(!d->untrusted), yn(!d->non_coherent), yn(!d->not_pci));
		if (d->backend == DEV_BACKEND_RXE)
			fprintf(f, "backend = rxe\nrdma_device = %s\nodp = %s\n", d->rdma_device,
				d->odp_mr ? "mr" : "emulate");
		else
			fprintf(f, "backend = sim\n");
	}
}
