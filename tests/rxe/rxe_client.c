// SPDX-License-Identifier: MIT
/*
 * rxe_client SOCKET DEVICE [SIMDEV [PEER ADDR PORT]] - a libiovad client of a daemon whose
 * DEVICE has backend = rxe, inside the rxe guest (tests/rxe/daemon_test.sh starts the
 * daemon). TAP.
 *
 * Two adjacent links, DMA before sync faults, sync registers them as ONE MR (rdma resource
 * show counts the daemon's MRs), device DMA through rxe is byte-exact in the client's own
 * mapping, unlinking half keeps the other half reachable (re-registered), unlinking the rest
 * deregisters everything and the same DMA faults. iovad_iova_rkey (protocol 3) follows the
 * MRs: -ENOENT before sync and after unlink, the device's own MR in between; -EOPNOTSUPP on
 * SIMDEV, a sim device of the same daemon.
 *
 * Remote peers (the daemon's rdma_listen at ADDR:PORT; PEER is rxe_peer): a peer writes
 * and reads at (iova, rkey) and the client sees the bytes in its own mapping; after unlink
 * and before the next sync the same access fails with a remote access error and the
 * device counts a fault; then two clients with two peers each, all at once.
 *
 * rxe_client SOCKET DEVICE --hold PEER ADDR PORT: for the SIGKILL test, no TAP: a synced
 * link with a peer connected to it that stays connected ("# holding" once it is); exits
 * with the peer's status once the daemon is gone.
 *
 * Then ODP emulated on an rxe without ODP: a region maps (registers) nothing, a device read
 * faults in a window through the fault service (one MR, the counters as on sim), a discard
 * takes the MR away and the next read faults again and sees zeros, a device write upgrades
 * the read-only window in place (a new MR with write access) and lands byte for byte, and
 * dereg leaves no MR behind.
 *
 * A streaming map (iovad_map_phys) is one MR at once over exactly its bytes: device DMA is
 * byte-exact through it, iovad_iova_rkey names it, an access past its end faults, and unmap
 * deregisters it (the access faults, reason 1). The teardown deregisters one left mapped.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iovad/iovad.h>

#include "tap.h"

#define HALF	(32 * 1024)
#define LEN	(2 * HALF)
#define PLAN 46
#define MAP_OFF	(0x30000 + 0x123)	/* the streaming map's bytes of the memory object */
#define MAP_LEN	5000
#define PEER_OFF (576 * 1024)	/* the peer tests' bytes of the memory object */
#define PEER_LEN (64 * 1024)
#define ODP_OFF	(256 * 1024)	/* the ODP region's bytes of the memory object */
#define ODP_LEN	(256 * 1024)
#define WINDOW	(64 * 1024)	/* the daemon's default fault-around window */

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

static char **peer_argv;         /* PEER ADDR PORT, or NULL */
static char peer_tok[33] = "-";	 /* this process's session's peer token, in hex */
static const char *ename(int r);

/* iovad_iova_rkey, keeping the session's peer token for the peers this process starts. */
static int peer_rkey(struct iovad_dev *dev, uint64_t iova, uint32_t *rkey)
{
	struct iovad_peer_key k;
	int r = iovad_iova_peer_key(dev, iova, &k);

	if (r)
		return r;
	*rkey = k.rkey;
	for (int i = 0; i < 16; i++)
		snprintf(peer_tok + 2 * i, 3, "%02x", k.token[i]);
	return 0;
}

/*
 * Start rxe_peer with token tok on (iova, rkey): it writes len bytes of pattern seed, reads
 * them back.
 */
static pid_t peer_start_tok(const char *tok, uint64_t iova, uint32_t rkey, uint32_t len,
			    uint32_t seed)
{
	char a[4][32];
	pid_t pid;

	snprintf(a[0], sizeof(a[0]), "%#llx", (unsigned long long)iova);
	snprintf(a[1], sizeof(a[1]), "%#x", rkey);
	snprintf(a[2], sizeof(a[2]), "%u", len);
	snprintf(a[3], sizeof(a[3]), "%u", seed);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl(peer_argv[0], peer_argv[0], peer_argv[1], peer_argv[2], tok, a[0], a[1], a[2],
		      a[3], (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* The same with this process's session's token. */
static pid_t peer_start(uint64_t iova, uint32_t rkey, uint32_t len, uint32_t seed)
{
	return peer_start_tok(peer_tok, iova, rkey, len, seed);
}

/* rxe_peer's exit status: 0 ok, 3 remote access error, 4 other bytes; -1 no status. */
static int peer_wait(pid_t pid)
{
	int st;

	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static int peer_run(uint64_t iova, uint32_t rkey, uint32_t len, uint32_t seed)
{
	return peer_wait(peer_start(iova, rkey, len, seed));
}

static int peer_run_tok(const char *tok, uint64_t iova, uint32_t rkey, uint32_t len, uint32_t seed)
{
	return peer_wait(peer_start_tok(tok, iova, rkey, len, seed));
}

/* What rxe_peer writes: byte i is i * 13 + seed. */
static bool peer_bytes(const uint8_t *p, uint32_t len, uint32_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 13 + seed))
			return false;
	return true;
}

static uint64_t dev_faults(struct iovad_dev *dev)
{
	struct iovad_dev_stats ds = { 0 };

	return iovad_dev_stats(dev, &ds) ? UINT64_MAX : ds.io_page_faults;
}

/*
 * The ODP tests' region: ODP_LEN bytes of mem at ODP_OFF, a pattern written there by the
 * CPU first, registered for device reads and writes. Return: iovad_odp_reg's.
 */
static int odp_region(struct iovad_dev *dev, struct iovad_mem *mem, uint8_t *cpu,
		      struct iovad_odp **odp, uint64_t *iova)
{
	int r;

	for (int i = 0; i < ODP_LEN; i++)
		cpu[ODP_OFF + i] = (uint8_t)(i * 7 + (i >> 12) + 1);
	r = iovad_odp_reg(dev, mem, ODP_OFF, ODP_LEN,
			  IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE, 0, odp);
	*iova = r ? 0 : iovad_odp_iova(*odp);
	return r;
}

/*
 * ODP emulated on an rxe without ODP (10 checks): nothing registered until the device
 * touches it; each fault goes through iovad's fault service and becomes MRs.
 */
static void odp_emulated(struct iovad_dev *dev, struct iovad_mem *mem, uint8_t *cpu,
			 const uint8_t *src, uint8_t *dst, int base)
{
	struct iovad_odp *odp = NULL;
	struct iovad_odp_stats os = { 0 };
	uint64_t oiova = 0;
	uint32_t rkey = 0;
	bool same, zero = true;
	int r, n;

	r = odp_region(dev, mem, cpu, &odp, &oiova);
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
	    "reads without a fault (handled %llu)",
	    ename(r), n, (unsigned long long)os.page_faults_handled);
	r = iovad_dev_dma_read(dev, oiova + 0x7800, dst, 0x1000);
	iovad_odp_stats(odp, &os);
	same = !memcmp(dst, cpu + ODP_OFF + 0x7800, 0x1000);
	tap(!r && same && os.page_faults_handled == 4,
	    "a read across into the hole faults it back in: %s, bytes %s, handled %llu", ename(r),
	    same ? "exact" : "WRONG", (unsigned long long)os.page_faults_handled);
	r = iovad_iova_rkey(dev, oiova + 0x7000, &rkey);
	tap(!r, "iova_rkey in a faulted-in ODP window: %s, rkey %#x", ename(r), rkey);
	r = iovad_odp_dereg(odp);
	n = daemon_mrs();
	tap(!r && n == base, "ODP dereg: %s, MRs %d (back to %d)", ename(r), n, base);
}

/*
 * ODP on an rxe with ODP (Linux 6.15+; 10 checks): the region is one ODP MR at once, and
 * the device faults pages in itself, never through iovad's fault service; a remote peer
 * reaches any byte of it; iovad's prefetch and invalidation reach the MR (the device
 * faults an invalidated page again, and sees what the memory holds then); a read-only
 * region refuses a device write.
 */
static void odp_device_faults(struct iovad_dev *dev, struct iovad_mem *mem, uint8_t *cpu,
			      const uint8_t *src, uint8_t *dst, int base)
{
	struct iovad_odp *odp = NULL, *ro = NULL;
	struct iovad_odp_stats os = { 0 };
	struct iovad_fault f = { 0 };
	uint64_t oiova = 0, inv0;
	uint32_t rkey = 0, rkey2 = 0;
	bool same, zero = true;
	int r, r2, n;

	r = odp_region(dev, mem, cpu, &odp, &oiova);
	n = daemon_mrs();
	tap(!r && n == base + 1,
	    "ODP region of %d KiB at iova %#llx on a device with ODP: %s, "
	    "MRs %d (one ODP MR at once)",
	    ODP_LEN >> 10, (unsigned long long)oiova, ename(r), n);
	memset(dst, 0, LEN);
	r = iovad_dev_dma_read(dev, oiova + 0x1000 + 100, dst, 512);
	same = !memcmp(dst, cpu + ODP_OFF + 0x1000 + 100, 512);
	iovad_odp_stats(odp, &os);
	tap(!r && same && os.page_faults_handled == 0 && os.mapped_bytes == 0,
	    "device read of a page nobody mapped: %s, bytes %s, iovad's faults handled %llu "
	    "(the device faulted it in itself)",
	    ename(r), same ? "the client's" : "WRONG", (unsigned long long)os.page_faults_handled);
	r = peer_rkey(dev, oiova, &rkey);
	if (!r)
		r = iovad_iova_rkey(dev, oiova + ODP_LEN - 1, &rkey2);
	r2 = iovad_iova_rkey(dev, oiova + ODP_LEN, &rkey2);
	tap(!r && rkey == rkey2 && r2 == -ENOENT,
	    "iova_rkey at both ends of the region: %s, rkey %#x (one MR), past its end %s",
	    ename(r), rkey, ename(r2));
	if (peer_argv) {
		r2 = peer_run(oiova + 0x30000, rkey, 4096, 61);
		tap(r2 == 0 && peer_bytes(cpu + ODP_OFF + 0x30000, 4096, 61),
		    "a remote peer writes and reads a page of the region nobody mapped: exit %d, "
		    "client's memory %s",
		    r2, peer_bytes(cpu + ODP_OFF + 0x30000, 4096, 61) ? "has its bytes" : "WRONG");
	} else {
		tap(true, "# SKIP no peer given (PEER ADDR PORT)");
	}
	r = iovad_mem_discard(mem, ODP_OFF, WINDOW);
	memset(dst, 0xaa, LEN);
	r2 = r ? r : iovad_dev_dma_read(dev, oiova + 0x1000 + 100, dst, 512);
	for (int i = 0; i < 512; i++)
		zero &= !dst[i];
	n = daemon_mrs();
	iovad_odp_stats(odp, &os);
	tap(!r && !r2 && zero && n == base + 1 && os.page_faults_handled == 0,
	    "discard a window, read it again: %s / %s, bytes %s, MRs %d, faults handled %llu",
	    ename(r), ename(r2), zero ? "zeros" : "NOT zeros", n,
	    (unsigned long long)os.page_faults_handled);
	r = iovad_dev_dma_write(dev, oiova + 0x2000 + 3, src, 3000);
	same = !memcmp(cpu + ODP_OFF + 0x2000 + 3, src, 3000) && !cpu[ODP_OFF + 0x2000 + 2] &&
	       !cpu[ODP_OFF + 0x2000 + 3003];
	iovad_odp_stats(odp, &os);
	tap(!r && same && os.page_faults_handled == 0,
	    "device write into the discarded window: %s, client's memory %s, handled %llu",
	    ename(r), same ? "byte-exact" : "WRONG", (unsigned long long)os.page_faults_handled);
	r = iovad_odp_advise(odp, IOVAD_ADVISE_PREFETCH_WRITE, 0x10000, 0x10000,
			     IOVAD_ADVISE_FLAG_FLUSH);
	iovad_odp_stats(odp, &os);
	tap(!r && os.page_prefetch == 16 && os.mapped_bytes == 0x10000,
	    "prefetch 64 KiB for writes (ibv_advise_mr): %s, page_prefetch %llu, mapped %llu",
	    ename(r), (unsigned long long)os.page_prefetch, (unsigned long long)os.mapped_bytes);
	inv0 = os.page_invalidations;
	r = iovad_odp_invalidate(odp, 0x10000, 0x1000);
	cpu[ODP_OFF + 0x10000 + 5] ^= 0x5a;
	memset(dst, 0, LEN);
	r2 = r ? r : iovad_dev_dma_read(dev, oiova + 0x10000, dst, 0x1000);
	iovad_odp_stats(odp, &os);
	same = !memcmp(dst, cpu + ODP_OFF + 0x10000, 0x1000);
	tap(!r && !r2 && same && os.page_invalidations == inv0 + 1 && os.page_faults_handled == 0,
	    "invalidate one prefetched page, change it, read it: %s / %s, bytes %s, "
	    "invalidations +%llu",
	    ename(r), ename(r2), same ? "current" : "WRONG",
	    (unsigned long long)(os.page_invalidations - inv0));
	/* the same bytes again, registered for device reads only */
	r = iovad_odp_reg(dev, mem, ODP_OFF + ODP_LEN, 0x10000, IOVAD_ACCESS_DEVICE_READ, 0, &ro);
	memcpy(dst, cpu + ODP_OFF + ODP_LEN, 64);
	r2 = r ? r : iovad_dev_dma_write(dev, iovad_odp_iova(ro) + 0x100, src, 64);
	iovad_dev_last_fault(dev, &f);
	tap(!r && r2 == -EFAULT && f.iova == iovad_odp_iova(ro) + 0x100 && f.access == 2 &&
		    !memcmp(dst, cpu + ODP_OFF + ODP_LEN, 64),
	    "a device write to a read-only region: %s, fault at %#llx (access %u), memory "
	    "unchanged",
	    ename(r2), (unsigned long long)f.iova, f.access);
	r = iovad_odp_dereg(odp);
	r2 = ro ? iovad_odp_dereg(ro) : -EBADF;
	n = daemon_mrs();
	tap(!r && !r2 && n == base, "ODP dereg of both: %s / %s, MRs %d (back to %d)", ename(r),
	    ename(r2), n, base);
}

/*
 * One of several clients at once (a child process): its own session, memory and state of
 * two windows, a peer on each at the same time. Return: 0 if both peers' bytes landed.
 */
static int multi_client(const char *sock, const char *devname, uint32_t k)
{
	struct iovad_iova_state st;
	struct iovad_mem *mem;
	struct iovad_dev *dev;
	struct iovad *c;
	uint32_t rkey;
	pid_t pid[2];
	int r, bad = 0;

	r = iovad_connect(sock, &c);
	if (!r)
		r = iovad_dev_open(c, devname, &dev);
	if (!r)
		r = iovad_mem_alloc(c, 4 * PEER_LEN, &mem);
	if (!r)
		r = iovad_iova_try_alloc(dev, &st, iovad_mem_phys(mem), 2 * PEER_LEN) ? 0 : -ENOSPC;
	if (!r)
		r = iovad_iova_link(dev, &st, iovad_mem_phys(mem), 0, 2 * PEER_LEN,
				    IOVAD_DMA_BIDIRECTIONAL, 0);
	if (!r)
		r = iovad_iova_sync(dev, &st, 0, 2 * PEER_LEN);
	if (!r)
		r = peer_rkey(dev, st.addr, &rkey);
	if (r) {
		printf("# client %u: setup: %s\n", k, ename(r));
		return 1;
	}
	for (int j = 0; j < 2; j++)
		pid[j] = peer_start(st.addr + (uint64_t)j * PEER_LEN, rkey, PEER_LEN, 100 + 2 * k + j);
	for (int j = 0; j < 2; j++) {
		int e = peer_wait(pid[j]);
		bool same = peer_bytes((uint8_t *)iovad_mem_addr(mem) + j * PEER_LEN, PEER_LEN,
				       100 + 2 * k + j);

		if (e || !same)
			printf("# client %u peer %d: exit %d, bytes %s\n", k, j, e,
			       same ? "exact" : "WRONG");
		bad |= e || !same;
	}
	iovad_disconnect(c);
	return bad;
}

/* --hold: a client with MRs and a peer holding a QP at the daemon, until the daemon dies. */
static int hold(char **argv)
{
	struct iovad_iova_state st;
	struct iovad_mem *mem;
	struct iovad_dev *dev;
	struct iovad *c;
	uint32_t rkey;
	pid_t pid;
	int r, e;

	peer_argv = argv + 4;
	r = iovad_connect(argv[1], &c);
	if (!r)
		r = iovad_dev_open(c, argv[2], &dev);
	if (!r)
		r = iovad_mem_alloc(c, PEER_LEN, &mem);
	if (!r)
		r = iovad_iova_try_alloc(dev, &st, iovad_mem_phys(mem), PEER_LEN) ? 0 : -ENOSPC;
	if (!r)
		r = iovad_iova_link(dev, &st, iovad_mem_phys(mem), 0, PEER_LEN,
				    IOVAD_DMA_BIDIRECTIONAL, 0);
	if (!r)
		r = iovad_iova_sync(dev, &st, 0, PEER_LEN);
	if (!r)
		r = peer_rkey(dev, st.addr, &rkey);
	if (r) {
		printf("# hold: setup: %s\n", ename(r));
		return 1;
	}
	setenv("RXE_PEER_HOLD", "20", 1);
	pid = peer_start(st.addr, rkey, 4096, 5);
	e = peer_wait(pid);
	printf("# hold: the peer exited %d\n", e);
	iovad_disconnect(c);
	return e;
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

	if ((argc < 3 || argc > 7 || argc == 5 || argc == 6) || !src || !dst) {
		fprintf(stderr, "usage: rxe_client SOCKET DEVICE [SIMDEV [PEER ADDR PORT]]\n");
		return 2;
	}
	if (argc == 7 && !strcmp(argv[3], "--hold"))
		return hold(argv);
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
	/* That first device access made the session's PD, with its own bounce buffer's MR. */
	n = daemon_mrs();
	tap(n == base + 1 && base >= 1,
	    "before sync the daemon holds %d MR(s): the bounce buffers of its device's PD and of "
	    "this session's, %d before the session's first device access",
	    n, base);
	base = n;
	uint32_t rkey = 0, rkey2 = 0;

	r = iovad_iova_rkey(dev, st.addr + 100, &rkey);
	tap(r == -ENOENT, "iova_rkey before sync: %s (linked, no MR yet)", ename(r));

	r = iovad_iova_sync(dev, &st, 0, LEN);
	n = daemon_mrs();
	tap(!r && n == base + 1, "sync: %s, MRs %d -> %d (both links in one MR)", ename(r), base,
	    n);
	r = iovad_iova_rkey(dev, st.addr + 100, &rkey);
	if (!r)
		r = iovad_iova_rkey(dev, st.addr + LEN - 1, &rkey2);
	tap(!r && rkey == rkey2 && rkey != 0xffffffffu,
	    "iova_rkey after sync: %s, rkey %#x at both ends (one MR)", ename(r), rkey);
	r = iovad_iova_rkey(dev, st.addr + LEN, &rkey2);
	tap(r == -ENOENT, "iova_rkey just past the state: %s", ename(r));

	/* across the two link records, unaligned */
	struct iovad_dev_stats s0 = { 0 }, s1 = { 0 };

	(void)iovad_dev_stats(dev, &s0);
	r = iovad_dev_dma_write(dev, st.addr + 100, src, LEN - 200);
	same = !memcmp(cpu + 0x10000 + 100, src, LEN - 200) && !cpu[0x10000 + 99];
	tap(!r && same, "DMA write %d bytes through rxe: %s, client's mapping %s", LEN - 200,
	    ename(r), same ? "byte-exact" : "WRONG");
	memset(dst, 0, LEN);
	r = iovad_dev_dma_read(dev, st.addr + 100, dst, LEN - 200);
	tap(!r && !memcmp(dst, src, LEN - 200), "DMA read back: %s, bytes %s", ename(r),
	    memcmp(dst, src, LEN - 200) ? "WRONG" : "exact");
	r = iovad_dev_stats(dev, &s1);
	tap(!r && s1.dma_writes == s0.dma_writes + 1 && s1.dma_reads == s0.dma_reads + 1 &&
	    s1.dma_bytes == s0.dma_bytes + 2 * (LEN - 200) && s1.io_page_faults == s0.io_page_faults,
	    "the device's counters count the RDMA: writes %llu -> %llu, reads %llu -> %llu, "
	    "bytes +%llu", (unsigned long long)s0.dma_writes, (unsigned long long)s1.dma_writes,
	    (unsigned long long)s0.dma_reads, (unsigned long long)s1.dma_reads,
	    (unsigned long long)(s1.dma_bytes - s0.dma_bytes));

	/* unlink the second half: its MR goes, the first half is registered again */
	r = iovad_iova_unlink(dev, &st, HALF, HALF, IOVAD_DMA_BIDIRECTIONAL, 0);
	n = daemon_mrs();
	tap(!r && n == base + 1, "unlink the second half: %s, MRs %d", ename(r), n);
	r = iovad_dev_dma_read(dev, st.addr + 200, dst, 64);
	tap(!r && !memcmp(dst, src + 100, 64), "DMA read in the first half: %s", ename(r));
	(void)iovad_dev_stats(dev, &s0);
	r = iovad_dev_dma_read(dev, st.addr + HALF, dst, 64);
	iovad_dev_last_fault(dev, &f);
	(void)iovad_dev_stats(dev, &s1);
	tap(r == -EFAULT && f.reason == 1 && s1.io_page_faults == s0.io_page_faults + 1 &&
	    s1.dma_reads == s0.dma_reads,
	    "DMA read in the unlinked half: %s, reason %u, io_page_faults %llu -> %llu", ename(r),
	    f.reason, (unsigned long long)s0.io_page_faults,
	    (unsigned long long)s1.io_page_faults);
	r = iovad_dev_dma_read(dev, st.addr + HALF - 32, dst, 64);
	tap(r == -EFAULT, "DMA read across the edge: %s", ename(r));

	r = iovad_iova_unlink(dev, &st, 0, HALF, IOVAD_DMA_BIDIRECTIONAL, 0);
	n = daemon_mrs();
	tap(!r && n == base, "unlink the rest: %s, MRs %d (back to %d)", ename(r), n, base);
	r = iovad_dev_dma_write(dev, st.addr + 8, src, 64);
	tap(r == -EFAULT, "DMA write after unlink: %s", ename(r));
	r = iovad_iova_rkey(dev, st.addr + 8, &rkey2);
	tap(r == -ENOENT, "iova_rkey after unlink: %s", ename(r));

	/* a streaming map: mapped and synced at once, so one MR at once, over exactly its bytes */
	uint64_t mdma = 0;

	memset(cpu + MAP_OFF - 64, 0, MAP_LEN + 128);
	r = iovad_map_phys(dev, iovad_mem_phys(mem) + MAP_OFF, MAP_LEN, IOVAD_DMA_BIDIRECTIONAL, 0,
			   &mdma);
	n = daemon_mrs();
	tap(!r && n == base + 1, "map_phys %d bytes at an unaligned phys -> dma %#llx: %s, MRs %d",
	    MAP_LEN, (unsigned long long)mdma, ename(r), n);
	r = iovad_dev_dma_write(dev, mdma, src, MAP_LEN);
	same = !memcmp(cpu + MAP_OFF, src, MAP_LEN) && !cpu[MAP_OFF - 1] && !cpu[MAP_OFF + MAP_LEN];
	tap(!r && same, "DMA write of the whole map through rxe: %s, client's mapping %s",
	    ename(r), same ? "byte-exact" : "WRONG");
	memset(dst, 0, LEN);
	r = iovad_dev_dma_read(dev, mdma + 1, dst, MAP_LEN - 1);
	tap(!r && !memcmp(dst, src + 1, MAP_LEN - 1), "DMA read back: %s, bytes %s", ename(r),
	    memcmp(dst, src + 1, MAP_LEN - 1) ? "WRONG" : "exact");
	rkey = rkey2 = 0;
	r = iovad_iova_rkey(dev, mdma, &rkey);
	if (!r)
		r = iovad_iova_rkey(dev, mdma + MAP_LEN - 1, &rkey2);
	tap(!r && rkey == rkey2 && rkey != 0xffffffffu && iovad_iova_rkey(dev, mdma + MAP_LEN,
									  &rkey2) == -ENOENT,
	    "iova_rkey on the map: %s, rkey %#x at both ends, -ENOENT just past it", ename(r),
	    rkey);
	r = iovad_dev_dma_read(dev, mdma + MAP_LEN - 16, dst, 32);
	iovad_dev_last_fault(dev, &f);
	tap(r == -EFAULT && f.reason == 1 && f.iova == mdma + MAP_LEN,
	    "DMA read across the map's end: %s, reason %u at its first byte past it", ename(r),
	    f.reason);
	r = iovad_unmap_phys(dev, mdma, MAP_LEN, IOVAD_DMA_BIDIRECTIONAL, 0);
	n = daemon_mrs();
	int r2 = iovad_dev_dma_read(dev, mdma + 8, dst, 64);

	iovad_dev_last_fault(dev, &f);
	tap(!r && n == base && r2 == -EFAULT && f.reason == 1 &&
	    iovad_iova_rkey(dev, mdma + 8, &rkey2) == -ENOENT,
	    "unmap_phys: %s, MRs %d (back to %d), DMA read %s, reason %u, iova_rkey -ENOENT",
	    ename(r), n, base, ename(r2), f.reason);

	/* ODP: emulated on an rxe without ODP, one ODP MR on one with it */
	if (iovad_dev_flags(dev) & IOVAD_DEV_ODP_MR)
		odp_device_faults(dev, mem, cpu, src, dst, base);
	else
		odp_emulated(dev, mem, cpu, src, dst, base);

	/* a sim device has no MRs to name */
	if (argc == 4) {
		struct iovad_dev *sim;

		r = iovad_dev_open(c, argv[3], &sim);
		if (!r)
			r = iovad_iova_rkey(sim, 0x1000, &rkey2);
		tap(r == -EOPNOTSUPP, "iova_rkey on sim device %s: %s", argv[3], ename(r));
	} else {
		tap(true, "# SKIP no sim device given");
	}

	/* remote peers at (iova, rkey): through rxe, into this client's own memory */
	if (argc == 7) {
		struct iovad_iova_state ps;
		uint64_t pphys = iovad_mem_phys(mem) + PEER_OFF, f0;
		uint32_t prk = 0;
		int e;

		peer_argv = argv + 4;
		r = iovad_iova_try_alloc(dev, &ps, pphys, PEER_LEN) ? 0 : -ENOSPC;
		if (!r)
			r = iovad_iova_link(dev, &ps, pphys, 0, PEER_LEN, IOVAD_DMA_BIDIRECTIONAL, 0);
		if (!r)
			r = iovad_iova_sync(dev, &ps, 0, PEER_LEN);
		if (!r)
			r = peer_rkey(dev, ps.addr, &prk);
		e = r ? -1 : peer_run(ps.addr + 100, prk, PEER_LEN - 200, 7);
		same = peer_bytes(cpu + PEER_OFF + 100, PEER_LEN - 200, 7) && !cpu[PEER_OFF + 99];
		tap(!r && !e && same, "peer RDMA WRITE + READ of %d bytes at iova %#llx rkey %#x: "
		    "%s, exit %d, the client's mapping %s", PEER_LEN - 200,
		    (unsigned long long)ps.addr + 100, prk, ename(r), e,
		    same ? "byte-exact" : "WRONG");
		f0 = dev_faults(dev);
		r = iovad_iova_unlink(dev, &ps, 0, PEER_LEN, IOVAD_DMA_BIDIRECTIONAL, 0);
		e = peer_run(ps.addr + 100, prk, 64, 9);
		tap(!r && e == 3 && dev_faults(dev) == f0 + 1,
		    "after unlink the same access: peer exit %d (3: remote access error), "
		    "io_page_faults %llu -> %llu", e, (unsigned long long)f0,
		    (unsigned long long)dev_faults(dev));
		f0 = dev_faults(dev);
		r = iovad_iova_link(dev, &ps, pphys, 0, PEER_LEN, IOVAD_DMA_BIDIRECTIONAL, 0);
		e = peer_run(ps.addr + 100, prk, 64, 9);
		tap(!r && e == 3 && dev_faults(dev) == f0 + 1,
		    "linked again, before sync: peer exit %d, io_page_faults %llu -> %llu", e,
		    (unsigned long long)f0, (unsigned long long)dev_faults(dev));
		r = iovad_iova_sync(dev, &ps, 0, PEER_LEN);
		if (!r)
			r = peer_rkey(dev, ps.addr, &prk);
		e = r ? -1 : peer_run(ps.addr, prk, PEER_LEN, 11);
		same = peer_bytes(cpu + PEER_OFF, PEER_LEN, 11);
		tap(!r && !e && same, "after sync, the new rkey %#x: %s, peer exit %d, bytes %s", prk,
		    ename(r), e, same ? "exact" : "WRONG");

		/* a PD per session: another client's token is no key to this client's MRs */
		{
			char mine[33], bogus[33];
			struct iovad *c2 = NULL;
			struct iovad_dev *dev2 = NULL;
			struct iovad_mem *mem2 = NULL;
			struct iovad_iova_state st2;
			uint32_t rk2 = 0;
			uint8_t *cpu2 = NULL;
			int e2;

			memcpy(mine, peer_tok, sizeof(mine));
			r = iovad_connect(argv[1], &c2);
			if (!r)
				r = iovad_dev_open(c2, argv[2], &dev2);
			if (!r)
				r = iovad_mem_alloc(c2, PEER_LEN, &mem2);
			if (!r)
				r = iovad_iova_try_alloc(dev2, &st2, iovad_mem_phys(mem2), PEER_LEN)
					    ? 0
					    : -ENOSPC;
			if (!r)
				r = iovad_iova_link(dev2, &st2, iovad_mem_phys(mem2), 0, PEER_LEN,
						    IOVAD_DMA_BIDIRECTIONAL, 0);
			if (!r)
				r = iovad_iova_sync(dev2, &st2, 0, PEER_LEN);
			if (!r)
				r = peer_rkey(dev2, st2.addr, &rk2);
			if (!r) {
				cpu2 = iovad_mem_addr(mem2);
				memset(cpu2, 0x3c, PEER_LEN);
			}
			/* the first client's token, the second's (iova, rkey) */
			e = r ? -1 : peer_run_tok(mine, st2.addr, rk2, 64, 13);
			same = cpu2 && cpu2[0] == 0x3c && cpu2[63] == 0x3c;
			tap(!r && e == 3 && same && strcmp(mine, peer_tok),
			    "a peer with this client's token at another client's (iova %#llx, rkey "
			    "%#x): %s, exit %d (3: remote access error), that client's memory %s",
			    (unsigned long long)st2.addr, rk2, ename(r), e,
			    same ? "untouched" : "WRITTEN");
			e2 = r ? -1 : peer_run(st2.addr, rk2, 64, 13);
			tap(!r && e2 == 0 && peer_bytes(cpu2, 64, 13),
			    "the same access with that client's own token: exit %d, bytes %s", e2,
			    !r && peer_bytes(cpu2, 64, 13) ? "landed" : "WRONG");
			memset(bogus, '5', 32);
			bogus[32] = 0;
			e = peer_run_tok(bogus, st2.addr, rk2, 64, 15);
			e2 = peer_run_tok("-", st2.addr, rk2, 64, 15);
			tap(e == 6 && e2 == 6 && peer_bytes(cpu2 ? cpu2 : src, 64, 13),
			    "a peer with a made-up token, or none, is rejected at connect: exit %d "
			    "and %d (6: rejected)",
			    e, e2);
			if (c2)
				iovad_disconnect(c2);
			memcpy(peer_tok, mine, sizeof(mine));
		}
		if (!r)
			r = iovad_iova_unlink(dev, &ps, 0, PEER_LEN, IOVAD_DMA_BIDIRECTIONAL, 0);
		if (!r)
			r = iovad_iova_free(dev, &ps);
		if (r)
			printf("# peer state teardown: %s\n", ename(r));

		/* two more clients, two peers each, all at once */
		pid_t kid[2];

		fflush(stdout);
		for (uint32_t k = 0; k < 2; k++) {
			kid[k] = fork();
			if (kid[k] == 0)
				_exit(multi_client(argv[1], argv[2], k));
		}
		for (uint32_t k = 0; k < 2; k++) {
			e = peer_wait(kid[k]);
			tap(e == 0, "client %u of 2, 2 peers of its own at once: %s", k,
			    e ? "FAILED" : "both peers' bytes in its mapping");
		}
	} else {
		for (int i = 0; i < 6; i++)
			tap(true, "# SKIP no rxe_peer given");
	}

	/* teardown: link again, sync, and leave it to the daemon */
	struct iovad_odp *odp = NULL;

	r = iovad_iova_link(dev, &st, phys, 0, LEN, IOVAD_DMA_TO_DEVICE, 0);
	if (!r)
		r = iovad_iova_sync(dev, &st, 0, LEN);
	/* and an ODP region with a window faulted in */
	if (!r)
		r = iovad_odp_reg(dev, mem, ODP_OFF, ODP_LEN, IOVAD_ACCESS_DEVICE_READ, 0, &odp);
	if (!r)
		r = iovad_dev_dma_read(dev, iovad_odp_iova(odp) + 0x20000, dst, 64);
	/* and a streaming map */
	if (!r)
		r = iovad_map_phys(dev, iovad_mem_phys(mem) + MAP_OFF, MAP_LEN, IOVAD_DMA_TO_DEVICE,
				   0, &mdma);
	n = daemon_mrs();
	tap(!r && n == base + 3,
	    "link + sync again, fault in an ODP window, map_phys (left for the teardown): %s, "
	    "MRs %d", ename(r), n);
	iovad_disconnect(c);
	/* the daemon tears the session down when it sees the close: give it a moment */
	for (int i = 0; i < 100 && (n = daemon_mrs()) != base - 1; i++)
		usleep(20000);
	tap(n == base - 1,
	    "after disconnect the teardown deregistered it all, the session's PD too: MRs %d", n);
	free(src);
	free(dst);
	return tap_done("rxe_client", PLAN);
}
