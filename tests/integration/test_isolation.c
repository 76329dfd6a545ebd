// SPDX-License-Identifier: MIT
/*
 * test_isolation.c - one client can never reach another's states, mappings
 * or memory, and the access policy keeps out who is not allowed.
 */
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

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

TestSuite(isolation, .init = setup, .fini = teardown, .timeout = 60);

struct client {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_iova_state st;
	uint64_t map;
};

static void client_up(struct client *k, unsigned int seed)
{
	uint8_t out[4096];

	cr_assert_eq(iovad_connect(d.sock, &k->c), 0);
	cr_assert_eq(iovad_dev_open(k->c, "sim0", &k->dev), 0);
	cr_assert_eq(iovad_mem_alloc(k->c, 1 << 20, &k->mem), 0);
	fill_pattern(iovad_mem_addr(k->mem), 1 << 20, seed);
	cr_assert(iovad_iova_try_alloc(k->dev, &k->st, 0, 4 * 4096));
	cr_assert_eq(iovad_iova_link(k->dev, &k->st, iovad_mem_phys(k->mem), 0, 4 * 4096,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(k->dev, &k->st, 0, 4 * 4096), 0);
	cr_assert_eq(iovad_map_phys(k->dev, iovad_mem_phys(k->mem) + 8 * 4096, 4096,
				    IOVAD_DMA_TO_DEVICE, 0, &k->map), 0);
	cr_assert_eq(iovad_dev_dma_read(k->dev, k->st.addr, out, sizeof(out)), 0);
	cr_assert_arr_eq(out, iovad_mem_addr(k->mem), sizeof(out));
}

static void client_down(struct client *k)
{
	iovad_mem_free(k->mem);
	iovad_dev_close(k->dev);
	iovad_disconnect(k->c);
}

Test(isolation, another_clients_state_and_mapping_are_unreachable)
{
	struct client a, b;
	struct iovad_iova_state forged;
	uint8_t buf[64];

	client_up(&a, 1);
	client_up(&b, 2);
	forged = a.st; /* B knows A's IOVA (it is no secret) and tries everything */
	cr_assert_eq(iovad_iova_link(b.dev, &forged, iovad_mem_phys(b.mem), 4 * 4096, 4096,
				     IOVAD_DMA_BIDIRECTIONAL, 0), -ENOENT);
	cr_assert_eq(iovad_iova_sync(b.dev, &forged, 0, 4096), -ENOENT);
	cr_assert_eq(iovad_iova_unlink(b.dev, &forged, 0, 4096, IOVAD_DMA_BIDIRECTIONAL, 0),
		     -ENOENT);
	cr_assert_eq(iovad_iova_destroy(b.dev, &forged, 4 * 4096, IOVAD_DMA_BIDIRECTIONAL, 0),
		     -ENOENT);
	forged = a.st;
	cr_assert_eq(iovad_iova_free(b.dev, &forged), -ENOENT);
	cr_assert_eq(iovad_unmap_phys(b.dev, a.map, 4096, IOVAD_DMA_TO_DEVICE, 0), -ENOENT);
	/* The device cannot be pointed at A's IOVAs on B's behalf. */
	/* Nothing of b's is mapped there: a not-present fault, and no byte moves. */
	memset(buf, 0x5a, sizeof(buf));
	cr_assert_eq(iovad_dev_dma_read(b.dev, a.st.addr, buf, sizeof(buf)), -EFAULT);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0x5a, "no byte of a's may reach b");
	{
		struct iovad_fault f;

		cr_assert_eq(iovad_dev_last_fault(b.dev, &f), 0);
		cr_assert_eq(f.iova, a.st.addr);
		cr_assert_eq(f.reason, 1, "not present");
	}
	cr_assert_eq(iovad_dev_dma_write(b.dev, a.st.addr, buf, sizeof(buf)), -EFAULT);
	cr_assert_eq(iovad_dev_dma_read(b.dev, a.map, buf, sizeof(buf)), -EFAULT);
	/* Nor can B link A's memory into its own state. */
	cr_assert_eq(iovad_iova_unlink(b.dev, &b.st, 0, 4096, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_link(b.dev, &b.st, iovad_mem_phys(a.mem), 0, 4096,
				     IOVAD_DMA_BIDIRECTIONAL, 0), -EFAULT);
	cr_assert_eq(iovad_map_phys(b.dev, iovad_mem_phys(a.mem), 4096, IOVAD_DMA_TO_DEVICE, 0,
				    &(uint64_t){ 0 }), -EFAULT);
	/* A is untouched and still works. */
	cr_assert_eq(iovad_dev_dma_read(a.dev, a.st.addr, buf, sizeof(buf)), 0);
	cr_assert_arr_eq(buf, iovad_mem_addr(a.mem), sizeof(buf));
	cr_assert_eq(iovad_iova_destroy(a.dev, &a.st, 4 * 4096, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	client_down(&a);
	client_down(&b);
}

Test(isolation, forged_handles_are_refused)
{
	struct proto_dev_ref dr = { .dev = 7 };
	struct proto_mem_ref mr = { .mem = 12345 };
	struct proto_iova_alloc ia = { .dev = 3, .size = 4096 };
	struct proto_dma dm = { .dev = 1, .len = 16, .iova = 0xfffff000 };
	struct proto_dev_open dop = { .name = "sim0" };
	uint8_t buf[256];
	int fd = raw_connect(d.sock);

	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_hello(fd), 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_DEV_STATS, 2, &dr, sizeof(dr)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), -EBADF);
	cr_assert_eq(raw_send(fd, PROTO_CMD_MEM_FREE, 3, &mr, sizeof(mr)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), -EBADF);
	cr_assert_eq(raw_send(fd, PROTO_CMD_IOVA_ALLOC, 4, &ia, sizeof(ia)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), -EBADF);
	cr_assert_eq(raw_send(fd, PROTO_CMD_DEV_OPEN, 5, &dop, sizeof(dop)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), 0);
	/* A valid device handle but an IOVA this client never had. */
	cr_assert_eq(raw_send(fd, PROTO_CMD_DMA_READ, 6, &dm, sizeof(dm)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 2000), 0);
	cr_assert_eq(frame_status(buf), -EFAULT);
	close(fd);
}

Test(isolation, policy_refuses_other_users)
{
	struct passwd *nobody = getpwnam("nobody");
	pid_t pid;
	int status;

	if (geteuid() != 0 || !nobody)
		cr_skip_test("needs root to become 'nobody'");
	/* Open the directory and socket to everyone so that only the daemon's policy decides. */
	cr_assert_eq(chmod(d.dir, 0755), 0);
	cr_assert_eq(chmod(d.sock, 0666), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct iovad *c;
		int r;

		if (setgroups(0, NULL) || setgid(nobody->pw_gid) || setuid(nobody->pw_uid))
			_exit(10);
		r = iovad_connect(d.sock, &c);
		_exit(r == -EACCES ? 0 : 20 + (r < 0 ? -r : 0) % 50);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "connect as nobody: exit %d", WEXITSTATUS(status));
}

Test(isolation, socket_group_members_are_allowed)
{
	struct passwd *nobody = getpwnam("nobody");
	struct group *g = getgrnam("nogroup");
	pid_t pid;
	int status;

	if (geteuid() != 0 || !nobody || !g)
		cr_skip_test("needs root, 'nobody' and 'nogroup'");
	/* The daemon re-reads the socket's group on SIGHUP. */
	cr_assert_eq(chmod(d.dir, 0755), 0);
	cr_assert_eq(chown(d.sock, 0, g->gr_gid), 0);
	cr_assert_eq(chmod(d.sock, 0660), 0);
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	usleep(100000);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct iovad *c;
		struct iovad_dev *dev;
		gid_t grp = g->gr_gid;

		if (setgroups(1, &grp) || setgid(nobody->pw_gid) || setuid(nobody->pw_uid))
			_exit(10);
		if (iovad_connect(d.sock, &c))
			_exit(11);
		if (iovad_dev_open(c, "sim0", &dev))
			_exit(12);
		iovad_dev_close(dev);
		iovad_disconnect(c);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "member of the socket's group: exit %d",
		     WEXITSTATUS(status));
}
