/* SPDX-License-Identifier: MIT */
/*
 * failpoint.h - fault injection for tests: make an allocation, an io_uring
 * submission or a journal write fail on purpose.
 *
 * Armed from the environment at start (IOVAD_FAILPOINTS, see failpoint.c
 * and docs/reliability.md), never from a client. Unarmed, a site costs one
 * predictable branch on a global that is always false.
 */
#ifndef IOVAD_DAEMON_FAILPOINT_H
#define IOVAD_DAEMON_FAILPOINT_H

#include <stdbool.h>

enum fp_site {
	FP_ALLOC = 0,      /* malloc/calloc/realloc/aligned_alloc (the daemon's own calls) */
	FP_URING_SUBMIT,   /* io_uring_submit of the socket transport */
	FP_JOURNAL_WRITE,  /* the journal's write of a commit */
	FP_JOURNAL_SYNC,   /* the journal's fdatasync of a commit */
	FP_LINK_RUN,       /* a merged run of LINKs: the merged call fails, they go one by one */
	FP__MAX,
};

extern bool fp_armed;

/* Parse IOVAD_FAILPOINTS. Return: 0, or -EINVAL with a message on stderr. */
int fp_init(void);
/* Should this call at site fail now? Counts the hit either way. */
bool fp_hit_slow(enum fp_site site);
static inline bool fp_hit(enum fp_site site)
{
	return __builtin_expect(fp_armed, 0) && fp_hit_slow(site);
}
/* How many times site was hit and how many of those were failed (for the log). */
void fp_counts(enum fp_site site, unsigned long *hits, unsigned long *fails);
const char *fp_site_name(enum fp_site site);

#endif /* IOVAD_DAEMON_FAILPOINT_H */
