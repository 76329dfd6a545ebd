// SPDX-License-Identifier: MIT
/*
 * iovad-example-client - a client of the iovad daemon, as an RDMA
 * application would be: allocate memory, map it with the IOVA API, let the
 * (simulated) device DMA into it, check the bytes, unmap, print counters.
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

int main(int argc, char **argv)
{
	struct iovad *c;

	CHECK(iovad_connect(argc > 1 ? argv[1] : NULL, &c));
	printf("connected: session %" PRIu64 "\n", iovad_session_id(c));
	run(c, "sim0", 0x2345, 5 * 4096 + 0x321);
	run(c, "untrusted0", 0x40123, 3 * 4096 + 0x10);
	run(c, "sim64k0", 0, 3 * 65536);
	iovad_disconnect(c);
	printf("example: ok\n");
	return 0;
}
