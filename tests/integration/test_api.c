// SPDX-License-Identifier: MIT
/*
 * test_api.c - the whole IOVA API through libiovad against the real daemon,
 * with the same semantics as the in-process engine tests, plus batching and
 * the teardown of a client that disconnects in the middle of a batch.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include "harness.h"

static struct daemon d;
static struct iovad *c;

static void setup(void)
{
	daemon_start(&d);
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
}

static void teardown(void)
{
	iovad_disconnect(c);
	daemon_stop(&d);
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 60);

static struct iovad_dev *open_dev(const char *name)
{
	struct iovad_dev *dev;

	cr_assert_eq(iovad_dev_open(c, name, &dev), 0, "open %s", name);
	return dev;
}

static struct iovad_mem *alloc_mem(size_t size)
{
	struct iovad_mem *m;

	cr_assert_eq(iovad_mem_alloc(c, size, &m), 0);
	cr_assert_not_null(iovad_mem_addr(m));
	cr_assert_neq(iovad_mem_phys(m), 0);
	return m;
}

Test(api, lifecycle_with_device_dma_and_counters)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	uint64_t phys = iovad_mem_phys(m) + 0x345;
	size_t len = 5 * 4096 + 0x200, first = 4096 - 0x345;
	struct iovad_dev_stats s0, s1;
	struct iovad_iova_state st;
	struct iovad_fault f;
	uint8_t out[700], in[700];

	cr_assert_eq(iovad_dev_stats(dev, &s0), 0);
	cr_assert_eq(s0.size, sizeof(s0));
	cr_assert(iovad_iova_try_alloc(dev, &st, phys, len));
	cr_assert(iovad_use_iova(&st));
	cr_assert_eq(iovad_iova_size(&st), len);
	cr_assert_eq(st.addr & 0xfff, 0x345);
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, first, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_link(dev, &st, phys + first, first, len - first,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	/* Not visible before sync. */
	cr_assert_eq(iovad_dev_dma_write(dev, st.addr, out, 16), -EFAULT);
	cr_assert_eq(iovad_dev_last_fault(dev, &f), 0);
	cr_assert_eq(f.reason, 2, "linked but not synced");
	cr_assert_eq(f.iova, st.addr);
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, len), 0);
	fill_pattern(out, sizeof(out), 3);
	cr_assert_eq(iovad_dev_dma_write(dev, st.addr + len - sizeof(out), out, sizeof(out)), 0);
	/* The device's bytes are in the client's own mapping of the memfd. */
	cr_assert_arr_eq((uint8_t *)iovad_mem_addr(m) + 0x345 + len - sizeof(out), out, sizeof(out));
	cr_assert_eq(iovad_dev_dma_read(dev, st.addr + len - sizeof(out), in, sizeof(in)), 0);
	cr_assert_arr_eq(in, out, sizeof(out));
	cr_assert_eq(iovad_iova_destroy(dev, &st, len, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_not(iovad_use_iova(&st));
	cr_assert_eq(iovad_dev_stats(dev, &s1), 0);
	cr_assert_eq(s1.iova_allocs - s0.iova_allocs, 1);
	cr_assert_eq(s1.iova_frees - s0.iova_frees, 1);
	cr_assert_eq(s1.links - s0.links, 2);
	cr_assert_eq(s1.syncs - s0.syncs, 1);
	cr_assert_eq(s1.unlinks - s0.unlinks, 1);
	cr_assert_eq(s1.io_page_faults - s0.io_page_faults, 1);
	cr_assert_eq(s1.mapped_bytes, 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

Test(api, kernel_error_codes_come_through)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	uint64_t phys = iovad_mem_phys(m);
	struct iovad_iova_state st, none = { .addr = 0x1000, .__size = 0x1000 };

	cr_assert(iovad_iova_try_alloc(dev, &st, 0, 4 * 4096));
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0x800, 4096, IOVAD_DMA_TO_DEVICE, 0),
		     -EINVAL);
	cr_assert_eq(iovad_iova_link(dev, &st, phys + 0x10, 4096, 4096, IOVAD_DMA_TO_DEVICE, 0),
		     -EIO);
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, 4096, IOVAD_DMA_TO_DEVICE, 0), -EEXIST);
	cr_assert_eq(iovad_iova_free(dev, &st), -EBUSY);
	cr_assert_eq(iovad_iova_sync(dev, &none, 0, 4096), -ENOENT, "no such state");
	cr_assert_eq(iovad_iova_unlink(dev, &st, 0, 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_iova_free(dev, &st), 0);
	cr_assert_eq(iovad_iova_free(dev, &st), -EINVAL, "a zeroed state is not an IOVA state");
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

/* rkeys and peer tokens are an rxe device's (tests/rxe): a sim device has none to give. */
Test(api, a_sim_device_has_no_rkeys_or_peer_tokens)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	struct iovad_iova_state st;
	struct iovad_peer_key k;
	uint32_t rkey;

	cr_assert(iovad_iova_try_alloc(dev, &st, iovad_mem_phys(m), 4096));
	cr_assert_eq(iovad_iova_link(dev, &st, iovad_mem_phys(m), 0, 4096, IOVAD_DMA_TO_DEVICE, 0),
		     0);
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, 4096), 0);
	memset(&k, 0xaa, sizeof(k));
	cr_assert_eq(iovad_iova_peer_key(dev, st.addr, &k), -EOPNOTSUPP);
	cr_assert_eq(iovad_iova_rkey(dev, st.addr, &rkey), -EOPNOTSUPP);
	cr_assert_eq(iovad_iova_peer_key(dev, st.addr, NULL), -EINVAL);
	cr_assert_eq(iovad_iova_peer_key(NULL, st.addr, &k), -EINVAL);
	/* and the session goes on */
	cr_assert_eq(iovad_iova_unlink(dev, &st, 0, 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_iova_free(dev, &st), 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

Test(api, destroy_over_holes_releases_the_state_everywhere)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	struct iovad_iova_state st;
	struct iovad_dev_stats s;

	cr_assert(iovad_iova_try_alloc(dev, &st, 0, 2 * 4096));
	cr_assert_eq(iovad_iova_link(dev, &st, iovad_mem_phys(m), 4096, 4096, IOVAD_DMA_TO_DEVICE,
				     0), 0);
	/* The first granule was never linked: -ENOENT, as the engine says, but the IOVA is freed. */
	cr_assert_eq(iovad_iova_destroy(dev, &st, 2 * 4096, IOVAD_DMA_TO_DEVICE, 0), -ENOENT);
	cr_assert_not(iovad_use_iova(&st), "the client's state follows the daemon's");
	cr_assert_eq(iovad_dev_stats(dev, &s), 0);
	cr_assert_eq(s.iova_frees, s.iova_allocs);
	cr_assert_eq(s.mapped_bytes, 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

Test(api, merge_boundaries_and_identity)
{
	struct iovad_dev *sim0 = open_dev("sim0"), *k64 = open_dev("sim64k0");
	struct iovad_dev *id = open_dev("identity0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	struct iovad_iova_state st;
	uint64_t dma;

	cr_assert_eq(iovad_get_merge_boundary(sim0), 0xfff);
	cr_assert_eq(iovad_get_merge_boundary(k64), 0xffff);
	cr_assert_eq(iovad_get_merge_boundary(id), 0);
	cr_assert(iovad_dev_flags(id) & IOVAD_DEV_IDENTITY);
	errno = 0;
	cr_assert_not(iovad_iova_try_alloc(id, &st, iovad_mem_phys(m), 4096));
	cr_assert_eq(errno, EOPNOTSUPP);
	cr_assert_eq(iovad_map_phys(id, iovad_mem_phys(m) + 0x40, 4096, IOVAD_DMA_TO_DEVICE, 0,
				    &dma), 0);
	cr_assert_eq(dma, iovad_mem_phys(m) + 0x40, "identity: the bus address is phys");
	cr_assert_eq(iovad_unmap_phys(id, dma, 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	iovad_mem_free(m);
	iovad_dev_close(sim0);
	iovad_dev_close(k64);
	iovad_dev_close(id);
}

Test(api, untrusted_device_bounces)
{
	struct iovad_dev *dev = open_dev("untrusted0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	uint64_t phys = iovad_mem_phys(m) + 0x10;
	struct iovad_dev_stats s;
	struct iovad_iova_state st;
	uint8_t b[0x20];

	cr_assert(iovad_dev_flags(dev) & IOVAD_DEV_UNTRUSTED);
	fill_pattern(b, sizeof(b), 9);
	cr_assert(iovad_iova_try_alloc(dev, &st, phys, sizeof(b)));
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, sizeof(b), IOVAD_DMA_FROM_DEVICE, 0), 0);
	cr_assert(st.__size & IOVAD_IOVA_USE_SWIOTLB, "the bounce bit comes back to the client");
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, sizeof(b)), 0);
	cr_assert_eq(iovad_dev_dma_write(dev, st.addr, b, sizeof(b)), 0);
	cr_assert_neq(((uint8_t *)iovad_mem_addr(m))[0x10], b[0], "still in the bounce slot");
	cr_assert_eq(iovad_iova_destroy(dev, &st, sizeof(b), IOVAD_DMA_FROM_DEVICE, 0), 0);
	cr_assert_arr_eq((uint8_t *)iovad_mem_addr(m) + 0x10, b, sizeof(b), "copied back");
	cr_assert_eq(iovad_dev_stats(dev, &s), 0);
	cr_assert_eq(s.bounced_bytes, sizeof(b));
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

Test(api, lazy_domain_flushes_from_the_daemon_timer)
{
	struct iovad_dev *dev = open_dev("sim-lazy0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	struct iovad_dev_stats s0, s1;
	struct iovad_iova_state st;

	cr_assert(iovad_dev_flags(dev) & IOVAD_DEV_LAZY);
	cr_assert(iovad_iova_try_alloc(dev, &st, 0, 4096));
	cr_assert_eq(iovad_iova_link(dev, &st, iovad_mem_phys(m), 0, 4096, IOVAD_DMA_TO_DEVICE, 0),
		     0);
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, 4096), 0);
	cr_assert_eq(iovad_dev_stats(dev, &s0), 0);
	cr_assert_eq(iovad_iova_destroy(dev, &st, 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_dev_stats(dev, &s1), 0);
	cr_assert_eq(s1.iotlb_flushes, s0.iotlb_flushes, "deferred");
	/* The flush queue's 10 ms timer runs in the daemon (allow for a slow one). */
	for (int i = 0; i < 300 && s1.iotlb_flushes == s0.iotlb_flushes; i++) {
		usleep(10000);
		cr_assert_eq(iovad_dev_stats(dev, &s1), 0);
	}
	cr_assert_eq(s1.iotlb_flushes, s0.iotlb_flushes + 1);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

Test(api, streaming_map_and_unmap)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	uint8_t b[64], r[64];
	uint64_t dma;

	fill_pattern(b, sizeof(b), 5);
	memcpy(iovad_mem_addr(m), b, sizeof(b));
	cr_assert_eq(iovad_map_phys(dev, iovad_mem_phys(m), 4096, IOVAD_DMA_TO_DEVICE, 0, &dma), 0);
	cr_assert_eq(iovad_dev_dma_read(dev, dma, r, sizeof(r)), 0);
	cr_assert_arr_eq(r, b, sizeof(b));
	cr_assert_eq(iovad_unmap_phys(dev, dma, 8192, IOVAD_DMA_TO_DEVICE, 0), -ENOENT,
		     "wrong size: refused");
	cr_assert_eq(iovad_unmap_phys(dev, dma, 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_dev_dma_read(dev, dma, r, sizeof(r)), -EFAULT, "no longer ours");
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

Test(api, memory_stays_pinned_while_linked)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 16);
	struct iovad_iova_state st;
	uint64_t phys = iovad_mem_phys(m);
	uint8_t b = 0x5a, r = 0;

	cr_assert(iovad_iova_try_alloc(dev, &st, 0, 4096));
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, 4096, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, 4096), 0);
	iovad_mem_free(m);
	/* The handle is gone, the pages are not: the device still reaches them. */
	cr_assert_eq(iovad_dev_dma_write(dev, st.addr, &b, 1), 0);
	cr_assert_eq(iovad_dev_dma_read(dev, st.addr, &r, 1), 0);
	cr_assert_eq(r, 0x5a);
	cr_assert_eq(iovad_iova_destroy(dev, &st, 4096, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	iovad_dev_close(dev);
}

/* ---- link bookkeeping ------------------------------------------------------------- */

/* This client's linked bytes as the daemon counts them (LIST_CLIENTS). */
static uint64_t linked_bytes(void)
{
	struct proto_list q = { 0 };
	uint8_t buf[PROTO_FRAME_DEFAULT];
	struct proto_list_rpy r;
	uint64_t sid = iovad_session_id(c), ret = UINT64_MAX;
	int fd = raw_connect(d.sock);

	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_hello(fd), 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_LIST_CLIENTS, 3, &q, sizeof(q)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	memcpy(&r, buf + sizeof(struct proto_hdr), sizeof(r));
	for (uint32_t i = 0; i < r.count; i++) {
		struct proto_client_entry e;

		memcpy(&e, buf + sizeof(struct proto_hdr) + sizeof(r) + i * sizeof(e), sizeof(e));
		if (e.session_id == sid)
			ret = e.linked_bytes;
	}
	close(fd);
	cr_assert_neq(ret, UINT64_MAX, "our session is not listed");
	return ret;
}

/*
 * The daemon's link records (sorted, merged when contiguous on a sim
 * device, split by a hole) against a model: random runs linked with
 * contiguous or reversed phys (which merge, or not), random linked runs
 * unlinked from anywhere inside them; after every step the linked bytes
 * agree and the device reads what the model says each page maps.
 */
Test(api, link_records_follow_a_random_model)
{
	enum { PAGES = 64 };
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(PAGES * 4096);
	int map[PAGES]; /* IOVA page -> memory page, -1: not linked */
	struct iovad_iova_state st;
	uint64_t phys = iovad_mem_phys(m), linked = 0;
	unsigned int seed = (unsigned int)time(NULL);
	uint8_t *mem = iovad_mem_addr(m);

	for (int p = 0; p < PAGES; p++) {
		map[p] = -1;
		memset(mem + p * 4096, p + 1, 4096);
	}
	cr_log_info("seed %u", seed);
	srand(seed);
	cr_assert(iovad_iova_try_alloc(dev, &st, 0, PAGES * 4096));
	for (int step = 0; step < 300; step++) {
		int a = rand() % PAGES, len = 1, b;
		bool lnk = map[a] < 0;

		/* The run of pages around a in the same state (linked or not), cut at random. */
		for (b = a + 1; b < PAGES && (map[b] < 0) == lnk && len < 1 + rand() % 16; b++)
			len++;
		if (lnk) {
			/* Mostly phys in step with the IOVA (merges), sometimes from the far end (no merge). */
			bool mirror = rand() % 4 == 0;
			int first = mirror ? PAGES - a - len : a;

			cr_assert_eq(iovad_iova_link(dev, &st, phys + (uint64_t)first * 4096,
						     (size_t)a * 4096, (size_t)len * 4096,
						     IOVAD_DMA_BIDIRECTIONAL, 0), 0, "step %d", step);
			for (int p = 0; p < len; p++)
				map[a + p] = first + p;
			linked += (uint64_t)len * 4096;
		} else {
			cr_assert_eq(iovad_iova_unlink(dev, &st, (size_t)a * 4096, (size_t)len * 4096,
						       IOVAD_DMA_BIDIRECTIONAL, 0), 0, "step %d", step);
			for (int p = 0; p < len; p++)
				map[a + p] = -1;
			linked -= (uint64_t)len * 4096;
		}
		cr_assert_eq(iovad_iova_sync(dev, &st, 0, PAGES * 4096), 0);
		cr_assert_eq(linked_bytes(), linked, "step %d (seed %u)", step, seed);
		for (int k = 0; k < 4; k++) {
			int p = rand() % PAGES;
			uint8_t v = 0;
			int r = iovad_dev_dma_read(dev, st.addr + (uint64_t)p * 4096 + 7, &v, 1);

			if (map[p] < 0) {
				cr_assert_eq(r, -EFAULT, "page %d is not linked (step %d)", p, step);
			} else {
				cr_assert_eq(r, 0, "page %d (step %d)", p, step);
				cr_assert_eq(v, map[p] + 1, "page %d maps memory page %d (step %d)", p,
					     map[p], step);
			}
		}
	}
	/* Over whatever holes are left: the state is released either way. */
	(void)iovad_iova_destroy(dev, &st, PAGES * 4096, IOVAD_DMA_BIDIRECTIONAL, 0);
	cr_assert_not(iovad_use_iova(&st));
	cr_assert_eq(linked_bytes(), 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

/* CLIENT_MAPS from every start: states in IOVA order, then mappings, each exactly once. */
Test(api, client_maps_pages_through_states_then_mappings)
{
	enum { NS = 5, NM = 3 };
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	struct iovad_iova_state st[NS];
	uint64_t dma[NM], phys = iovad_mem_phys(m);
	int fd;

	for (int i = 0; i < NS; i++)
		cr_assert(iovad_iova_try_alloc(dev, &st[i], 0, 8192));
	for (int i = 0; i < NM; i++)
		cr_assert_eq(iovad_map_phys(dev, phys + (uint64_t)i * 4096, 4096,
					    IOVAD_DMA_TO_DEVICE, 0, &dma[i]), 0);
	fd = raw_connect(d.sock);
	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_hello(fd), 0);
	for (uint32_t start = 0; start <= NS + NM; start++) {
		struct proto_list q = { .session_id = iovad_session_id(c), .start = start };
		struct proto_list_rpy r;
		uint8_t buf[4096];
		uint64_t prev = 0;

		cr_assert_eq(raw_send(fd, PROTO_CMD_CLIENT_MAPS, 20 + start, &q, sizeof(q)), 0);
		cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
		cr_assert_eq(frame_status(buf), 0);
		memcpy(&r, buf + sizeof(struct proto_hdr), sizeof(r));
		cr_assert_eq(r.total, NS + NM);
		cr_assert_eq(r.count, NS + NM - start);
		for (uint32_t k = 0; k < r.count; k++) {
			struct proto_map_entry e;
			uint32_t i = start + k;
			bool found = false;

			memcpy(&e, buf + sizeof(struct proto_hdr) + sizeof(r) + k * sizeof(e),
			       sizeof(e));
			cr_assert_eq(e.kind, i < NS ? 1u : 2u, "entry %u", i);
			/* In IOVA order within each kind. */
			if (i != NS)
				cr_assert_gt(e.iova, prev, "entry %u out of order", i);
			prev = e.iova;
			for (int j = 0; j < (i < NS ? NS : NM); j++)
				found |= e.iova == (i < NS ? st[j].addr : dma[j]);
			cr_assert(found, "entry %u names IOVA %#lx, which is none of ours", i,
				  (unsigned long)e.iova);
		}
	}
	close(fd);
	for (int i = 0; i < NM; i++)
		cr_assert_eq(iovad_unmap_phys(dev, dma[i], 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	for (int i = 0; i < NS; i++)
		cr_assert_eq(iovad_iova_free(dev, &st[i]), 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

/* ---- batching ------------------------------------------------------------------- */

Test(api, batch_is_one_round_trip_and_one_flush)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 20);
	struct iovad_batch *b;
	struct iovad_iova_state st;
	struct iovad_dev_stats s0, s1;
	struct proto_status_rpy a, z;
	const int n = 64;

	cr_assert(iovad_iova_try_alloc(dev, &st, 0, (size_t)n * 4096));
	cr_assert_eq(iovad_batch_new(c, &b), 0);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(iovad_batch_link(b, dev, &st, iovad_mem_phys(m) + (uint64_t)i * 4096,
					      (size_t)i * 4096, 4096, IOVAD_DMA_TO_DEVICE, 0), 2 * i);
		cr_assert_eq(iovad_batch_sync(b, dev, &st, (size_t)i * 4096, 4096), 2 * i + 1);
	}
	cr_assert_eq(iovad_batch_count(b), 2u * n);
	cr_assert_eq(iovad_dev_stats(dev, &s0), 0);
	a = daemon_status(&d);
	cr_assert_eq(iovad_batch_submit(b, NULL, NULL), 0);
	cr_assert_eq(iovad_batch_wait(b), 0);
	z = daemon_status(&d);
	/* Frames after the first STATUS: the batch, then the second probe's HELLO and STATUS. */
	cr_assert_eq(z.frames_in - a.frames_in, 3, "one round trip for %d operations", 2 * n);
	for (int i = 0; i < 2 * n; i++)
		cr_assert_eq(iovad_batch_op_status(b, (size_t)i), 0);
	cr_assert_eq(iovad_batch_flushes(b), 1);
	cr_assert_eq(iovad_dev_stats(dev, &s1), 0);
	cr_assert_eq(s1.syncs - s0.syncs, (uint64_t)n);
	cr_assert_eq(s1.iotlb_flushes - s0.iotlb_flushes, 1, "%d syncs, one flush", n);
	cr_assert_eq(s1.links - s0.links, (uint64_t)n);
	iovad_batch_free(b);
	cr_assert_eq(iovad_iova_destroy(dev, &st, (size_t)n * 4096, IOVAD_DMA_TO_DEVICE, 0), 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

static void batch_done(struct iovad_batch *b, int status, void *arg)
{
	(void)b;
	*(int *)arg = status + 1000;
}

Test(api, async_batch_completes_through_the_event_fd)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct iovad_mem *m = alloc_mem(1 << 16);
	struct iovad_batch *b;
	uint64_t dma = 0;
	int done = 0, ran = 0;

	cr_assert_eq(iovad_batch_new(c, &b), 0);
	cr_assert_eq(iovad_batch_map(b, dev, iovad_mem_phys(m), 8192, IOVAD_DMA_TO_DEVICE, 0, &dma),
		     0);
	cr_assert_eq(iovad_batch_submit(b, batch_done, &done), 0);
	cr_assert_eq(iovad_batch_submit(b, batch_done, &done), -EBUSY);
	for (int i = 0; i < 200 && !done; i++) {
		struct pollfd p = { .fd = iovad_event_fd(c), .events = POLLIN };

		if (poll(&p, 1, 10) > 0)
			ran += iovad_process(c);
	}
	cr_assert_eq(done, 1000, "the callback ran with status 0");
	cr_assert_eq(ran, 1);
	cr_assert_eq(iovad_batch_op_status(b, 0), 0);
	cr_assert_neq(dma, 0, "the map's result was written back");
	cr_assert_eq(iovad_unmap_phys(dev, dma, 8192, IOVAD_DMA_TO_DEVICE, 0), 0);
	iovad_batch_free(b);
	iovad_mem_free(m);
	iovad_dev_close(dev);
}

/* ---- disconnect in the middle of a batch ----------------------------------------- */

Test(api, disconnect_mid_batch_tears_everything_down)
{
	struct iovad_dev *dev = open_dev("sim0");
	struct proto_dev_open dop = { .name = "sim0" };
	struct proto_mem_import mi = { .offset = 0, .size = 1 << 20 };
	struct proto_iova_alloc ia = { .dev = 1, .size = 64 * 4096 };
	struct proto_mem_import_rpy mrpy;
	struct proto_iova_alloc_rpy arpy;
	struct proto_status_rpy before, after;
	struct iovad_dev_stats s;
	uint8_t frame[sizeof(struct proto_hdr) + sizeof(struct proto_batch) +
		      64 * sizeof(struct proto_op)];
	uint8_t buf[512];
	struct proto_batch bh = { .count = 64 };
	struct proto_hdr h;
	int fd, mfd;

	before = daemon_status(&d);
	fd = raw_connect(d.sock);
	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_hello(fd), 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_DEV_OPEN, 2, &dop, sizeof(dop)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), 0);
	mfd = memfd_create("raw", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	cr_assert_eq(ftruncate(mfd, 1 << 20), 0);
	cr_assert_eq(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	cr_assert_eq(
		raw_send_fds(fd, PROTO_VERSION, PROTO_CMD_MEM_IMPORT, 3, &mi, sizeof(mi), &mfd, 1),
		0);
	close(mfd);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), 0);
	memcpy(&mrpy, buf + sizeof(struct proto_hdr), sizeof(mrpy));
	cr_assert_eq(raw_send(fd, PROTO_CMD_IOVA_ALLOC, 4, &ia, sizeof(ia)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), 0);
	memcpy(&arpy, buf + sizeof(struct proto_hdr), sizeof(arpy));

	/* A batch of 64 links + syncs: the first, complete, batch is answered... */
	proto_hdr_init(&h, PROTO_VERSION, PROTO_CMD_BATCH, sizeof(frame), 5);
	memcpy(frame, &h, sizeof(h));
	memcpy(frame + sizeof(h), &bh, sizeof(bh));
	for (int i = 0; i < 64; i++) {
		struct proto_op op = { .opcode = i % 2 ? PROTO_OP_SYNC : PROTO_OP_LINK,
				       .dev = 1, .iova = arpy.addr,
				       .phys = mrpy.phys + (uint64_t)(i / 2) * 4096,
				       .offset = (uint64_t)(i / 2) * 4096, .size = 4096 };

		memcpy(frame + sizeof(h) + sizeof(bh) + (size_t)i * sizeof(op), &op, sizeof(op));
	}
	cr_assert_eq(send(fd, frame, sizeof(frame), MSG_NOSIGNAL), (ssize_t)sizeof(frame));
	/* ...and a second one is cut in half by the client going away. */
	proto_hdr_init(&h, PROTO_VERSION, PROTO_CMD_BATCH, sizeof(frame), 6);
	memcpy(frame, &h, sizeof(h));
	cr_assert_eq(send(fd, frame, sizeof(frame) / 2, MSG_NOSIGNAL), (ssize_t)sizeof(frame) / 2);
	close(fd);

	after = daemon_wait_teardowns(&d, before.teardowns + 1);
	cr_assert_eq(after.teardowns - before.teardowns, 1);
	cr_assert_eq(after.leaked_states - before.leaked_states, 1);
	cr_assert_eq(after.leaked_mems - before.leaked_mems, 1);
	cr_assert_eq(after.mem_bytes, before.mem_bytes, "the client's memory is gone");
	cr_assert_eq(iovad_dev_stats(dev, &s), 0);
	cr_assert_eq(s.iova_allocs, s.iova_frees, "every IOVA freed");
	cr_assert_eq(s.links, 32);
	cr_assert_eq(s.unlinks, 1, "one teardown destroy");
	cr_assert_eq(s.mapped_bytes, 0);
	iovad_dev_close(dev);
}

Test(api, sigterm_is_a_graceful_exit)
{
	iovad_disconnect(c);
	c = NULL;
	cr_assert_eq(daemon_stop(&d), 0);
}

/* LIST_CLIENTS pages by position: every connection appears once, page by page. */
Test(api, list_clients_pages_through_every_connection)
{
	enum { N = 5 };
	struct iovad *cl[N];
	uint64_t seen[N + 2] = { 0 };
	uint32_t nseen = 0;
	int fd;

	for (int i = 0; i < N; i++)
		cr_assert_eq(iovad_connect(d.sock, &cl[i]), 0);
	fd = raw_connect(d.sock);
	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_hello(fd), 0);
	/* One entry per request, from each start: the walk must land on entry start. */
	for (uint32_t start = 0; start < N + 2; start++) {
		struct proto_list q = { .start = start };
		struct proto_list_rpy r;
		struct proto_client_entry e;
		uint8_t buf[4096];
		int n;

		cr_assert_eq(raw_send(fd, PROTO_CMD_LIST_CLIENTS, 10 + start, &q, sizeof(q)), 0);
		n = raw_recv(fd, buf, sizeof(buf), 2000);
		cr_assert_geq(n, (int)(sizeof(struct proto_hdr) + sizeof(r) + sizeof(e)));
		memcpy(&r, buf + sizeof(struct proto_hdr), sizeof(r));
		cr_assert_eq(r.total, N + 2, "the suite's client, five more and this one: %u", r.total);
		cr_assert_eq(r.count, N + 2 - start);
		memcpy(&e, buf + sizeof(struct proto_hdr) + sizeof(r), sizeof(e));
		for (uint32_t k = 0; k < nseen; k++)
			cr_assert_neq(seen[k], e.session_id, "start %u repeats a session", start);
		seen[nseen++] = e.session_id;
	}
	close(fd);
	for (int i = 0; i < N; i++)
		iovad_disconnect(cl[i]);
}
