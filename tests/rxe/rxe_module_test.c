// SPDX-License-Identifier: MIT
/*
 * rxe_module_test - daemon/rxe.c against real rxe, inside the guest (tests/rxe/vm.sh). TAP.
 *
 * Registration at a chosen IOVA; rxe_dma WRITE then READ through it, byte-exact, over more
 * than one bounce-buffer chunk; a read-only MR refuses a WRITE; an access outside every MR,
 * and one with an invalid rkey, give -EFAULT and the next good access works (the QPs were
 * recovered); after dereg the same access gives -EFAULT; an unknown device fails to open
 * with -ENODEV and a message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rxe.h"

#include "tap.h"

#define IOVA		0x2000000000ULL
#define MR_LEN		(1024 * 1024)
#define XFER		((int)RXE_BOUNCE_SIZE + 12345)	/* spans two chunks, odd tail */
#define OFF		(4096 + 17)			/* unaligned on both sides */
#define PLAN		12

static const char *ename(int r)
{
	const char *n = r < 0 ? strerrorname_np(-r) : NULL;

	return r == 0 ? "0" : n ? n : "?";
}

int main(void)
{
	const char *name = getenv("RXE_DEV") ? getenv("RXE_DEV") : "rxe0";
	uint8_t *mem, *src, *dst, *ro;
	struct rxe_mr *mr, *romr;
	struct rxe_dev *d, *nd;
	char err[256] = "";
	bool same;
	int r;

	printf("1..%d\n", PLAN);
	r = rxe_open("nosuchdev9", &nd, err, sizeof(err));
	tap(r == -ENODEV && !nd && strstr(err, "nosuchdev9"),
	    "rxe_open(nosuchdev9): %s, \"%s\"", ename(r), err);

	r = rxe_open(name, &d, err, sizeof(err));
	tap(!r, "rxe_open(%s): %s%s%s", name, ename(r), r ? ": " : "", r ? err : "");
	if (r) {
		printf("Bail out! cannot open %s\n", name);
		return 1;
	}
	mem = aligned_alloc(4096, MR_LEN);
	ro = aligned_alloc(4096, 65536);
	src = malloc(XFER);
	dst = malloc(XFER);
	if (!mem || !ro || !src || !dst) {
		printf("Bail out! out of memory\n");
		return 1;
	}
	memset(mem, 0, MR_LEN);
	memset(ro, 0x5a, 65536);
	for (int i = 0; i < XFER; i++)
		src[i] = (uint8_t)(i * 7 + (i >> 11) + 1);

	r = rxe_mr_reg(d, mem, MR_LEN, IOVA, RXE_ACC_READ | RXE_ACC_WRITE, &mr);
	tap(!r, "rxe_mr_reg(%d bytes at iova 0x%llx, read+write): %s, rkey 0x%x", MR_LEN, IOVA,
	    ename(r), r ? 0 : rxe_mr_rkey(mr));
	if (r) {
		printf("Bail out! cannot register\n");
		return 1;
	}

	/* WRITE lands at mem + OFF exactly: nothing before or after it changes */
	r = rxe_dma(d, IOVA + OFF, rxe_mr_rkey(mr), src, XFER, true);
	same = !memcmp(mem + OFF, src, XFER);
	for (int i = 0; i < OFF && same; i++)
		same = !mem[i];
	for (int i = OFF + XFER; i < MR_LEN && same; i++)
		same = !mem[i];
	tap(!r && same, "rxe_dma WRITE %d bytes (2 chunks) to iova 0x%llx: %s, bytes %s", XFER,
	    IOVA + OFF, ename(r), same ? "exact" : "WRONG");

	r = rxe_dma(d, IOVA + OFF, rxe_mr_rkey(mr), dst, XFER, false);
	same = !memcmp(dst, src, XFER);
	tap(!r && same, "rxe_dma READ %d bytes back: %s, bytes %s", XFER, ename(r),
	    same ? "exact" : "WRONG");

	/* past the end of the MR (no other MR there) */
	r = rxe_dma(d, IOVA + MR_LEN - 100, rxe_mr_rkey(mr), src, 200, true);
	tap(r == -EFAULT, "rxe_dma WRITE across the end of the MR: %s (want EFAULT)", ename(r));
	memset(dst, 0, 4096);
	r = rxe_dma(d, IOVA + OFF, rxe_mr_rkey(mr), dst, 4096, false);
	tap(!r && !memcmp(dst, src, 4096), "next READ after the access error: %s (QPs recovered)",
	    ename(r));

	r = rxe_dma(d, IOVA, RXE_RKEY_INVALID, dst, 64, false);
	tap(r == -EFAULT, "rxe_dma READ with an invalid rkey: %s (want EFAULT)", ename(r));

	r = rxe_mr_reg(d, ro, 65536, IOVA + 2 * MR_LEN, RXE_ACC_READ, &romr);
	tap(!r, "rxe_mr_reg(read-only, at iova 0x%llx): %s", IOVA + 2 * MR_LEN, ename(r));
	if (!r) {
		int rw = rxe_dma(d, IOVA + 2 * MR_LEN, rxe_mr_rkey(romr), src, 64, true);

		memset(dst, 0, 64);
		r = rxe_dma(d, IOVA + 2 * MR_LEN, rxe_mr_rkey(romr), dst, 64, false);
		same = dst[0] == 0x5a && dst[63] == 0x5a && ro[0] == 0x5a;
		tap(rw == -EFAULT && !r && same,
		    "read-only MR: WRITE %s (want EFAULT), READ %s, memory %s", ename(rw),
		    ename(r), same ? "untouched" : "CHANGED");
		rxe_mr_dereg(romr);
	} else {
		tap(false, "read-only MR: not registered");
	}

	/* after dereg the same (iova, rkey) is refused, and the device still works */
	{
		uint32_t rkey = rxe_mr_rkey(mr);

		rxe_mr_dereg(mr);
		r = rxe_dma(d, IOVA + OFF, rkey, dst, 4096, false);
		tap(r == -EFAULT, "rxe_dma READ after dereg: %s (want EFAULT)", ename(r));
		r = rxe_mr_reg(d, mem, MR_LEN, IOVA, RXE_ACC_READ | RXE_ACC_WRITE, &mr);
		if (!r) {
			memset(dst, 0, 4096);
			r = rxe_dma(d, IOVA + OFF, rxe_mr_rkey(mr), dst, 4096, false);
			rxe_mr_dereg(mr);
		}
		tap(!r && !memcmp(dst, src, 4096), "re-register and READ again: %s", ename(r));
	}

	rxe_close(d);
	free(mem);
	free(ro);
	free(src);
	free(dst);
	return tap_done("rxe_module_test", PLAN);
}
