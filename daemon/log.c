// SPDX-License-Identifier: MIT
/*
 * log.c - logging to stderr with sd-daemon(3) "<N>" priority prefixes, which
 * journald turns into priorities when the daemon runs under systemd.
 */
#include <stdio.h>

#include "internal.h"

static int max_level = LOG_NOTICE_;

void log_set_level(int level)
{
	if (level < LOG_ERR_)
		level = LOG_ERR_;
	if (level > LOG_DEBUG_)
		level = LOG_DEBUG_;
	max_level = level;
}

int log_get_level(void)
{
	return max_level;
}

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line, so lines from a crash-time dump never interleave. */
	fprintf(stderr, "<%d>%s\n", level, line);
}
