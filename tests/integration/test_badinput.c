// SPDX-License-Identifier: MIT
/*
 * test_badinput.c - hostile and broken clients: garbage, truncated and
 * oversized frames, wrong versions, unknown types, bogus fds and floods.
 * Each gets an error reply or a disconnect; meanwhile a well-behaved client
 * keeps working and the daemon's memory and fd count stay bounded.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "harness.h"

static struct daemon d;

static void setup(void)
{
	daemon_start(&d);
}

static void teardown(void)
{
	daemon_stop(&d);
}

TestSuite(badinput, .init = setup, .fini = teardown, .timeout = 120);

/* A good client doing real work while the bad ones misbehave. */
struct good {
	pthread_t t;
	atomic_bool stop;
	atomic_int rounds;
	atomic_int errors;
};

static void *good_client(void *arg)
{
	struct good *g = arg;
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	uint8_t out[256], in[256];

	if (iovad_connect(d.sock, &c) || iovad_dev_open(c, "sim0", &dev) ||
	    iovad_mem_alloc(c, 1 << 16, &m)) {
		g->errors++;
		return NULL;
	}
	while (!g->stop) {
		struct iovad_iova_state st;

		fill_pattern(out, sizeof(out), (unsigned int)g->rounds);
		if (!iovad_iova_try_alloc(dev, &st, 0, 4096) ||
		    iovad_iova_link(dev, &st, iovad_mem_phys(m), 0, 4096, IOVAD_DMA_BIDIRECTIONAL,
				    0) ||
		    iovad_iova_sync(dev, &st, 0, 4096) ||
		    iovad_dev_dma_write(dev, st.addr, out, sizeof(out)) ||
		    iovad_dev_dma_read(dev, st.addr, in, sizeof(in)) || memcmp(in, out, sizeof(in)) ||
		    iovad_iova_destroy(dev, &st, 4096, IOVAD_DMA_BIDIRECTIONAL, 0))
			g->errors++;
		g->rounds++;
	}
	iovad_mem_free(m);
	iovad_dev_close(dev);
	iovad_disconnect(c);
	return NULL;
}

static void good_start(struct good *g)
{
	memset(g, 0, sizeof(*g));
	cr_assert_eq(pthread_create(&g->t, NULL, good_client, g), 0);
	for (int i = 0; i < 200 && g->rounds < 5; i++)
		usleep(5000);
}

static void good_stop(struct good *g)
{
	int before = g->rounds;

	/* It must still be making progress after all the abuse. */
	for (int i = 0; i < 200 && g->rounds < before + 5; i++)
		usleep(5000);
	g->stop = true;
	pthread_join(g->t, NULL);
	cr_assert_eq(g->errors, 0, "the good client saw %d errors", (int)g->errors);
	cr_assert_geq(g->rounds, before + 5, "the good client stalled");
}

/* Expect an ERROR frame with status want and then EOF. */
static void expect_error_and_close(int fd, int32_t want)
{
	uint8_t buf[256];
	int n = raw_recv(fd, buf, sizeof(buf), 3000);

	cr_assert_gt(n, 0, "an error reply, got %d", n);
	cr_assert_eq(frame_type(buf), PROTO_RPY_ERROR);
	cr_assert_eq(frame_status(buf), want);
	cr_assert_eq(raw_recv(fd, buf, sizeof(buf), 3000), 0, "then the daemon closes");
}

Test(badinput, garbage_truncated_oversized_and_wrong_versions)
{
	struct good g;
	uint8_t junk[4096];
	struct proto_hdr h;
	struct proto_hello hello = { .version_min = 1, .version_max = 1,
				     .max_frame = PROTO_FRAME_DEFAULT, .max_batch = 8 };
	int fd;

	good_start(&g);

	/* Random garbage: a bad magic at the first header. */
	srand(42);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rand();
	junk[0] = 0x00; /* not 'I' */
	fd = raw_connect(d.sock);
	cr_assert_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
	{
		uint8_t buf[256];
		int n = raw_recv(fd, buf, sizeof(buf), 3000);

		/* Either the length or the magic is wrong first; both end the connection. */
		cr_assert_gt(n, 0);
		cr_assert_eq(frame_type(buf), PROTO_RPY_ERROR);
		cr_assert(frame_status(buf) == -EBADMSG || frame_status(buf) == -EMSGSIZE);
		cr_assert_eq(raw_recv(fd, buf, sizeof(buf), 3000), 0);
	}
	close(fd);

	/* Oversized length. */
	fd = raw_connect(d.sock);
	proto_hdr_init(&h, 1, PROTO_CMD_HELLO, 1u << 30, 9);
	cr_assert_eq(send(fd, &h, sizeof(h), MSG_NOSIGNAL), (ssize_t)sizeof(h));
	expect_error_and_close(fd, -EMSGSIZE);
	close(fd);

	/* Undersized length. */
	fd = raw_connect(d.sock);
	proto_hdr_init(&h, 1, PROTO_CMD_HELLO, 3, 9);
	cr_assert_eq(send(fd, &h, sizeof(h), MSG_NOSIGNAL), (ssize_t)sizeof(h));
	expect_error_and_close(fd, -EMSGSIZE);
	close(fd);

	/* A wrong version in the header. */
	fd = raw_connect(d.sock);
	{
		uint8_t f[sizeof(h) + sizeof(hello)];

		proto_hdr_init(&h, 77, PROTO_CMD_HELLO, sizeof(f), 9);
		memcpy(f, &h, sizeof(h));
		memcpy(f + sizeof(h), &hello, sizeof(hello));
		cr_assert_eq(send(fd, f, sizeof(f), MSG_NOSIGNAL), (ssize_t)sizeof(f));
	}
	expect_error_and_close(fd, -EPROTONOSUPPORT);
	close(fd);

	/* No common version in HELLO's range: refused with an error frame. */
	fd = raw_connect(d.sock);
	hello.version_min = 50;
	hello.version_max = 60;
	cr_assert_eq(raw_send(fd, PROTO_CMD_HELLO, 9, &hello, sizeof(hello)), 0);
	{
		uint8_t buf[256];

		cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 3000), 0);
		cr_assert_eq(frame_status(buf), -EPROTONOSUPPORT);
	}
	close(fd);

	/* A request before HELLO. */
	fd = raw_connect(d.sock);
	cr_assert_eq(raw_send(fd, PROTO_CMD_STATUS, 9, NULL, 0), 0);
	expect_error_and_close(fd, -EPROTONOSUPPORT);
	close(fd);

	/* Truncated: half a frame, then gone. */
	for (int i = 0; i < 20; i++) {
		fd = raw_connect(d.sock);
		proto_hdr_init(&h, 1, PROTO_CMD_HELLO, sizeof(h) + sizeof(hello), 9);
		cr_assert_eq(send(fd, &h, 10 + i % 14, MSG_NOSIGNAL), 10 + i % 14);
		close(fd);
	}
	cr_assert(daemon_alive(&d));
	good_stop(&g);
}

Test(badinput, unknown_types_and_reserved_fields_keep_the_connection)
{
	uint8_t buf[256], body[8] = { 0 };
	struct proto_dev_ref dr = { .dev = 1, .reserved = 5 };
	int fd = raw_connect(d.sock);

	cr_assert_eq(raw_hello(fd), 0);
	cr_assert_eq(raw_send(fd, 0x7777, 10, body, sizeof(body)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_type(buf), PROTO_RPY_ERROR);
	cr_assert_eq(frame_status(buf), -ENOSYS);
	cr_assert_eq(raw_send(fd, PROTO_CMD_DEV_STATS, 11, &dr, sizeof(dr)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_type(buf), PROTO_CMD_DEV_STATS | PROTO_RPY);
	cr_assert_eq(frame_status(buf), -EINVAL, "non-zero reserved field");
	/* A wrong length for the type. */
	cr_assert_eq(raw_send(fd, PROTO_CMD_DEV_STATS, 12, body, 4), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), -EBADMSG);
	/* Still a working connection. */
	cr_assert_eq(raw_send(fd, PROTO_CMD_STATUS, 13, NULL, 0), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), 0);
	close(fd);
}

Test(badinput, bogus_fds_are_refused_and_never_pile_up)
{
	struct proto_mem_import mi = { .size = 4096 };
	uint8_t buf[256];
	int fd = raw_connect(d.sock), p[2], nfds0, fds[40];

	cr_assert_eq(raw_hello(fd), 0);
	nfds0 = daemon_nfds(&d);
	/* No fd at all. */
	cr_assert_eq(
		raw_send_fds(fd, PROTO_VERSION, PROTO_CMD_MEM_IMPORT, 20, &mi, sizeof(mi), NULL, 0),
		0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), -EBADF);
	/* A pipe is not memory. */
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(raw_send_fds(fd, PROTO_VERSION, PROTO_CMD_MEM_IMPORT, 20, &mi, sizeof(mi),
				  &p[0], 1),
		     0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), -EBADF);
	/* A memfd the client could still shrink under the daemon's mapping. */
	{
		int mfd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);

		cr_assert_eq(ftruncate(mfd, 4096), 0);
		cr_assert_eq(raw_send_fds(fd, PROTO_VERSION, PROTO_CMD_MEM_IMPORT, 20, &mi,
					  sizeof(mi), &mfd, 1),
			     0);
		cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
		cr_assert_eq(frame_status(buf), -EPERM);
		close(mfd);
	}
	/* A sealed memfd smaller than the range asked for. */
	{
		int mfd = memfd_create("small", MFD_CLOEXEC | MFD_ALLOW_SEALING);

		cr_assert_eq(ftruncate(mfd, 4096), 0);
		cr_assert_eq(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
		mi.size = 1 << 20;
		cr_assert_eq(raw_send_fds(fd, PROTO_VERSION, PROTO_CMD_MEM_IMPORT, 20, &mi,
					  sizeof(mi), &mfd, 1),
			     0);
		cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
		cr_assert_eq(frame_status(buf), -EINVAL);
		close(mfd);
	}
	/* 40 fds riding on a STATUS frame, again and again: extras are closed. */
	for (int i = 0; i < 40; i++)
		fds[i] = p[1];
	for (int round = 0; round < 10; round++) {
		cr_assert_eq(
			raw_send_fds(fd, PROTO_VERSION, PROTO_CMD_STATUS, 20, NULL, 0, fds, 40), 0);
		cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	}
	cr_assert_leq(daemon_nfds(&d), nfds0 + 16, "held fds are capped");
	close(fd);
	usleep(50000);
	cr_assert_leq(daemon_nfds(&d), nfds0, "and all released at disconnect");
	close(p[0]);
	close(p[1]);
}

Test(badinput, floods_stay_bounded)
{
	struct good g;
	long rss0, rss1;
	uint8_t junk[65536];
	int fd, sent = 0;

	good_start(&g);
	rss0 = daemon_rss_kb(&d);

	/* A client that sends requests as fast as it can and never reads a reply. */
	fd = raw_connect(d.sock);
	cr_assert_eq(raw_hello(fd), 0);
	{
		struct proto_dma dm = { .dev = 1, .len = 60000, .iova = 0x1000 };
		uint8_t f[sizeof(struct proto_hdr) + sizeof(dm)];
		struct proto_hdr h;
		int fl = fcntl(fd, F_GETFL);

		/* DMA_READ on a bad handle: a small request, an error reply each. */
		proto_hdr_init(&h, PROTO_VERSION, PROTO_CMD_DMA_READ, sizeof(f), 1);
		memcpy(f, &h, sizeof(h));
		memcpy(f + sizeof(h), &dm, sizeof(dm));
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		for (int i = 0; i < 400000; i++) {
			ssize_t n = send(fd, f, sizeof(f), MSG_NOSIGNAL);

			if (n < 0)
				break; /* the daemon stopped reading: backpressure works */
			sent++;
		}
	}
	cr_assert_lt(sent, 400000, "the daemon must stop reading a client that never reads");

	/* Garbage floods on other connections. */
	memset(junk, 'A', sizeof(junk));
	for (int i = 0; i < 50; i++) {
		int j = raw_connect(d.sock);

		(void)!send(j, junk, sizeof(junk), MSG_NOSIGNAL | MSG_DONTWAIT);
		close(j);
	}
	rss1 = daemon_rss_kb(&d);
	cr_assert_lt(rss1 - rss0, 32 * 1024, "RSS grew by %ld kB", rss1 - rss0);
	good_stop(&g);
	close(fd);
	cr_assert(daemon_alive(&d));
}
