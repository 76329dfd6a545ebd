/* SPDX-License-Identifier: MIT */
/*
 * tap.h - TAP output for the programs that run inside the rxe guest: one
 * "ok N - ..." or "not ok N - ..." line per check, flushed at once so that
 * a guest that dies mid-run still shows how far it got; tests/rxe/run.sh
 * adds the lines up against each program's "1..N" plan.
 */
#ifndef IOVAD_TESTS_RXE_TAP_H
#define IOVAD_TESTS_RXE_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static int tap_test_no, tap_failures;

static void __attribute__((format(printf, 2, 3), unused)) tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	tap_test_no++;
	tap_failures += !ok;
	printf("%sok %d - ", ok ? "" : "not ", tap_test_no);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* The summary line; the exit status: 0 only if all plan checks ran and passed. */
static int __attribute__((unused)) tap_done(const char *name, int plan)
{
	printf("# %s: %d of %d checks failed\n", name, tap_failures, tap_test_no);
	return tap_failures || tap_test_no != plan;
}

#endif /* IOVAD_TESTS_RXE_TAP_H */
