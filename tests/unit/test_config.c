// SPDX-License-Identifier: MIT
/*
 * test_config.c - the configuration file: defaults, every key, errors that
 * name the file and the line, and printing the effective configuration in a
 * form that parses back to the same thing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];

static void write_file(const char *text)
{
	FILE *f;

	strcpy(path, "/tmp/iovad-cfg-XXXXXX");
	close(mkstemp(path));
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static void cleanup(void)
{
	if (path[0])
		unlink(path);
}

TestSuite(config, .fini = cleanup);

static int load(const char *text, struct config *c, char *err, size_t len)
{
	write_file(text);
	return config_load(path, c, err, len);
}

static void expect_error(const char *text, int line, const char *needle)
{
	static struct config c;
	char err[512], want[600];

	cr_assert_eq(load(text, &c, err, sizeof(err)), -EINVAL, "accepted:\n%s", text);
	snprintf(want, sizeof(want), "%s:%d: ", path, line);
	cr_assert(strstr(err, want) == err, "'%s' does not start with '%s'", err, want);
	cr_assert_not_null(strstr(err, needle), "'%s' does not mention '%s'", err, needle);
}

Test(config, defaults_are_the_issues_device_set)
{
	static struct config c;

	config_defaults(&c);
	cr_assert_eq(c.ndevs, 6);
	cr_assert_str_eq(c.devs[0].name, "sim0");
	cr_assert_str_eq(c.devs[1].name, "sim-lazy0");
	cr_assert_eq(c.doms[1].dom.flush, DOM_FLUSH_LAZY);
	cr_assert_eq(c.devs[2].dma_mask_bits, 32);
	cr_assert(c.devs[3].untrusted);
	cr_assert_eq(c.doms[4].dom.type, DOM_IDENTITY);
	cr_assert_eq(c.doms[5].dom.granule_shift, 16);
	cr_assert_eq(c.lim.max_frame, PROTO_FRAME_DEFAULT);
	cr_assert(c.allow_socket_group);
	cr_assert_str_eq(c.socket, "/run/iovad/iovad.sock");
}

Test(config, every_key)
{
	static struct config c;
	char err[512];

	cr_assert_eq(
		load("[daemon]\nsocket = /tmp/x.sock\nio = epoll\nlog_level = debug\n"
		     "rdma_listen = 10.77.0.1:7471\n"
		     "[policy]\nallow_users = root, 1234\nallow_groups = 0, 77\n"
		     "allow_socket_group = no\n"
		     "[limits]\nmax_mems = 10\nmax_mem_bytes = 2G\nmax_states = 11\n"
		     "max_maps = 12\nmax_links = 13\nmax_inflight = 14\nmax_frame = 8K\n"
		     "max_batch = 15\nmax_fds = 16\nmax_unsent_bytes = 4M\n"
		     "[domain shared]\ntype = translating\ngranule = 16K\nflush = lazy\n"
		     "visibility = link\naperture_start = 0x100000\naperture_end = 0xffffffff\n"
		     "from_device_rw = yes\nblocks = no\niotlb_entries = 64\nfq_timeout_ms = 5\n"
		     "swiotlb = 1M\nmax_table_bytes = 1M\n"
		     "[device a]\ndomain = shared\ndma_mask_bits = 40\ntrusted = no\n"
		     "coherent = no\npci = no\n"
		     "backend = sim\n"
		     "[device b]\ndomain = shared\n"
		     "[device alone]\ndma_mask_bits = 64\nrdma_device = rxe0\nodp = mr\n"
		     "backend = rxe\n"
		     "[device emu]\ndomain = shared\nbackend = rxe\nrdma_device = rxe0\n"
		     "odp = emulate\n",
		     &c, err, sizeof(err)),
		0, "%s", err);
	cr_assert_str_eq(c.socket, "/tmp/x.sock");
	cr_assert_eq(c.io, IO_EPOLL);
	cr_assert_eq(c.log_level, LOG_DEBUG_);
	cr_assert_str_eq(c.rdma_listen_host, "10.77.0.1");
	cr_assert_eq(c.rdma_listen_port, 7471);
	cr_assert_eq(c.nuids, 2);
	cr_assert_eq(c.uids[0], 0, "root by name");
	cr_assert_eq(c.uids[1], 1234);
	cr_assert_eq(c.ngids, 2);
	cr_assert_eq(c.gids[1], 77);
	cr_assert_not(c.allow_socket_group);
	cr_assert_eq(c.lim.max_mems, 10);
	cr_assert_eq(c.lim.max_mem_bytes, UINT64_C(2) << 30);
	cr_assert_eq(c.lim.max_states, 11);
	cr_assert_eq(c.lim.max_maps, 12);
	cr_assert_eq(c.lim.max_links, 13);
	cr_assert_eq(c.lim.max_inflight, 14);
	cr_assert_eq(c.lim.max_frame, 8192);
	cr_assert_eq(c.lim.max_batch, 15);
	cr_assert_eq(c.lim.max_fds, 16);
	cr_assert_eq(c.lim.out_high, 4u << 20);
	cr_assert_eq(c.ndoms, 2, "shared, plus one for the device without a domain");
	cr_assert_str_eq(c.doms[0].name, "shared");
	cr_assert_eq(c.doms[0].dom.granule_shift, 14);
	cr_assert_eq(c.doms[0].dom.flush, DOM_FLUSH_LAZY);
	cr_assert_eq(c.doms[0].dom.visibility, DOM_VISIBLE_ON_LINK);
	cr_assert_eq(c.doms[0].dom.aperture_start, 0x100000);
	cr_assert_eq(c.doms[0].dom.aperture_end, 0xffffffff);
	cr_assert(c.doms[0].dom.from_device_rw);
	cr_assert(c.doms[0].dom.no_blocks);
	cr_assert_eq(c.doms[0].dom.iotlb_entries, 64);
	cr_assert_eq(c.doms[0].dom.fq_timeout_ns, 5000000);
	cr_assert_eq(c.doms[0].dom.swiotlb_bytes, 1u << 20);
	cr_assert_eq(c.doms[0].dom.max_table_bytes, 1u << 20);
	cr_assert_eq(c.ndevs, 4, "the file's devices replace the built-in set");
	cr_assert_str_eq(c.devs[0].domain, "shared");
	cr_assert_eq(c.devs[0].dma_mask_bits, 40);
	cr_assert(c.devs[0].untrusted);
	cr_assert(c.devs[0].non_coherent);
	cr_assert(c.devs[0].not_pci);
	cr_assert_str_eq(c.devs[1].domain, "shared");
	cr_assert_eq(c.devs[1].dma_mask_bits, 64, "default mask");
	cr_assert_str_eq(c.devs[2].domain, "alone");
	cr_assert_eq(c.devs[0].backend, DEV_BACKEND_SIM);
	cr_assert_eq(c.devs[1].backend, DEV_BACKEND_SIM, "the default");
	cr_assert_str_eq(c.devs[1].rdma_device, "");
	cr_assert_eq(c.devs[2].backend, DEV_BACKEND_RXE);
	cr_assert_str_eq(c.devs[2].rdma_device, "rxe0", "either order of the two keys");
	cr_assert(c.devs[2].odp_mr, "odp = mr, before backend = rxe");
	cr_assert_not(c.devs[3].odp_mr, "odp = emulate");
	cr_assert_not(c.devs[0].odp_mr, "the default: emulate");
}

Test(config, limits_only_keeps_the_default_devices)
{
	static struct config c;
	char err[512];

	cr_assert_eq(load("; comments are fine\n[limits]\nmax_states = 3\n", &c, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(c.lim.max_states, 3);
	cr_assert_eq(c.ndevs, 6);
}

Test(config, errors_name_the_file_and_the_line)
{
	expect_error("[limits]\nmax_states = 3\nmax_statez = 4\n", 3, "unknown key 'max_statez'");
	expect_error("[daemon]\n\n[bogus]\nx = 1\n", 4, "unknown section [bogus]");
	expect_error("[limits]\nmax_states = lots\n", 2, "bad value 'lots' for max_states");
	expect_error("[limits]\nmax_frame = 100\n", 2, "max_frame");
	expect_error("[limits]\nmax_mem_bytes = 12Q\n", 2, "max_mem_bytes");
	expect_error("[daemon]\nio = carrier-pigeon\n", 2, "uring or epoll");
	expect_error("[daemon]\nsocket = relative/path\n", 2, "absolute path");
	expect_error("[policy]\nallow_users = no-such-user-here\n", 2, "no such user");
	expect_error("[policy]\nallow_socket_group = maybe\n", 2, "yes or no");
	expect_error("[domain d]\ngranule = 8K\n", 2, "4K, 16K or 64K");
	expect_error("[domain d]\niotlb_entries = 100\n", 2, "power of two");
	expect_error("[domain d]\nflush = sometimes\n", 2, "strict or lazy");
	expect_error("[device x]\ndma_mask_bits = 65\n", 2, "12 to 64");
	expect_error("[device x]\nfoo = bar\n", 2, "unknown key 'foo' in [device x]");
	expect_error("[domain d]\ntype = identity\n\n[device x]\ndomain = e\n", 5,
		     "no domain named 'e'");
	expect_error("[daemon]\nthis line has no equals sign\n", 2, "syntax error");
	expect_error("[device bad name!]\ndomain = x\n", 2, "bad device name");
	expect_error("[device x]\nbackend = fpga\n", 2, "sim or rxe");
	expect_error("[device x]\nrdma_device = \n", 2, "bad value");
	expect_error("[device x]\n\nbackend = rxe\n", 3, "backend = rxe needs rdma_device");
	expect_error("[device x]\nrdma_device = rxe0\n", 2, "rdma_device needs backend = rxe");
	expect_error("[device x]\nbackend = rxe\nrdma_device = rxe0\nodp = yes\n", 4,
		     "emulate or mr");
	expect_error("[device x]\nodp = mr\n", 2, "odp = mr needs backend = rxe");
}

Test(config, rdma_listen)
{
	static struct config c;
	static const char rxe[] = "[device r]\nbackend = rxe\nrdma_device = rxe0\n";
	static const char *const bad[] = {
		"10.77.0.1", "10.77.0.1:", ":7471", "10.77.0.1:0", "10.77.0.1:65536",
		"10.77.0.1:74x", "10.77.0.1:-1", "host.example:7471", "10.77.0.256:1",
		"[::1]", "[::1]7471", "[10.0.0.1]:1", "::1:7471", "[]:1", "10.77.0.1: 1",
	};
	char err[512], text[256];

	config_defaults(&c);
	cr_assert_eq(c.rdma_listen_host[0], '\0', "off by default");
	snprintf(text, sizeof(text), "[daemon]\nrdma_listen = [fe80::1]:18515\n%s", rxe);
	cr_assert_eq(load(text, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.rdma_listen_host, "fe80::1");
	cr_assert_eq(c.rdma_listen_port, 18515);
	snprintf(text, sizeof(text), "[daemon]\nrdma_listen = 0.0.0.0:65535\n%s", rxe);
	cr_assert_eq(load(text, &c, err, sizeof(err)), 0, "%s", err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[daemon]\nrdma_listen = %s\n%s", bad[i], rxe);
		cr_assert_eq(load(text, &c, err, sizeof(err)), -EINVAL, "'%s'", bad[i]);
		cr_assert_not_null(strstr(err, ":2: bad value"), "'%s': %s", bad[i], err);
	}
	/* Only an rxe device's PD holds MRs a peer could reach: without one it is an error. */
	expect_error("[daemon]\nrdma_listen = 10.77.0.1:7471\n[device s]\nbackend = sim\n", 2,
		     "rdma_listen needs a device with backend = rxe");
	expect_error("[daemon]\nrdma_listen = 10.77.0.1:7471\n", 2,
		     "rdma_listen needs a device with backend = rxe");
}

Test(config, missing_file_is_an_error)
{
	static struct config c;
	char err[512];

	cr_assert_eq(config_load("/nonexistent/iovad.conf", &c, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, "/nonexistent/iovad.conf"));
}

Test(config, the_printed_configuration_parses_back_the_same)
{
	static struct config a, b;
	char err[512], *text = NULL;
	size_t len = 0;
	FILE *f;

	cr_assert_eq(load("[daemon]\nrdma_listen = [::1]:7\n"
			  "[limits]\nmax_maps = 99\n[domain g]\ngranule = 64K\nflush = lazy\n"
			  "[device p]\ndomain = g\ntrusted = no\n[device q]\ndomain = g\nbackend = rxe\n"
			  "rdma_device = rxe7\n"
			  "[domain i]\ntype = identity\n[device r]\ndomain = i\n", &a, err,
			  sizeof(err)), 0, "%s", err);
	f = open_memstream(&text, &len);
	config_print(&a, f);
	fclose(f);
	cr_assert_eq(load(text, &b, err, sizeof(err)), 0, "%s\n%s", err, text);
	cr_assert_eq(memcmp(&a.lim, &b.lim, sizeof(a.lim)), 0);
	cr_assert_str_eq(b.rdma_listen_host, "::1");
	cr_assert_eq(b.rdma_listen_port, 7);
	cr_assert_eq(a.ndevs, b.ndevs);
	cr_assert_eq(a.ndoms, b.ndoms);
	for (unsigned int i = 0; i < a.ndevs; i++) {
		cr_assert_str_eq(a.devs[i].name, b.devs[i].name);
		cr_assert_str_eq(a.devs[i].domain, b.devs[i].domain);
		cr_assert_eq(a.devs[i].untrusted, b.devs[i].untrusted);
		cr_assert_eq(a.devs[i].backend, b.devs[i].backend);
		cr_assert_str_eq(a.devs[i].rdma_device, b.devs[i].rdma_device);
	}
	for (unsigned int i = 0; i < a.ndoms; i++) {
		cr_assert_eq(a.doms[i].dom.type, b.doms[i].dom.type);
		cr_assert_eq(a.doms[i].dom.flush, b.doms[i].dom.flush);
		if (a.doms[i].dom.type == DOM_TRANSLATING)
			cr_assert_eq(a.doms[i].dom.granule_shift ? a.doms[i].dom.granule_shift : 12,
				     b.doms[i].dom.granule_shift);
	}
	free(text);
}

Test(config, odp_section)
{
	static struct config c;
	char err[512];

	config_defaults(&c);
	cr_assert_eq(c.odp.window, 64 << 10, "default fault-around window");
	cr_assert_eq(c.odp.sync, ODP_SYNC_BATCH);
	cr_assert_eq(c.odp.user_fault_timeout_ms, 5000);
	cr_assert_eq(c.odp.implicit_size, UINT64_C(1) << 40);
	cr_assert_eq(c.lim.max_odp, 1024);
	cr_assert_eq(load("[odp]\nfault_around = 1M\nsync = per-page\nimplicit_size = 2T\n"
			  "user_fault_timeout_ms = 250\n[limits]\nmax_odp = 7\n",
			  &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.odp.window, 1 << 20);
	cr_assert_eq(c.odp.sync, ODP_SYNC_PER_PAGE);
	cr_assert_eq(c.odp.implicit_size, UINT64_C(2) << 40);
	cr_assert_eq(c.odp.user_fault_timeout_ms, 250);
	cr_assert_eq(c.lim.max_odp, 7);
	expect_error("[odp]\nfault_around = 48K\n", 2, "power of two");
	expect_error("[odp]\nfault_around = 8M\n", 2, "fault_around");
	expect_error("\n[odp]\nsync = sometimes\n", 3, "batch or per-page");
	expect_error("[odp]\nimplicit_size = 3M\n", 2, "implicit_size");
	expect_error("[odp]\nuser_fault_timeout_ms = 0\n", 2, "user_fault_timeout_ms");
	expect_error("[odp]\nwindow = 4K\n", 2, "unknown key 'window' in [odp]");
}
