// SPDX-License-Identifier: MIT
/*
 * rxe_client SOCKET DEVICE - a libiovad client of a daemon whose DEVICE has backend = rxe,
 * inside the rxe guest (tests/rxe/daemon_test.sh starts the daemon). TAP.
 *
 * Two adjacent links, DMA before sync faults, sync registers them as ONE MR (rdma resource
 * show counts the daemon's MRs), device DMA through rxe is byte-exact in the client's own
 * mapping, unlinking half keeps the other half reachable (re-registered), unlinking the rest
 * deregisters everything and the same DMA faults.
 *
 * Then ODP emulated on an rxe without ODP: a region maps (registers) nothing, a device read
 * faults in a window through the fault service (one MR, the counters as on sim), a discard
 * takes the MR away and the next read faults again and sees zeros, a device write upgrades
 * the read-only window in place (a new MR with write access) and lands byte for byte, and
 * dereg leaves no MR behind.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iovad/iovad.h>

#define HALF	(32 * 1024)
#define LEN	(2 * HALF)
#define PLAN	24
#define ODP_OFF	(256 * 1024)	/* the ODP region's bytes of the memory object */
#define ODP_LEN	(256 * 1024)
#define WINDOW	(64 * 1024)	/* the daemon's default fault-around window */

static int test_no, failures;

static void __attribute__((format(printf, 2, 3))) tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	test_no++;
	failures += !ok;
	printf("%sok %d - ", ok ? "" : "not ", test_no);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* MRs the kernel holds for processes named iovad (rdma resource show mr). */
static int daemon_mrs(void)
{
	FILE *p = popen("rdma resource show mr 2>/dev/null", "r");
	char line[512];
	int n = 0;

	if (!p)
		return -1;
	while (fgets(line, sizeof(line), p))
		n += strstr(line, "comm iovad") != NULL;
	return pclose(p) ? -1 : n;
}

static const char *ename(int r)
{
	const char *n = r < 0 ? strerrorname_np(-r) : NULL;

	return r == 0 ? "0" : n ? n : "?";
}

int main(int argc, char **argv)
{
	uint8_t *src = malloc(LEN), *dst = malloc(LEN), *cpu;
	struct iovad_iova_state st;
	struct iovad_fault f = { 0 };
	struct iovad_mem *mem;
	struct iovad_dev *dev;
	struct iovad *c;
	uint64_t phys;
	int r, base, n;
	bool same;

	if (argc != 3 || !src || !dst) {
		fprintf(stderr, "usage: rxe_client SOCKET DEVICE\n");
		return 2;
	}
	printf("1..%d\n", PLAN);
	for (int i = 0; i < LEN; i++)
		src[i] = (uint8_t)(i * 11 + (i >> 9) + 3);
	r = iovad_connect(argv[1], &c);
	if (!r)
		r = iovad_dev_open(c, argv[2], &dev);
	if (!r)
		r = iovad_mem_alloc(c, 1 << 20, &mem);
	tap(!r, "connect, open %s, 1 MiB of memory: %s", argv[2], ename(r));
	if (r) {
		printf("Bail out! no session\n");
		return 1;
	}
	cpu = iovad_mem_addr(mem);
	phys = iovad_mem_phys(mem) + 0x10000;
	base = daemon_mrs();

	/* two links adjacent in IOVA and phys: one MR at sync */
	r = iovad_iova_try_alloc(dev, &st, phys, LEN) ? 0 : -ENOSPC;
	if (!r)
		r = iovad_iova_link(dev, &st, phys, 0, HALF, IOVAD_DMA_BIDIRECTIONAL, 0);
	if (!r)
		r = iovad_iova_link(dev, &st, phys + HALF, HALF, HALF, IOVAD_DMA_BIDIRECTIONAL, 0);
	tap(!r, "try_alloc %d bytes -> iova %#llx, two links of %d: %s", LEN,
	    (unsigned long long)st.addr, HALF, ename(r));

	r = iovad_dev_dma_write(dev, st.addr, src, 64);
	iovad_dev_last_fault(dev, &f);
	tap(r == -EFAULT && f.reason == 1, "DMA write before sync: %s, fault reason %u",
	    ename(r), f.reason);
	n = daemon_mrs();
	tap(n == base && base >= 1, "before sync the daemon holds %d MR(s) (its bounce buffer)", n);

	r = iovad_iova_sync(dev, &st, 0, LEN);
	n = daemon_mrs();
	tap(!r && n == base + 1, "sync: %s, MRs %d -> %d (both links in one MR)", ename(r), base,
	    n);

	/* across the two link records, unaligned */
	r = iovad_dev_dma_write(dev, st.addr + 100, src, LEN - 200);
	same = !memcmp(cpu + 0x10000 + 100, src, LEN - 200) && !cpu[0x10000 + 99];
	tap(!r && same, "DMA write %d bytes through rxe: %s, client's mapping %s", LEN - 200,
	    ename(r), same ? "byte-exact" : "WRONG");
	memset(dst, 0, LEN);
	r = iovad_dev_dma_read(dev, st.addr + 100, dst, LEN - 200);
	tap(!r && !memcmp(dst, src, LEN - 200), "DMA read back: %s, bytes %s", ename(r),
	    memcmp(dst, src, LEN - 200) ? "WRONG" : "exact");

	/* unlink the second half: its MR goes, the first half is registered again */
	r = iovad_iova_unlink(dev, &st, HALF, HALF, IOVAD_DMA_BIDIRECTIONAL, 0);
	n = daemon_mrs();
	tap(!r && n == base + 1, "unlink the second half: %s, MRs %d", ename(r), n);
	r = iovad_dev_dma_read(dev, st.addr + 200, dst, 64);
	tap(!r && !memcmp(dst, src + 100, 64), "DMA read in the first half: %s", ename(r));
	r = iovad_dev_dma_read(dev, st.addr + HALF, dst, 64);
	iovad_dev_last_fault(dev, &f);
	tap(r == -EFAULT && f.reason == 1, "DMA read in the unlinked half: %s, reason %u",
	    ename(r), f.reason);
	r = iovad_dev_dma_read(dev, st.addr + HALF - 32, dst, 64);
	tap(r == -EFAULT, "DMA read across the edge: %s", ename(r));

	r = iovad_iova_unlink(dev, &st, 0, HALF, IOVAD_DMA_BIDIRECTIONAL, 0);
	n = daemon_mrs();
	tap(!r && n == base, "unlink the rest: %s, MRs %d (back to %d)", ename(r), n, base);
	r = iovad_dev_dma_write(dev, st.addr + 8, src, 64);
	tap(r == -EFAULT, "DMA write after unlink: %s", ename(r));

	/* ODP: nothing registered until the device touches it */
	struct iovad_odp *odp = NULL;
	struct iovad_odp_stats os = { 0 };
	uint64_t oiova = 0;
	bool zero = true;

	for (int i = 0; i < ODP_LEN; i++)
		cpu[ODP_OFF + i] = (uint8_t)(i * 7 + (i >> 12) + 1);
	r = iovad_odp_reg(dev, mem, ODP_OFF, ODP_LEN,
			  IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE, 0, &odp);
	if (!r)
		oiova = iovad_odp_iova(odp);
	n = daemon_mrs();
	tap(!r && n == base, "ODP region of %d KiB at iova %#llx: %s, MRs %d (none for it)",
	    ODP_LEN >> 10, (unsigned long long)oiova, ename(r), n);
	memset(dst, 0, LEN);
	r = iovad_dev_dma_read(dev, oiova + 0x1000 + 100, dst, 512);
	same = !memcmp(dst, cpu + ODP_OFF + 0x1000 + 100, 512);
	tap(!r && same, "device read faults in through the emulation: %s, bytes %s", ename(r),
	    same ? "the client's" : "WRONG");
	iovad_odp_stats(odp, &os);
	n = daemon_mrs();
	tap(os.page_faults_handled == 1 && os.page_faults == WINDOW / 4096 && n == base + 1,
	    "counters: page_faults_handled %llu, page_faults %llu, mapped %llu; MRs %d",
	    (unsigned long long)os.page_faults_handled, (unsigned long long)os.page_faults,
	    (unsigned long long)os.mapped_bytes, n);
	r = iovad_mem_discard(mem, ODP_OFF, WINDOW);
	iovad_odp_stats(odp, &os);
	n = daemon_mrs();
	tap(!r && n == base && os.page_invalidations == WINDOW / 4096 && !os.mapped_bytes,
	    "discard the window: %s, MRs %d, page_invalidations %llu", ename(r), n,
	    (unsigned long long)os.page_invalidations);
	memset(dst, 0xaa, LEN);
	r = iovad_dev_dma_read(dev, oiova + 0x1000 + 100, dst, 512);
	for (int i = 0; i < 512; i++)
		zero &= !dst[i];
	iovad_odp_stats(odp, &os);
	tap(!r && zero && os.page_faults_handled == 2,
	    "read after discard faults again: %s, bytes %s, page_faults_handled %llu", ename(r),
	    zero ? "zeros" : "NOT zeros", (unsigned long long)os.page_faults_handled);
	/* the window is mapped read-only now: rxe refuses the write, the service upgrades */
	r = iovad_dev_dma_write(dev, oiova + 0x2000 + 3, src, 3000);
	same = !memcmp(cpu + ODP_OFF + 0x2000 + 3, src, 3000) && !cpu[ODP_OFF + 0x2000 + 2] &&
	       !cpu[ODP_OFF + 0x2000 + 3003];
	iovad_odp_stats(odp, &os);
	n = daemon_mrs();
	tap(!r && same && os.page_faults_handled == 3 && os.perm_upgrades > 0 && n == base + 1,
	    "device write after it: %s, client's memory %s, handled %llu, upgrades %llu, MRs %d",
	    ename(r), same ? "byte-exact" : "WRONG", (unsigned long long)os.page_faults_handled,
	    (unsigned long long)os.perm_upgrades, n);
	/* a hole in the middle: the MR goes, what stays mapped is registered again around it */
	r = iovad_odp_invalidate(odp, 0x8000, 0x1000);
	n = daemon_mrs();
	memset(dst, 0, LEN);
	if (!r)
		r = iovad_dev_dma_read(dev, oiova + 0x7000, dst, 0x1000);
	iovad_odp_stats(odp, &os);
	tap(!r && n == base + 2 && os.page_faults_handled == 3 &&
	    !memcmp(dst, cpu + ODP_OFF + 0x7000, 0x1000),
	    "invalidate one page inside: %s, MRs %d (both sides), the page before it "
	    "reads without a fault (handled %llu)", ename(r), n,
	    (unsigned long long)os.page_faults_handled);
	r = iovad_dev_dma_read(dev, oiova + 0x7800, dst, 0x1000);
	iovad_odp_stats(odp, &os);
	same = !memcmp(dst, cpu + ODP_OFF + 0x7800, 0x1000);
	tap(!r && same && os.page_faults_handled == 4,
	    "a read across into the hole faults it back in: %s, bytes %s, handled %llu",
	    ename(r), same ? "exact" : "WRONG", (unsigned long long)os.page_faults_handled);
	r = iovad_odp_dereg(odp);
	n = daemon_mrs();
	tap(!r && n == base, "ODP dereg: %s, MRs %d (back to %d)", ename(r), n, base);

	/* teardown: link again, sync, and leave it to the daemon */
	r = iovad_iova_link(dev, &st, phys, 0, LEN, IOVAD_DMA_TO_DEVICE, 0);
	if (!r)
		r = iovad_iova_sync(dev, &st, 0, LEN);
	/* and an ODP region with a window faulted in */
	if (!r)
		r = iovad_odp_reg(dev, mem, ODP_OFF, ODP_LEN, IOVAD_ACCESS_DEVICE_READ, 0, &odp);
	if (!r)
		r = iovad_dev_dma_read(dev, iovad_odp_iova(odp) + 0x20000, dst, 64);
	n = daemon_mrs();
	tap(!r && n == base + 2,
	    "link + sync again, fault in an ODP window (left for the teardown): %s, MRs %d",
	    ename(r), n);
	iovad_disconnect(c);
	/* the daemon tears the session down when it sees the close: give it a moment */
	for (int i = 0; i < 100 && (n = daemon_mrs()) != base; i++)
		usleep(20000);
	tap(n == base, "after disconnect the teardown deregistered it: MRs %d", n);
	free(src);
	free(dst);
	printf("# rxe_client: %d of %d checks failed\n", failures, test_no);
	return failures || test_no != PLAN;
}
