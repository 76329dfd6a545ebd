// SPDX-License-Identifier: MIT
/*
 * iovad-example-client - a client of the iovad daemon, as an RDMA
 * application would be: allocate memory, map it with the IOVA API, let the
 * (simulated) device DMA into it, check the bytes, unmap, print counters.
 * Then the same with on-demand paging: register a region that maps
 * nothing, let the device fault pages in, discard some and watch them
 * fault back in as zeros, print mlx5-style counters.
 *
 * Usage: iovad-example-client [SOCKET]   (default: $IOVAD_SOCKET, then
 * /run/iovad/iovad.sock). Exit status 0 only if every byte checked out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iovad/iovad.h>

#define CHECK(expr)                                                                     \
	do {                                                                            \
		int r_ = (expr);                                                        \
		if (r_ < 0) {                                                           \
			fprintf(stderr, "example: %s: %s\n", #expr, iovad_strerror(r_)); \
			exit(1);                                                        \
		}                                                                       \
	} while (0)

static void run(struct iovad *c, const char *devname, size_t off, size_t len)
{
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_iova_state st;
	struct iovad_dev_stats s;
	uint8_t *msg = malloc(len), *back = malloc(len);
	uint64_t phys;

	CHECK(iovad_dev_open(c, devname, &dev));
	CHECK(iovad_mem_alloc(c, 1 << 20, &mem));
	phys = iovad_mem_phys(mem) + off;
	for (size_t i = 0; i < len; i++)
		msg[i] = (uint8_t)(i * 31 + 7);

	printf("%s: merge boundary %#" PRIx64 "\n", devname, iovad_get_merge_boundary(dev));
	if (!iovad_iova_try_alloc(dev, &st, phys, len)) {
		fprintf(stderr, "example: try_alloc on %s: %s\n", devname, strerror(errno));
		exit(1);
	}
	printf("  try_alloc(phys %#" PRIx64 ", %zu bytes) -> iova %#" PRIx64 "\n", phys, len,
	       st.addr);
	CHECK(iovad_iova_link(dev, &st, phys, 0, len, IOVAD_DMA_BIDIRECTIONAL, 0));
	CHECK(iovad_iova_sync(dev, &st, 0, len));
	CHECK(iovad_dev_dma_write(dev, st.addr, msg, len));
	CHECK(iovad_dev_dma_read(dev, st.addr, back, len));
	CHECK(iovad_iova_destroy(dev, &st, len, IOVAD_DMA_BIDIRECTIONAL, 0));
	/* After the unmap (and, on an untrusted device, the bounce copy-back)... */
	if (memcmp((uint8_t *)iovad_mem_addr(mem) + off, msg, len) || memcmp(back, msg, len)) {
		fprintf(stderr, "example: %s: the bytes do not match\n", devname);
		exit(1);
	}
	printf("  the device wrote %zu bytes at the IOVA; the client sees them, byte for byte\n",
	       len);
	CHECK(iovad_dev_stats(dev, &s));
	printf("  counters: iova_allocs=%" PRIu64 " iova_frees=%" PRIu64 " links=%" PRIu64
	       " unlinks=%" PRIu64 " syncs=%" PRIu64 " iotlb_flushes=%" PRIu64
	       " bounced_bytes=%" PRIu64 " io_page_faults=%" PRIu64 "\n",
	       s.iova_allocs, s.iova_frees, s.links, s.unlinks, s.syncs, s.iotlb_flushes,
	       s.bounced_bytes, s.io_page_faults);
	iovad_mem_free(mem);
	iovad_dev_close(dev);
	free(msg);
	free(back);
}

/* On-demand paging: nothing is mapped until the device touches it. */
static void run_odp(struct iovad *c)
{
	const size_t len = 4u << 20, pg = 4096;
	struct iovad_odp_stats s;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_odp *odp;
	uint8_t *buf = malloc(64 * pg), *m;

	if (!buf)
		exit(1);
	CHECK(iovad_dev_open(c, "sim0", &dev));
	CHECK(iovad_mem_alloc(c, len, &mem));
	m = iovad_mem_addr(mem);
	for (size_t i = 0; i < len; i++)
		m[i] = (uint8_t)(i * 13 + 1);
	CHECK(iovad_odp_reg(dev, mem, 0, len, IOVAD_ACCESS_LOCAL_READ | IOVAD_ACCESS_DEVICE_READ |
			    IOVAD_ACCESS_DEVICE_WRITE, 0, &odp));
	printf("odp: region of %zu bytes at iova %#" PRIx64 ", nothing mapped\n", len,
	       iovad_odp_iova(odp));
	/* The device reads every 64 KiB window once: each read faults it in. */
	for (size_t off = 0; off < len; off += 16 * pg) {
		CHECK(iovad_dev_dma_read(dev, iovad_odp_iova(odp) + off, buf, pg));
		if (memcmp(buf, m + off, pg)) {
			fprintf(stderr, "example: odp read at %#zx: the bytes do not match\n", off);
			exit(1);
		}
	}
	/* Discard 64 pages: they are invalidated, and refault as zeros. */
	CHECK(iovad_mem_discard(mem, 0, 64 * pg));
	CHECK(iovad_dev_dma_read(dev, iovad_odp_iova(odp), buf, 64 * pg));
	for (size_t i = 0; i < 64 * pg; i++)
		if (buf[i]) {
			fprintf(stderr, "example: a discarded page is not zero\n");
			exit(1);
		}
	/* The device writes into a page it only read so far: upgraded in place. */
	memset(buf, 0xa5, pg);
	CHECK(iovad_dev_dma_write(dev, iovad_odp_iova(odp) + 100 * pg, buf, pg));
	if (memcmp(m + 100 * pg, buf, pg)) {
		fprintf(stderr, "example: the device's write is not in memory\n");
		exit(1);
	}
	CHECK(iovad_odp_stats(odp, &s));
	printf("  counters: page_faults=%" PRIu64 " page_faults_handled=%" PRIu64
	       " page_invalidations=%" PRIu64 " perm_upgrades=%" PRIu64 " syncs=%" PRIu64
	       " mapped=%" PRIu64 " fault p50=%" PRIu64 " ns p99=%" PRIu64 " ns\n",
	       s.page_faults, s.page_faults_handled, s.page_invalidations, s.perm_upgrades,
	       s.syncs, s.mapped_bytes, s.fault_p50_ns, s.fault_p99_ns);
	CHECK(iovad_odp_dereg(odp));
	iovad_mem_free(mem);
	iovad_dev_close(dev);
	free(buf);
}

int main(int argc, char **argv)
{
	struct iovad *c;

	CHECK(iovad_connect(argc > 1 ? argv[1] : NULL, &c));
	/* Requests go through shared-memory rings when the daemon offers them. */
	printf("connected: session %" PRIu64 ", requests over %s\n", iovad_session_id(c),
	       iovad_uses_rings(c) ? "shared-memory rings" : "the socket");
	run(c, "sim0", 0x2345, 5 * 4096 + 0x321);
	run(c, "untrusted0", 0x40123, 3 * 4096 + 0x10);
	run(c, "sim64k0", 0, 3 * 65536);
	run_odp(c);
	iovad_disconnect(c);
	printf("example: ok\n");
	return 0;
}
