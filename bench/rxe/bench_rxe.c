// SPDX-License-Identifier: MIT
/*
 * bench-rxe SOCKET RXE_DEVICE [--quick] - device DMA through iovad on a soft-RoCE device,
 * inside the rxe guest (bench/rxe/run.sh starts the daemon with sim0 and RXE_DEVICE,
 * [odp] fault_around = 4K, and compares with perftest on the same rxe0).
 *
 * One client allocates a memory object, try_alloc + link + sync all of it on RXE_DEVICE
 * (one MR) and on sim0 (the simulated device of the same daemon), then measures:
 *   1. bandwidth: iovad_dev_dma_write/read of CHUNK-byte calls over the whole object,
 *      MiB/s (2^20, perftest's unit), median of the rounds; libiovad cuts each call into
 *      frames (64 KiB by default), each one a socket round trip and, on rxe, RDMA ops
 *      through the daemon's bounce buffer on its loopback RC QP;
 *   2. latency: one 64-byte iovad_dev_dma_write/read, p50/p99 us. On sim0 the same call
 *      is the socket round trip plus a memcpy, so rxe minus sim0 is the RDMA part;
 *   3. first touch of an ODP region (fault_around 4K: a 64-byte read of a fresh page is
 *      one fault): on rxe it is emulated (remote access error, QP recovery, fault service,
 *      MR registration, retry); against the same read once mapped, and sim0 for scale.
 * Round 0 of every part is an untimed warm-up. Prints figures and key=value lines for
 * run.sh; exits non-zero only when an operation fails, never on timing. Part 3 failing
 * prints why and is not fatal (ODP on rxe is the newest path).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "bench-rxe"
#include "../common.h"
#include <iovad/iovad.h>

#define SZ_4K	4096u
#define SMALL	64u
#define CHUNK	(1u << 20)	/* bytes per iovad_dev_dma_* call in part 1 */
#define MAX_ROUNDS 16
#define RIGHTS	(IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE)

struct opts {
	const char *sock, *rxe;
	size_t bytes;		/* the linked object (part 1) */
	int bw_rounds;
	int lat_iters;
	uint32_t odp_pages;	/* pages touched per round (part 3) */
	int odp_rounds;
};

struct target {
	const char *name;
	struct iovad_dev *dev;
	struct iovad_iova_state st;
};

static struct iovad *conn;
static struct iovad_mem *mem;
static uint8_t *cpu;

/* ---- statistics ---------------------------------------------------------------------- */

/* Nearest-rank quantile q of n sorted samples. */
static uint64_t quant(const uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n + 0.999999);

	return v[i ? (i > n ? n : i) - 1 : 0];
}

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

static const char *ename(int r)
{
	const char *n = r < 0 ? strerrorname_np(-r) : NULL;

	return r == 0 ? "0" : n ? n : "?";
}

/* ---- setup --------------------------------------------------------------------------- */

static void link_all(struct target *t, const char *name, size_t bytes)
{
	uint64_t phys = iovad_mem_phys(mem);
	int r;

	t->name = name;
	if ((r = iovad_dev_open(conn, name, &t->dev)))
		die(name, r);
	if (!iovad_iova_try_alloc(t->dev, &t->st, phys, bytes))
		die("try_alloc", ENOSPC);
	if ((r = iovad_iova_link(t->dev, &t->st, phys, 0, bytes, IOVAD_DMA_BIDIRECTIONAL, 0)))
		die("link", r);
	if ((r = iovad_iova_sync(t->dev, &t->st, 0, bytes)))
		die("sync", r);
}

/* ---- 1. bandwidth -------------------------------------------------------------------- */

struct bw {
	double write, read;	/* MiB/s, medians */
};

static uint64_t bw_pass(const struct target *t, bool write, uint8_t *buf, size_t bytes)
{
	uint64_t t0 = now_ns();

	for (size_t off = 0; off < bytes; off += CHUNK) {
		size_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
		int r = write ? iovad_dev_dma_write(t->dev, t->st.addr + off, buf, n) :
				iovad_dev_dma_read(t->dev, t->st.addr + off, buf, n);

		if (r)
			die(write ? "dev_dma_write" : "dev_dma_read", r);
	}
	return now_ns() - t0;
}

static void bw_run(const struct opts *o, const struct target *t, struct bw *res)
{
	uint8_t *src = malloc(CHUNK), *dst = malloc(CHUNK);
	uint64_t w[MAX_ROUNDS], rd[MAX_ROUNDS];
	double mib = (double)o->bytes / (1 << 20);

	if (!src || !dst)
		die("buffers", ENOMEM);
	for (uint32_t i = 0; i < CHUNK; i++)
		src[i] = (uint8_t)(i * 13 + (i >> 10) + (t->name[0]));
	/* warm-up, and the bytes must land: the object is src over and over */
	bw_pass(t, true, src, o->bytes);
	for (size_t off = 0; off < o->bytes; off += CHUNK) {
		size_t n = o->bytes - off < CHUNK ? o->bytes - off : CHUNK;

		if (memcmp(cpu + off, src, n))
			die("a DMA write did not land in the client's memory", EIO);
	}
	bw_pass(t, false, dst, o->bytes);
	if (memcmp(dst, src, o->bytes < CHUNK ? o->bytes : CHUNK))
		die("a DMA read returned the wrong bytes", EIO);
	for (int i = 0; i < o->bw_rounds; i++) {
		w[i] = bw_pass(t, true, src, o->bytes);
		rd[i] = bw_pass(t, false, dst, o->bytes);
	}
	res->write = mib / (median(w, o->bw_rounds) / 1e9);
	res->read = mib / (median(rd, o->bw_rounds) / 1e9);
	free(src);
	free(dst);
}

/* ---- 2. small-DMA latency ------------------------------------------------------------ */

struct lat {
	uint64_t write[2], read[2];	/* p50, p99 ns */
};

static void lat_run(const struct opts *o, const struct target *t, struct lat *res)
{
	size_t n = (size_t)o->lat_iters;
	uint64_t *w = calloc(n, sizeof(*w)), *rd = calloc(n, sizeof(*rd));
	uint8_t buf[SMALL];
	int warm = o->lat_iters / 10 + 1;

	if (!w || !rd)
		die("samples", ENOMEM);
	memset(buf, 0x3c, sizeof(buf));
	for (int i = -warm; i < o->lat_iters; i++) {
		/* a different cache line each time, inside the first MiB */
		uint64_t iova = t->st.addr + ((uint64_t)(i + warm) * 4160u) % (CHUNK - SMALL), t0,
			 t1, t2;
		int r;

		t0 = now_ns();
		r = iovad_dev_dma_write(t->dev, iova, buf, SMALL);
		t1 = now_ns();
		if (!r)
			r = iovad_dev_dma_read(t->dev, iova, buf, SMALL);
		t2 = now_ns();
		if (r)
			die("small DMA", r);
		if (i >= 0) {
			w[i] = t1 - t0;
			rd[i] = t2 - t1;
		}
	}
	qsort(w, n, sizeof(*w), cmp_u64);
	qsort(rd, n, sizeof(*rd), cmp_u64);
	res->write[0] = quant(w, n, 0.5);
	res->write[1] = quant(w, n, 0.99);
	res->read[0] = quant(rd, n, 0.5);
	res->read[1] = quant(rd, n, 0.99);
	free(w);
	free(rd);
}

/* ---- 3. ODP first touch -------------------------------------------------------------- */

struct ft {
	uint64_t first[2], mapped[2];	/* p50, p99 ns */
	uint64_t touches, handled;
};

static int touch(struct iovad_dev *dev, uint64_t iova, uint8_t want)
{
	uint8_t buf[SMALL];
	int r = iovad_dev_dma_read(dev, iova, buf, sizeof(buf));

	return r ? r : buf[0] == want ? 0 : -EIO;
}

/* The region maps bytes [off, off + pages * 4K) of the object. 0 or the failure. */
static int ft_run(const struct opts *o, struct iovad_dev *dev, uint64_t off, struct ft *res,
		  const char **what)
{
	size_t n = (size_t)o->odp_rounds * o->odp_pages, i = 0;
	size_t len = (size_t)o->odp_pages * SZ_4K;
	uint64_t *first = calloc(n, sizeof(*first)), *mapped = calloc(n, sizeof(*mapped));
	struct iovad_odp_stats st = { 0 }, st0 = { 0 };
	struct iovad_odp *odp;
	int r;

	if (!first || !mapped)
		die("samples", ENOMEM);
	memset(cpu + off, 0x77, len);
	*what = "odp_reg";
	if ((r = iovad_odp_reg(dev, mem, off, len, RIGHTS, 0, &odp)))
		goto out;
	for (int round = -1; round < o->odp_rounds && !r; round++) {
		for (uint32_t p = 0; p < o->odp_pages; p++) {
			uint64_t iova = iovad_odp_iova(odp) + (uint64_t)p * SZ_4K + 128, t0, t1, t2;

			t0 = now_ns();
			*what = "first-touch read";
			if ((r = touch(dev, iova, 0x77)))
				break;
			t1 = now_ns();
			*what = "mapped read";
			if ((r = touch(dev, iova, 0x77)))
				break;
			t2 = now_ns();
			if (round >= 0) {
				first[i] = t1 - t0;
				mapped[i++] = t2 - t1;
			}
		}
		*what = "odp_invalidate";
		if (!r)
			r = iovad_odp_invalidate(odp, 0, len);	/* untimed: fault again */
		if (!r && round < 0)
			r = iovad_odp_stats(odp, &st0);
	}
	if (!r) {
		*what = "odp_stats";
		r = iovad_odp_stats(odp, &st);
	}
	iovad_odp_dereg(odp);
	if (r)
		goto out;
	qsort(first, n, sizeof(*first), cmp_u64);
	qsort(mapped, n, sizeof(*mapped), cmp_u64);
	res->first[0] = quant(first, n, 0.5);
	res->first[1] = quant(first, n, 0.99);
	res->mapped[0] = quant(mapped, n, 0.5);
	res->mapped[1] = quant(mapped, n, 0.99);
	res->touches = n;
	res->handled = st.page_faults_handled - st0.page_faults_handled;
out:
	free(first);
	free(mapped);
	return r;
}

/* ---- main ---------------------------------------------------------------------------- */

static void row(const char *what, const char *unit, double a, double b)
{
	printf("  %-50s %10.2f %10.2f  %s\n", what, a, b, unit);
}

int main(int argc, char **argv)
{
	struct opts o = { .bytes = 64u << 20, .bw_rounds = 5, .lat_iters = 2000,
			  .odp_pages = 64, .odp_rounds = 4 };
	struct target rxe, sim;
	struct bw bwr, bws;
	struct lat lr, ls;
	struct ft fr, fs;
	const char *what_r = "", *what_s = "";
	uint64_t odp_off;
	int r, rr, rs;

	if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--quick"))) {
		fprintf(stderr, "usage: bench-rxe SOCKET RXE_DEVICE [--quick]\n");
		return 2;
	}
	o.sock = argv[1];
	o.rxe = argv[2];
	if (argc == 4)
		o = (struct opts){ .sock = o.sock, .rxe = o.rxe, .bytes = 4u << 20,
				   .bw_rounds = 3, .lat_iters = 200, .odp_pages = 16,
				   .odp_rounds = 2 };
	odp_off = o.bytes;
	if ((r = iovad_connect(o.sock, &conn)) ||
	    (r = iovad_mem_alloc(conn, o.bytes + (size_t)o.odp_pages * SZ_4K * 2, &mem)))
		die("connect", r);
	cpu = iovad_mem_addr(mem);
	/* resident before anything: the page faults measured are the IOMMU's, not the CPU's */
	memset(cpu, 0, o.bytes + (size_t)o.odp_pages * SZ_4K * 2);
	link_all(&rxe, o.rxe, o.bytes);
	link_all(&sim, "sim0", o.bytes);

	printf("bench-rxe: %zu MiB linked + synced on %s (iova %#" PRIx64 ") and on sim0; "
	       "%d rounds of %u-byte calls, %d small DMAs, ODP %u pages x %d rounds\n",
	       o.bytes >> 20, o.rxe, rxe.st.addr, o.bw_rounds, CHUNK, o.lat_iters, o.odp_pages,
	       o.odp_rounds);
	bw_run(&o, &rxe, &bwr);
	bw_run(&o, &sim, &bws);
	lat_run(&o, &rxe, &lr);
	lat_run(&o, &sim, &ls);
	rr = ft_run(&o, rxe.dev, odp_off, &fr, &what_r);
	rs = ft_run(&o, sim.dev, odp_off + (size_t)o.odp_pages * SZ_4K, &fs, &what_s);

	printf("\n%-52s %10s %10s\n", "1. bandwidth, median", o.rxe, "sim0");
	row("device DMA WRITE through iovad", "MiB/s", bwr.write, bws.write);
	row("device DMA READ through iovad", "MiB/s", bwr.read, bws.read);
	printf("\n%-52s %10s %10s\n", "2. one 64-byte DMA (socket round trip + device)", "p50",
	       "p99");
	row("rxe write", "us", us(lr.write[0]), us(lr.write[1]));
	row("rxe read", "us", us(lr.read[0]), us(lr.read[1]));
	row("sim0 write", "us", us(ls.write[0]), us(ls.write[1]));
	row("sim0 read", "us", us(ls.read[0]), us(ls.read[1]));
	row("rxe - sim0, write | read p50: the RDMA part", "us",
	    us(lr.write[0]) - us(ls.write[0]), us(lr.read[0]) - us(ls.read[0]));
	row("rxe / sim0, write | read p50", "",
	    (double)lr.write[0] / (double)ls.write[0], (double)lr.read[0] / (double)ls.read[0]);
	printf("\n%-52s %10s %10s\n", "3. ODP first touch: 64-byte read, fault_around 4K", "p50",
	       "p99");
	if (rr) {
		printf("  %s: not measured: %s failed: %s\n", o.rxe, what_r, ename(rr));
	} else {
		row("rxe: first touch (emulated fault + retry)", "us", us(fr.first[0]),
		    us(fr.first[1]));
		row("rxe: same read once mapped", "us", us(fr.mapped[0]), us(fr.mapped[1]));
		if (fr.handled != fr.touches)
			printf("  note: %" PRIu64 " timed first touches, %" PRIu64
			       " faults served\n", fr.touches, fr.handled);
	}
	if (rs) {
		printf("  sim0: not measured: %s failed: %s\n", what_s, ename(rs));
	} else {
		row("sim0: first touch (fault service + retry)", "us", us(fs.first[0]),
		    us(fs.first[1]));
		row("sim0: same read once mapped", "us", us(fs.mapped[0]), us(fs.mapped[1]));
	}

	/* key=value lines for run.sh */
	printf("\nbench_rxe_bytes=%zu\n", o.bytes);
	printf("rxe_write_mibs=%.1f\nrxe_read_mibs=%.1f\nsim_write_mibs=%.1f\nsim_read_mibs=%.1f\n",
	       bwr.write, bwr.read, bws.write, bws.read);
	printf("rxe_write64_p50_us=%.2f\nrxe_write64_p99_us=%.2f\n", us(lr.write[0]),
	       us(lr.write[1]));
	printf("rxe_read64_p50_us=%.2f\nrxe_read64_p99_us=%.2f\n", us(lr.read[0]), us(lr.read[1]));
	printf("sim_write64_p50_us=%.2f\nsim_write64_p99_us=%.2f\n", us(ls.write[0]),
	       us(ls.write[1]));
	printf("sim_read64_p50_us=%.2f\nsim_read64_p99_us=%.2f\n", us(ls.read[0]), us(ls.read[1]));
	if (!rr)
		printf("rxe_odp_first_p50_us=%.2f\nrxe_odp_first_p99_us=%.2f\n"
		       "rxe_odp_mapped_p50_us=%.2f\nrxe_odp_mapped_p99_us=%.2f\n",
		       us(fr.first[0]), us(fr.first[1]), us(fr.mapped[0]), us(fr.mapped[1]));
	if (!rs)
		printf("sim_odp_first_p50_us=%.2f\nsim_odp_first_p99_us=%.2f\n",
		       us(fs.first[0]), us(fs.first[1]));

	iovad_iova_destroy(rxe.dev, &rxe.st, o.bytes, IOVAD_DMA_BIDIRECTIONAL, 0);
	iovad_iova_destroy(sim.dev, &sim.st, o.bytes, IOVAD_DMA_BIDIRECTIONAL, 0);
	iovad_mem_free(mem);
	iovad_disconnect(conn);
	return 0;
}
