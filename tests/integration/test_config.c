// SPDX-License-Identifier: MIT
/*
 * test_config.c - the daemon run from a configuration file: devices and
 * domains from the file (two devices sharing a domain), per-client limits,
 * SIGHUP reloading the limits without dropping clients, and --check-config.
 */
#include "harness.h"

static struct daemon d;
static char cfg[64];

static void write_config(const char *text)
{
	FILE *f = fopen(cfg, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static const char *base_config =
	"[limits]\nmax_states = 2\n"
	"[domain group0]\nflush = strict\n"
	"[device nic0]\ndomain = group0\n"
	"[device nic1]\ndomain = group0\n"
	"[device plain]\ndma_mask_bits = 32\n";

static void setup(void)
{
	strcpy(cfg, "/tmp/iovad-it-cfg-XXXXXX");
	close(mkstemp(cfg));
	write_config(base_config);
	daemon_start_config(&d, cfg);
}

static void teardown(void)
{
	daemon_stop(&d);
	unlink(cfg);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 60);

Test(config, devices_come_from_the_file_and_share_their_domain)
{
	struct iovad *c;
	struct iovad_dev *n0, *n1, *pl, *none;
	struct iovad_mem *m;
	struct iovad_iova_state st;
	struct iovad_dev_stats s1;
	uint8_t b = 0x6c, r = 0;

	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "sim0", &none), -ENODEV, "the built-in set is gone");
	cr_assert_eq(iovad_dev_open(c, "nic0", &n0), 0);
	cr_assert_eq(iovad_dev_open(c, "nic1", &n1), 0);
	cr_assert_eq(iovad_dev_open(c, "plain", &pl), 0);
	cr_assert_eq(iovad_mem_alloc(c, 1 << 16, &m), 0);
	cr_assert(iovad_iova_try_alloc(n0, &st, 0, 4096));
	cr_assert_eq(iovad_iova_link(n0, &st, iovad_mem_phys(m), 0, 4096, IOVAD_DMA_BIDIRECTIONAL,
				     0), 0);
	cr_assert_eq(iovad_iova_sync(n0, &st, 0, 4096), 0);
	/* One IOMMU group: nic1 sees what was mapped for nic0, and counts with it. */
	cr_assert_eq(iovad_dev_dma_write(n1, st.addr, &b, 1), 0);
	cr_assert_eq(iovad_dev_dma_read(n0, st.addr, &r, 1), 0);
	cr_assert_eq(r, 0x6c);
	cr_assert_eq(iovad_dev_stats(n1, &s1), 0);
	cr_assert_eq(s1.links, 1);
	cr_assert_eq(s1.dma_writes, 1);
	/* A device on a domain of its own sees none of it. */
	cr_assert_eq(iovad_dev_dma_read(pl, st.addr, &r, 1), -EFAULT);
	cr_assert_eq(iovad_iova_destroy(n0, &st, 4096, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	iovad_mem_free(m);
	iovad_dev_close(n0);
	iovad_dev_close(n1);
	iovad_dev_close(pl);
	iovad_disconnect(c);
}

Test(config, sighup_reloads_limits_without_dropping_clients)
{
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_iova_state st[3];

	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "nic0", &dev), 0);
	cr_assert(iovad_iova_try_alloc(dev, &st[0], 0, 4096));
	cr_assert(iovad_iova_try_alloc(dev, &st[1], 0, 4096));
	errno = 0;
	cr_assert_not(iovad_iova_try_alloc(dev, &st[2], 0, 4096));
	cr_assert_eq(errno, EDQUOT, "max_states = 2");

	write_config("[limits]\nmax_states = 3\n"
		     "[domain group0]\nflush = strict\n"
		     "[device nic0]\ndomain = group0\n"
		     "[device nic1]\ndomain = group0\n"
		     "[device plain]\ndma_mask_bits = 32\n");
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	for (int i = 0; i < 200; i++) {
		if (iovad_iova_try_alloc(dev, &st[2], 0, 4096))
			break;
		usleep(10000);
	}
	cr_assert(iovad_use_iova(&st[2]), "the new limit applies to the connected client");

	/* A broken file on SIGHUP keeps the running configuration. */
	write_config("[limits]\nmax_states = many\n");
	cr_assert_eq(kill(d.pid, SIGHUP), 0);
	usleep(100000);
	cr_assert(daemon_alive(&d));
	for (int i = 0; i < 3; i++)
		cr_assert_eq(iovad_iova_free(dev, &st[i]), 0);
	iovad_dev_close(dev);
	iovad_disconnect(c);
}

static int run_check(const char *file, char *out, size_t len)
{
	char cmd[256];
	FILE *p;
	size_t n;
	int status;

	snprintf(cmd, sizeof(cmd), "%s --check-config %s 2>&1", IOVAD_DAEMON_PATH, file);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, len - 1, p);
	out[n] = 0;
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(config, check_config_validates_and_prints)
{
	static char out[16384];
	char want[128];

	cr_assert_eq(run_check(cfg, out, sizeof(out)), 0, "%s", out);
	cr_assert_not_null(strstr(out, "[device nic1]\ndomain = group0"), "%s", out);
	cr_assert_not_null(strstr(out, "max_states = 2"), "%s", out);
	cr_assert_not_null(strstr(out, "[domain plain]"), "its own domain: %s", out);
	write_config("[limits]\nmax_states = 2\n\n[device nic0]\ndomian = group0\n");
	cr_assert_eq(run_check(cfg, out, sizeof(out)), 1);
	snprintf(want, sizeof(want), "%s:5: unknown key 'domian'", cfg);
	cr_assert_not_null(strstr(out, want), "%s", out);
}

Test(config, the_documented_example_is_valid)
{
	static char out[16384];

	cr_assert_eq(run_check(IOVAD_SOURCE_DIR "/docs/iovad.conf.example", out, sizeof(out)), 0,
		     "%s", out);
	cr_assert_not_null(strstr(out, "[device example0]\ndomain = example"), "%s", out);
}
