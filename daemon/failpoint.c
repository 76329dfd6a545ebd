// SPDX-License-Identifier: MIT
/*
 * failpoint.c - fault injection for tests (failpoint.h, docs/reliability.md).
 *
 * IOVAD_FAILPOINTS arms sites from the environment at start, a
 * comma-separated list of SITE=RULE:
 *
 *   alloc=nth:500            fail the 500th hit of the site only (hits count from 1)
 *   alloc=every:97           fail hits 97, 194, 291, ...
 *   alloc=after:1000         fail every hit after the 1000th
 *   alloc=prob:0.01:42       fail each hit with probability 0.01; the draw is a
 *                            hash of the seed (42, default 0) and the hit number,
 *                            so a run is reproducible
 *   alloc=nth:30,uring_submit=every:5
 *
 * Sites: alloc, uring_submit, journal_write, journal_sync, link_run. Each site may be
 * named once. IOVAD_FAILPOINTS_LOG=1 writes every injected failure to stderr
 * (site and hit number); =2 adds a backtrace of the failing call.
 *
 * When armed, a warning says so at start and the counts of every site
 * (hits, failures) are written to stderr at exit, one line, for tests:
 *
 *   <5>iovad: failpoints at exit: alloc 1234 hits, 1 failed; uring_submit ...
 *
 * The alloc site is the daemon's own allocations: with IOVAD_FAILPOINTS_WRAP
 * defined this file provides __wrap_malloc and friends, and the daemon must
 * be linked with -Wl,--wrap=malloc,--wrap=calloc,... (tests/fault builds
 * iovad-failinj that way). The wrap only redirects the references of the
 * objects linked into the executable (the daemon's and the static domain
 * engine's); shared libraries (libevent, liburing, libibverbs, libc itself)
 * allocate unhooked.
 *
 * With IOVAD_FAILPOINTS_ENABLED defined, fp_init() also runs from a
 * constructor, before main(), for a daemon whose main() does not call it.
 *
 * Nothing here allocates: fp_hit_slow() runs inside the malloc wrapper.
 * Counters are atomic, so a site may be hit from any thread.
 */
#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failpoint.h"

bool fp_armed;

enum fp_mode { FP_OFF = 0, FP_NTH, FP_EVERY, FP_AFTER, FP_PROB };

struct fp_rule {
	enum fp_mode mode;
	unsigned long n;   /* nth, every, after */
	double p;          /* prob */
	uint64_t seed;     /* prob */
	char text[64];     /* as given, for the start-up line */
};

static const char *const site_names[FP__MAX] = {
	[FP_ALLOC] = "alloc",
	[FP_URING_SUBMIT] = "uring_submit",
	[FP_JOURNAL_WRITE] = "journal_write",
	[FP_JOURNAL_SYNC] = "journal_sync",
	[FP_LINK_RUN] = "link_run",
};

static struct fp_rule rules[FP__MAX];
static atomic_ulong hits[FP__MAX], fails[FP__MAX];
static int log_level; /* IOVAD_FAILPOINTS_LOG: 0 quiet, 1 each failure, 2 with a backtrace */
static int init_result;
static bool init_done;

const char *fp_site_name(enum fp_site site)
{
	return (unsigned int)site < FP__MAX ? site_names[site] : "?";
}

void fp_counts(enum fp_site site, unsigned long *h, unsigned long *f)
{
	bool ok = (unsigned int)site < FP__MAX;

	if (h)
		*h = ok ? atomic_load_explicit(&hits[site], memory_order_relaxed) : 0;
	if (f)
		*f = ok ? atomic_load_explicit(&fails[site], memory_order_relaxed) : 0;
}

/* splitmix64's finaliser: a uniform 64-bit value from the seed and the hit number. */
static uint64_t mix(uint64_t seed, uint64_t n)
{
	uint64_t z = seed + n * UINT64_C(0x9e3779b97f4a7c15);

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* One write(2) per line, formatted on the stack: called from inside malloc. */
static void log_failure(enum fp_site site, unsigned long n)
{
	char line[128];
	int len = snprintf(line, sizeof(line), "<4>iovad: failpoint %s: injected failure at hit %lu\n",
			   site_names[site], n);

	if (len > 0)
		(void)!write(STDERR_FILENO, line, (size_t)len < sizeof(line) ? (size_t)len :
			     sizeof(line) - 1);
	if (log_level >= 2) {
		void *frames[32];
		int nf = backtrace(frames, 32);

		/* Frame 0 is this function; backtrace_symbols_fd does not allocate. */
		backtrace_symbols_fd(frames + 1, nf - 1, STDERR_FILENO);
	}
}

bool fp_hit_slow(enum fp_site site)
{
	const struct fp_rule *r;
	unsigned long n;
	bool fail;

	if ((unsigned int)site >= FP__MAX)
		return false;
	r = &rules[site];
	n = atomic_fetch_add_explicit(&hits[site], 1, memory_order_relaxed) + 1;
	switch (r->mode) {
	case FP_NTH:
		fail = n == r->n;
		break;
	case FP_EVERY:
		fail = n % r->n == 0;
		break;
	case FP_AFTER:
		fail = n > r->n;
		break;
	case FP_PROB:
		/* 2^-64 steps: p = 1 fails every hit, p = 0 none. */
		fail = (double)mix(r->seed, n) * 0x1p-64 < r->p;
		break;
	default:
		fail = false;
		break;
	}
	if (fail) {
		atomic_fetch_add_explicit(&fails[site], 1, memory_order_relaxed);
		if (log_level)
			log_failure(site, n);
	}
	return fail;
}

static void report_at_exit(void)
{
	char line[512];
	size_t off = 0;

	off += (size_t)snprintf(line, sizeof(line), "<5>iovad: failpoints at exit:");
	for (int i = 0; i < FP__MAX && off < sizeof(line); i++) {
		unsigned long h, f;

		fp_counts((enum fp_site)i, &h, &f);
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%s %s %lu hits, %lu failed",
					i ? ";" : "", site_names[i], h, f);
	}
	if (off >= sizeof(line) - 1)
		off = sizeof(line) - 2;
	line[off++] = '\n';
	(void)!write(STDERR_FILENO, line, off);
}

/* A whole unsigned decimal number, >= 1. */
static bool parse_count(const char *s, unsigned long *ret)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*ret = strtoul(s, &end, 10);
	return !errno && !*end && *ret >= 1;
}

static bool parse_u64(const char *s, uint64_t *ret)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*ret = strtoull(s, &end, 0);
	return !errno && !*end;
}

/* RULE of one SITE=RULE: nth:N, every:N, after:N, prob:P[:SEED]. */
static int parse_rule(const char *site, char *rule, struct fp_rule *r)
{
	char *arg = strchr(rule, ':');
	char *seed;

	if (!arg)
		goto bad;
	*arg++ = '\0';
	if (!strcmp(rule, "nth") || !strcmp(rule, "every") || !strcmp(rule, "after")) {
		r->mode = rule[0] == 'n' ? FP_NTH : rule[0] == 'e' ? FP_EVERY : FP_AFTER;
		if (!parse_count(arg, &r->n)) {
			fprintf(stderr, "iovad: IOVAD_FAILPOINTS: %s=%s: expected a count >= 1, "
				"not '%s'\n", site, rule, arg);
			return -EINVAL;
		}
		/* after:N fails from hit N + 1 on, which N = ULONG_MAX would never reach. */
		return 0;
	}
	if (!strcmp(rule, "prob")) {
		char *end;

		r->mode = FP_PROB;
		seed = strchr(arg, ':');
		if (seed)
			*seed++ = '\0';
		errno = 0;
		r->p = strtod(arg, &end);
		if (!*arg || *end || errno || !(r->p >= 0.0 && r->p <= 1.0)) {
			fprintf(stderr, "iovad: IOVAD_FAILPOINTS: %s=prob: expected a probability "
				"in [0, 1], not '%s'\n", site, arg);
			return -EINVAL;
		}
		if (seed && !parse_u64(seed, &r->seed)) {
			fprintf(stderr, "iovad: IOVAD_FAILPOINTS: %s=prob:%s: expected a seed "
				"(an unsigned number), not '%s'\n", site, arg, seed);
			return -EINVAL;
		}
		return 0;
	}
bad:
	fprintf(stderr, "iovad: IOVAD_FAILPOINTS: %s=%s: expected nth:N, every:N, after:N or "
		"prob:P[:SEED]\n", site, rule);
	return -EINVAL;
}

static int parse_spec(const char *spec, struct fp_rule *out)
{
	char buf[1024];
	char *save = NULL, *item;

	if (strlen(spec) >= sizeof(buf)) {
		fprintf(stderr, "iovad: IOVAD_FAILPOINTS: longer than %zu characters\n",
			sizeof(buf) - 1);
		return -EINVAL;
	}
	strcpy(buf, spec);
	for (item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq, *rule, given[64];
		int site = -1, r;

		while (*item == ' ' || *item == '\t')
			item++;
		eq = strchr(item, '=');
		if (!eq) {
			fprintf(stderr, "iovad: IOVAD_FAILPOINTS: '%s': expected SITE=RULE, e.g. "
				"alloc=nth:500\n", item);
			return -EINVAL;
		}
		*eq = '\0';
		rule = eq + 1;
		for (int i = 0; i < FP__MAX; i++)
			if (!strcmp(item, site_names[i]))
				site = i;
		if (site < 0) {
			fprintf(stderr, "iovad: IOVAD_FAILPOINTS: unknown site '%s' (sites:", item);
			for (int i = 0; i < FP__MAX; i++)
				fprintf(stderr, "%s %s", i ? "," : "", site_names[i]);
			fprintf(stderr, ")\n");
			return -EINVAL;
		}
		if (out[site].mode != FP_OFF) {
			fprintf(stderr, "iovad: IOVAD_FAILPOINTS: site '%s' given twice\n", item);
			return -EINVAL;
		}
		snprintf(given, sizeof(given), "%s", rule);
		r = parse_rule(item, rule, &out[site]);
		if (r)
			return r;
		snprintf(out[site].text, sizeof(out[site].text), "%s", given);
	}
	return 0;
}

int fp_init(void)
{
	struct fp_rule parsed[FP__MAX];
	const char *spec, *lg;
	char armed[512] = "";
	size_t off = 0;

	if (init_done)
		return init_result;
	init_done = true;
	memset(parsed, 0, sizeof(parsed));
	lg = getenv("IOVAD_FAILPOINTS_LOG");
	if (lg && *lg) {
		if (!strcmp(lg, "0") || !strcmp(lg, "1") || !strcmp(lg, "2")) {
			log_level = lg[0] - '0';
		} else {
			fprintf(stderr, "iovad: IOVAD_FAILPOINTS_LOG: expected 0, 1 or 2, not '%s'\n",
				lg);
			return init_result = -EINVAL;
		}
	}
	spec = getenv("IOVAD_FAILPOINTS");
	if (!spec || !*spec)
		return init_result = 0;
	if (parse_spec(spec, parsed))
		return init_result = -EINVAL;
	for (int i = 0; i < FP__MAX; i++) {
		if (parsed[i].mode == FP_OFF)
			continue;
		off += (size_t)snprintf(armed + off, sizeof(armed) - off, "%s%s=%s", off ? "," : "",
					site_names[i], parsed[i].text);
		if (off >= sizeof(armed))
			off = sizeof(armed) - 1;
	}
	if (!off) /* "IOVAD_FAILPOINTS=," names no site */
		return init_result = 0;
	memcpy(rules, parsed, sizeof(rules));
	if (log_level >= 2) {
		void *f[1];

		backtrace(f, 1); /* loads libgcc now, not first inside a failing malloc */
	}
	fprintf(stderr, "<4>iovad: fault injection armed: %s\n", armed);
	atexit(report_at_exit);
	fp_armed = true;
	return init_result = 0;
}

#ifdef IOVAD_FAILPOINTS_ENABLED
/* For a daemon whose main() does not call fp_init(): refuse to start on a bad spec. */
static void __attribute__((constructor)) fp_init_early(void)
{
	if (fp_init())
		_exit(2);
}
#endif

#ifdef IOVAD_FAILPOINTS_WRAP
/*
 * The linker's --wrap: the daemon's own calls of malloc() reach
 * __wrap_malloc(), which fails or calls the real one. Link with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,
 * --wrap=posix_memalign,--wrap=strdup,--wrap=strndup.
 */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
int __real_posix_memalign(void **ret, size_t align, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
int __wrap_posix_memalign(void **ret, size_t align, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t size)
{
	if (fp_hit(FP_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	if (fp_hit(FP_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

/* A failed realloc leaves the block as it was, as a real one does. */
void *__wrap_realloc(void *p, size_t size)
{
	if (fp_hit(FP_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(p, size);
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
	if (fp_hit(FP_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_aligned_alloc(align, size);
}

int __wrap_posix_memalign(void **ret, size_t align, size_t size)
{
	if (fp_hit(FP_ALLOC))
		return ENOMEM;
	return __real_posix_memalign(ret, align, size);
}

char *__wrap_strdup(const char *s)
{
	if (fp_hit(FP_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	if (fp_hit(FP_ALLOC)) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_strndup(s, n);
}
#endif /* IOVAD_FAILPOINTS_WRAP */
