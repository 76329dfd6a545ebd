// SPDX-License-Identifier: MIT
/*
 * bench-domain - in-process benchmark of the domain engine.
 *
 * Not a test: it prints the median (and min/max) ns per operation over
 * repeated rounds, next to the targets from the issue and the published
 * in-kernel figures in docs/SEMANTICS.md. Each round times a batch of
 * operations with one clock read at each end, so clock overhead is amortised.
 *
 * Usage: bench-domain [--rounds N] [--quick] [--csv FILE]
 *
 * --csv FILE appends every median as a row for bench/run-all, in the
 * columns of bench/common.h's fig_row(): bench,metric,placement,value,unit,
 * baseline,ratio,target (here the baseline is the target, so the ratio is
 * median / target).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain.h"

#define SZ_4K UINT64_C(0x1000)
#define SZ_1M (UINT64_C(1) << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct result {
	const char *key;   /* the metric's name in the CSV */
	const char *name;
	double target;     /* ns; 0 = none */
	const char *kernel;
	double med, min, max;
};

static void summarise(struct result *r, double *samples, int n)
{
	qsort(samples, (size_t)n, sizeof(*samples), cmp_double);
	r->min = samples[0];
	r->max = samples[n - 1];
	r->med = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

static void die(const char *what, int r)
{
	fprintf(stderr, "bench-domain: %s failed: %s\n", what, strerror(-r));
	exit(1);
}

#define CHECK(expr)                       \
	do {                              \
		int r_ = (expr);          \
		if (r_)                   \
			die(#expr, r_);   \
	} while (0)

struct env {
	struct pmem_space pmem;
	struct dom_domain *dom;
	struct dom_device *dev;
	struct pmem_obj *mem;
};

static void env_init(struct env *e, uint64_t mem_size, bool no_blocks)
{
	CHECK(pmem_space_init(&e->pmem));
	CHECK(dom_domain_create(&e->pmem, &(struct dom_config){ .no_blocks = no_blocks }, &e->dom));
	CHECK(dom_device_create(e->dom, &(struct dom_device_config){ .name = "sim0" }, &e->dev));
	CHECK(pmem_obj_create(&e->pmem, mem_size, "bench", &e->mem));
}

static void env_fini(struct env *e)
{
	dom_device_destroy(e->dev);
	dom_domain_destroy(e->dom);
	pmem_space_fini(&e->pmem);
}

/* Raw allocator: iova_alloc + iova_free of one granule (magazine steady state). */
static double round_iova_raw(struct env *e, int ops)
{
	uint64_t t0, pfn;

	t0 = now_ns();
	for (int i = 0; i < ops; i++) {
		if (iova_alloc(&e->dom->iovad, 1, UINT32_MAX >> 12, &pfn))
			die("iova_alloc", -ENOMEM);
		iova_free(&e->dom->iovad, pfn, 1);
	}
	return (double)(now_ns() - t0) / ops;
}

/* The API pair: dma_iova_try_alloc + dma_iova_free of one 4 KiB page. */
static double round_iova_api(struct env *e, int ops)
{
	struct dma_iova_state st;
	uint64_t t0 = now_ns();

	for (int i = 0; i < ops; i++) {
		if (!dma_iova_try_alloc(e->dev, &st, 0, SZ_4K))
			die("dma_iova_try_alloc", -ENOMEM);
		CHECK(dma_iova_free(e->dev, &st));
	}
	return (double)(now_ns() - t0) / ops;
}

/* link + sync of one page at a time over a big state; unlink is not timed. */
static double round_link_sync_1(struct env *e, struct dma_iova_state *st, int ops)
{
	uint64_t t0 = now_ns(), t;

	for (int i = 0; i < ops; i++) {
		CHECK(dma_iova_link(e->dev, st, e->mem->phys + (uint64_t)i * SZ_4K,
				    (uint64_t)i * SZ_4K, SZ_4K, DMA_BIDIRECTIONAL, 0));
		CHECK(dma_iova_sync(e->dev, st, (uint64_t)i * SZ_4K, SZ_4K));
	}
	t = now_ns() - t0;
	CHECK(dma_iova_unlink(e->dev, st, 0, (uint64_t)ops * SZ_4K, DMA_BIDIRECTIONAL, 0));
	return (double)t / ops;
}

/* link of 256 pages then one sync, and the matching unlink, per 1 MiB chunk. */
static void round_256(struct env *e, struct dma_iova_state *st, int chunks, double *link_ns,
		      double *unlink_ns)
{
	uint64_t t0 = now_ns(), t1;

	for (int i = 0; i < chunks; i++) {
		uint64_t off = (uint64_t)i * SZ_1M;

		CHECK(dma_iova_link(e->dev, st, e->mem->phys + off, off, SZ_1M,
				    DMA_BIDIRECTIONAL, 0));
		CHECK(dma_iova_sync(e->dev, st, off, SZ_1M));
	}
	t1 = now_ns();
	for (int i = 0; i < chunks; i++)
		CHECK(dma_iova_unlink(e->dev, st, (uint64_t)i * SZ_1M, SZ_1M, DMA_BIDIRECTIONAL,
				      0));
	*link_ns = (double)(t1 - t0) / chunks;
	*unlink_ns = (double)(now_ns() - t1) / chunks;
}

/*
 * The same unlink, but the device has read every chunk first, so the IOTLB
 * holds entries inside each unlinked range and the flush must scan for them.
 */
static double round_256_warm_unlink(struct env *e, struct dma_iova_state *st, int chunks)
{
	uint64_t t0;
	uint8_t b;

	for (int i = 0; i < chunks; i++) {
		uint64_t off = (uint64_t)i * SZ_1M;

		CHECK(dma_iova_link(e->dev, st, e->mem->phys + off, off, SZ_1M,
				    DMA_BIDIRECTIONAL, 0));
		CHECK(dma_iova_sync(e->dev, st, off, SZ_1M));
		for (uint64_t p = 0; p < SZ_1M; p += 64 * SZ_4K)
			if (dom_dev_dma_read(e->dev, st->addr + off + p, &b, 1, NULL))
				die("dom_dev_dma_read", -EFAULT);
	}
	t0 = now_ns();
	for (int i = 0; i < chunks; i++)
		CHECK(dma_iova_unlink(e->dev, st, (uint64_t)i * SZ_1M, SZ_1M, DMA_BIDIRECTIONAL,
				      0));
	return (double)(now_ns() - t0) / chunks;
}

/* One 64-byte device read; hit: always the same page; miss: more pages than the IOTLB. */
static double round_dma(struct env *e, struct dma_iova_state *st, int ops, uint64_t npages)
{
	uint8_t buf[64];
	uint64_t t0 = now_ns();

	for (int i = 0; i < ops; i++) {
		uint64_t off = ((uint64_t)i % npages) * SZ_4K + 128;

		if (dom_dev_dma_read(e->dev, st->addr + off, buf, sizeof(buf), NULL))
			die("dom_dev_dma_read", -EFAULT);
	}
	return (double)(now_ns() - t0) / ops;
}

int main(int argc, char **argv)
{
	int rounds = 31, ops = 20000, chunks = 64;
	struct result res[] = {
		{ .key = "iova_alloc_free_ns", .name = "IOVA alloc + free (dma_iova_try_alloc + dma_iova_free)", .target = 50, .kernel = "0.1 us alloc (QEMU intel-iommu)" },
		{ .key = "iova_alloc_free_raw_ns", .name = "IOVA alloc + free (allocator only, magazine hit)", .target = 50, .kernel = "" },
		{ .key = "link_sync_1_ns", .name = "link + sync of one 4 KiB page", .target = 60, .kernel = "53 ns map (iommupt)" },
		{ .key = "link_256_sync_ns", .name = "link of 256 x 4 KiB, then one sync", .target = 400, .kernel = "380-386 ns map (iommupt)" },
		{ .key = "unlink_256_ns", .name = "unlink of those 256 pages (one flush)", .target = 400, .kernel = "353 ns unmap (iommupt)" },
		{ .key = "unlink_256_warm_ns", .name = "unlink of 256 pages the device had touched (IOTLB warm)", .target = 400, .kernel = "353 ns unmap (iommupt)" },
		{ .key = "dma_read_hit_ns", .name = "one translated 64 B DMA read, IOTLB hit", .target = 0, .kernel = "" },
		{ .key = "dma_read_miss_ns", .name = "one translated 64 B DMA read, IOTLB miss + walk", .target = 0, .kernel = "" },
	};
	const int nres = (int)(sizeof(res) / sizeof(res[0]));
	double *samples[sizeof(res) / sizeof(res[0])];
	struct dma_iova_state big, st256, dst;
	struct env e, dense;
	double table_per_page[2];
	FILE *csv = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			rounds = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--quick")) {
			rounds = 5;
			ops = 2000;
		} else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
			csv = fopen(argv[++i], "a");
			if (!csv) {
				perror(argv[i]);
				return 1;
			}
		} else {
			fprintf(stderr, "usage: %s [--rounds N] [--quick] [--csv FILE]\n", argv[0]);
			return 2;
		}
	}
	if (rounds < 1)
		rounds = 1;

	env_init(&e, (uint64_t)chunks * SZ_1M + (uint64_t)ops * SZ_4K, false);
	if (!dma_iova_try_alloc(e.dev, &big, 0, (uint64_t)ops * SZ_4K) ||
	    !dma_iova_try_alloc(e.dev, &st256, 0, (uint64_t)chunks * SZ_1M) ||
	    !dma_iova_try_alloc(e.dev, &dst, 0, 1024 * SZ_4K))
		die("setup", -ENOMEM);
	CHECK(dma_iova_link(e.dev, &dst, e.mem->phys, 0, 1024 * SZ_4K, DMA_BIDIRECTIONAL, 0));
	CHECK(dma_iova_sync(e.dev, &dst, 0, 1024 * SZ_4K));

	for (int i = 0; i < nres; i++)
		samples[i] = calloc((size_t)rounds, sizeof(double));

	/* Warm-up round, not recorded: fault in memfd pages and tables. */
	round_iova_api(&e, ops);
	round_link_sync_1(&e, &big, ops);
	round_256(&e, &st256, chunks, &samples[3][0], &samples[4][0]);

	for (int r = 0; r < rounds; r++) {
		samples[0][r] = round_iova_api(&e, ops);
		samples[1][r] = round_iova_raw(&e, ops);
		samples[2][r] = round_link_sync_1(&e, &big, ops);
		round_256(&e, &st256, chunks, &samples[3][r], &samples[4][r]);
		samples[5][r] = round_256_warm_unlink(&e, &st256, chunks);
		samples[6][r] = round_dma(&e, &dst, ops, 1);
		samples[7][r] = round_dma(&e, &dst, ops, 1024);
	}
	for (int i = 0; i < nres; i++) {
		summarise(&res[i], samples[i], rounds);
		free(samples[i]);
	}

	/* Table cost of a densely mapped page, 4 KiB leaves only (sparse memfd, never touched). */
	for (int k = 0; k < 2; k++) {
		uint64_t len = k ? SZ_1M << 10 : 64 * SZ_1M;
		struct dma_iova_state st;
		uint64_t before;

		env_init(&dense, len, true);
		before = dense.dom->pt.stats.table_bytes;
		if (!dma_iova_try_alloc(dense.dev, &st, 0, len))
			die("dense try_alloc", -ENOMEM);
		CHECK(dma_iova_link(dense.dev, &st, dense.mem->phys, 0, len, DMA_BIDIRECTIONAL, 0));
		table_per_page[k] = (double)(dense.dom->pt.stats.table_bytes - before) /
				    (double)(len / SZ_4K);
		env_fini(&dense);
	}

	printf("bench-domain: %d rounds, median of per-op means (ns); lower is better\n", rounds);
	printf("%-56s %9s %9s %9s %8s %7s  %s\n", "operation", "median", "min", "max", "target",
	       "ratio", "published in-kernel figure");
	for (int i = 0; i < nres; i++) {
		char tgt[16] = "-", ratio[16] = "-";

		if (res[i].target > 0) {
			snprintf(tgt, sizeof(tgt), "%.0f", res[i].target);
			snprintf(ratio, sizeof(ratio), "%.2f", res[i].med / res[i].target);
		}
		printf("%-56s %9.1f %9.1f %9.1f %8s %7s  %s\n", res[i].name, res[i].med, res[i].min,
		       res[i].max, tgt, ratio, res[i].kernel);
		if (csv)
			fprintf(csv, "bench-domain,%s,inprocess,%.4f,ns,%.4f,%.4f,%s\n", res[i].key,
				res[i].med, res[i].target,
				res[i].target > 0 ? res[i].med / res[i].target : 0.0,
				res[i].target > 0 ? "<=1" : "");
	}
	printf("%-56s %9.3f bytes over 64 MiB, %.3f over 1 GiB (target: about 8)\n",
	       "page-table memory per densely mapped 4 KiB page", table_per_page[0],
	       table_per_page[1]);
	if (csv) {
		fprintf(csv, "bench-domain,table_bytes_per_page_64m,inprocess,%.4f,B,0,0,\n",
			table_per_page[0]);
		fprintf(csv, "bench-domain,table_bytes_per_page_1g,inprocess,%.4f,B,0,0,\n",
			table_per_page[1]);
		fclose(csv);
	}
	env_fini(&e);
	return 0;
}
