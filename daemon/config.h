/* SPDX-License-Identifier: MIT */
/*
 * config.h - /etc/iovad/iovad.conf: devices and domains, the access policy,
 * per-client limits, the ODP fault service, the shared-memory rings, the I/O
 * backend and the log level.
 *
 * Parsed with libinih. Every key has a default (docs/iovad.conf.example
 * lists them all); an unknown section or key, or a bad value, is an error
 * that names the file and the line. Without any [domain] or [device]
 * section the daemon offers its default device set; with one, the file
 * describes every domain and device. A section needs at least one key to
 * exist (libinih reports keys, not sections): "[device x]" alone is
 * nothing, "[device x]\ndomain = x" or any other key makes it.
 */
#ifndef IOVAD_DAEMON_CONFIG_H
#define IOVAD_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "internal.h"

#define CFG_NAME_MAX PROTO_DEV_NAME_MAX
#define CFG_MAX_DOMAINS 32     /* a batch tracks domains in a 32-bit mask */
#define CFG_MAX_DEVICES 64
#define CFG_MAX_IDS 64

struct cfg_domain {
	char name[CFG_NAME_MAX];
	struct dom_config dom;
	bool no_merge_links;  /* merge_links = no: every LINK op is its own engine call */
	unsigned int line;
};

/* What moves a device's DMA: the domain engine, or real RDMA through an rxe device. */
enum dev_backend { DEV_BACKEND_SIM = 0, DEV_BACKEND_RXE = 1 };

struct cfg_device {
	char name[CFG_NAME_MAX];
	char domain[CFG_NAME_MAX];  /* empty: a domain of its own, with defaults */
	unsigned int dma_mask_bits;
	bool untrusted;
	bool non_coherent;
	bool not_pci;
	enum dev_backend backend;
	char rdma_device[CFG_NAME_MAX]; /* backend rxe: the verbs device, e.g. rxe0 */
	bool odp_mr;			/* backend rxe: odp = mr, ODP MRs if the device passes */
	unsigned int line;
};

struct config {
	char socket[108];
	/* rdma_listen = ADDR:PORT: rdma_cm listener for remote peers; host empty when unset */
	char rdma_listen_host[48];  /* an IPv4 or IPv6 address, without brackets */
	uint16_t rdma_listen_port;
	unsigned int rdma_listen_line;
	enum io_backend io;
	int log_level;
	struct limits lim;
	struct odp_settings odp;
	struct ring_settings rings;
	struct persist_settings persist;
	bool allow_socket_group;
	uid_t uids[CFG_MAX_IDS];
	unsigned int nuids;
	gid_t gids[CFG_MAX_IDS];
	unsigned int ngids;
	struct cfg_domain doms[CFG_MAX_DOMAINS];
	unsigned int ndoms;
	struct cfg_device devs[CFG_MAX_DEVICES];
	unsigned int ndevs;
};

/* The built-in configuration: the default device set, limits and policy. */
void config_defaults(struct config *c);

/*
 * config_load - defaults, then the file on top. Without [device] sections
 * the default devices stay; with any, exactly the file's devices exist.
 * Return: 0, or -errno with "FILE:LINE: what" (or "FILE: what") in err.
 */
int config_load(const char *path, struct config *c, char *err, size_t errlen);

/* config_print - the effective configuration, in the file's own syntax. */
void config_print(const struct config *c, FILE *f);

#endif /* IOVAD_DAEMON_CONFIG_H */
