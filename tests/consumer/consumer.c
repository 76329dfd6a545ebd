// SPDX-License-Identifier: MIT
/*
 * consumer - a program built against an installed libiovad, as a user
 * would build it (pkg-config or find_package(iovad)); run.sh drives it.
 *
 * Connects via $IOVAD_SOCKET, opens sim0, allocates memory, maps it with
 * the IOVA API (try_alloc, link, sync), lets the device write and reads it
 * back, checks the bytes, destroys the mapping. Prints "consumer: ok" and
 * exits 0; any failure prints iovad_strerror() and exits 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iovad/iovad.h>

#define LEN (3 * 4096 + 0x123)
#define OFF 0x1234

#define CHECK(expr)                                                                   \
	do {                                                                          \
		int r_ = (expr);                                                      \
		if (r_ < 0) {                                                         \
			fprintf(stderr, "consumer: %s: %s\n", #expr, iovad_strerror(r_)); \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

int main(void)
{
	static uint8_t msg[LEN], back[LEN];
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_iova_state st;
	uint64_t phys;

	if (!getenv("IOVAD_SOCKET")) {
		fprintf(stderr, "consumer: IOVAD_SOCKET is not set\n");
		return 1;
	}
	CHECK(iovad_connect(NULL, &c));
	CHECK(iovad_dev_open(c, "sim0", &dev));
	CHECK(iovad_mem_alloc(c, 1 << 20, &mem));
	phys = iovad_mem_phys(mem) + OFF;
	for (size_t i = 0; i < LEN; i++)
		msg[i] = (uint8_t)(i * 31 + 7);

	if (!iovad_iova_try_alloc(dev, &st, phys, LEN)) {
		fprintf(stderr, "consumer: iovad_iova_try_alloc: %s\n", iovad_strerror(-errno));
		return 1;
	}
	CHECK(iovad_iova_link(dev, &st, phys, 0, LEN, IOVAD_DMA_BIDIRECTIONAL, 0));
	CHECK(iovad_iova_sync(dev, &st, 0, LEN));
	CHECK(iovad_dev_dma_write(dev, st.addr, msg, LEN));
	CHECK(iovad_dev_dma_read(dev, st.addr, back, LEN));
	CHECK(iovad_iova_destroy(dev, &st, LEN, IOVAD_DMA_BIDIRECTIONAL, 0));
	if (memcmp(back, msg, LEN) || memcmp((uint8_t *)iovad_mem_addr(mem) + OFF, msg, LEN)) {
		fprintf(stderr, "consumer: the bytes do not match: %s\n", iovad_strerror(-EIO));
		return 1;
	}
	iovad_mem_free(mem);
	iovad_dev_close(dev);
	iovad_disconnect(c);
	printf("consumer: ok\n");
	return 0;
}
