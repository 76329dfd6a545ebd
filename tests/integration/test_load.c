// SPDX-License-Identifier: MIT
/*
 * test_load.c - 64 concurrent clients, each with several threads sharing
 * one connection (so requests from many threads are pipelined on it), each
 * thread mapping, DMA-ing and unmapping its own buffers and checking every
 * byte. At the end the daemon's counters must add up.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

#define CLIENTS 64
#define THREADS 4
#define ROUNDS 100

static struct daemon d;
static atomic_int failures;

struct client {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	int idx;
};

struct worker {
	struct client *k;
	int t;
};

static void *worker(void *arg)
{
	struct worker *w = arg;
	struct client *k = w->k;
	uint64_t base = iovad_mem_phys(k->mem) + (uint64_t)w->t * 16 * 4096;
	uint8_t out[1024], in[1024];

	for (int r = 0; r < ROUNDS; r++) {
		struct iovad_iova_state st;
		size_t len = (size_t)(1 + (r + w->t) % 8) * 4096;

		fill_pattern(out, sizeof(out), (unsigned int)(k->idx * 1000 + w->t * 100 + r));
		if (!iovad_iova_try_alloc(k->dev, &st, base, len) ||
		    iovad_iova_link(k->dev, &st, base, 0, len, IOVAD_DMA_BIDIRECTIONAL, 0) ||
		    iovad_iova_sync(k->dev, &st, 0, len) ||
		    iovad_dev_dma_write(k->dev, st.addr + len - sizeof(out), out, sizeof(out)) ||
		    iovad_dev_dma_read(k->dev, st.addr + len - sizeof(out), in, sizeof(in)) ||
		    memcmp(in, out, sizeof(in)) ||
		    memcmp((uint8_t *)iovad_mem_addr(k->mem) + (base - iovad_mem_phys(k->mem)) + len -
			   sizeof(out), out, sizeof(out)) ||
		    iovad_iova_destroy(k->dev, &st, len, IOVAD_DMA_BIDIRECTIONAL, 0))
			failures++;
	}
	return NULL;
}

static void *client_main(void *arg)
{
	struct client *k = arg;
	struct worker w[THREADS];
	pthread_t t[THREADS];

	if (iovad_connect(d.sock, &k->c) || iovad_dev_open(k->c, "sim0", &k->dev) ||
	    iovad_mem_alloc(k->c, THREADS * 16 * 4096, &k->mem)) {
		failures++;
		return NULL;
	}
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ k, i };
		pthread_create(&t[i], NULL, worker, &w[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	iovad_mem_free(k->mem);
	iovad_dev_close(k->dev);
	iovad_disconnect(k->c);
	return NULL;
}

Test(load, sixty_four_clients_with_threads, .timeout = 240)
{
	static struct client k[CLIENTS];
	pthread_t t[CLIENTS];
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_dev_stats s;
	struct proto_status_rpy st;

	daemon_start(&d);
	for (int i = 0; i < CLIENTS; i++) {
		k[i].idx = i;
		cr_assert_eq(pthread_create(&t[i], NULL, client_main, &k[i]), 0);
	}
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(failures, 0, "%d operations failed", (int)failures);

	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_dev_stats(dev, &s), 0);
	cr_assert_eq(s.iova_allocs, (uint64_t)CLIENTS * THREADS * ROUNDS);
	cr_assert_eq(s.iova_frees, s.iova_allocs);
	cr_assert_eq(s.links, s.iova_allocs);
	cr_assert_eq(s.dma_writes, s.iova_allocs);
	cr_assert_eq(s.mapped_bytes, 0);
	iovad_dev_close(dev);
	iovad_disconnect(c);
	st = daemon_status(&d);
	/* The clients, the readiness probe, the stats client and this STATUS probe. */
	cr_assert_eq(st.sessions_total, CLIENTS + 3);
	cr_assert_eq(st.teardowns, 0, "every client cleaned up after itself");
	cr_assert_eq(daemon_stop(&d), 0);
}
