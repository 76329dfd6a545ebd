// SPDX-License-Identifier: MIT
/*
 * devices.c - the device table: every device the daemon offers, each on its
 * own domain of the engine, and the flush-queue timers of lazy domains.
 *
 * The configuration (config.c) describes domains and devices; devices that
 * name the same domain share it, as an IOMMU group does. Without one the
 * daemon offers the default set:
 *   sim0        translating, 4 KiB, 64-bit mask, trusted, coherent, strict
 *   sim-lazy0   as sim0, lazy flushing
 *   sim32       as sim0, 32-bit mask
 *   untrusted0  as sim0, untrusted: unaligned heads and tails are bounced
 *   identity0   identity domain
 *   sim64k0     as sim0, 64 KiB granule
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "internal.h"
#include "rxe.h"

struct fq_timer_arg {
	struct dev_table *t;
	uint32_t dom;
};

static void fq_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fq_timer_arg *a = arg;

	(void)fd;
	(void)what;
	dom_fq_poll(a->t->doms[a->dom]);
	devices_fq_arm(a->t, a->dom);
}

void devices_fq_arm(struct dev_table *t, uint32_t dom_index)
{
	struct dom_domain *d = t->doms[dom_index];
	uint64_t deadline = dom_fq_deadline(d), now;
	struct timeval tv = { 0 };

	if (!t->fq_timers[dom_index])
		return;
	if (!deadline) {
		event_del(t->fq_timers[dom_index]);
		return;
	}
	now = now_ns();
	if (deadline > now) {
		uint64_t dt = deadline - now;

		tv.tv_sec = (time_t)(dt / 1000000000u);
		tv.tv_usec = (suseconds_t)(dt % 1000000000u / 1000u);
	}
	event_add(t->fq_timers[dom_index], &tv);
}

/*
 * How an rxe device's ODP regions run: the emulation unless odp = mr asks for
 * ODP MRs and the device passes rxe_odp_enable's check. One line at start.
 */
static bool device_odp(const struct cfg_device *cv, struct rxe_dev *x)
{
	const char *why = "";
	bool adv = rxe_odp_advertised(x, &why);

	if (!cv->odp_mr) {
		log_notice("device %s: %s %s: ODP regions are emulated (odp = emulate)", cv->name,
			   cv->rdma_device, adv ? "advertises ODP" : "has no ODP");
		return false;
	}
	/* why is the device's own buffer: rxe_odp_enable writes the reason into it. */
	if (rxe_odp_enable(x)) {
		log_warn("device %s: odp = mr, but %s: ODP regions are emulated", cv->name, why);
		return false;
	}
	log_notice("device %s: %s has ODP that passed iovad's check: ODP regions are ODP MRs "
		   "(the device faults pages in itself)",
		   cv->name, cv->rdma_device);
	return true;
}

static uint32_t flags_of(const struct dom_config *dom, const struct cfg_device *d)
{
	uint32_t f = 0;

	if (dom->type == DOM_IDENTITY)
		f |= PROTO_DEV_IDENTITY;
	if (d->untrusted)
		f |= PROTO_DEV_UNTRUSTED;
	if (d->non_coherent)
		f |= PROTO_DEV_NON_COHERENT;
	if (dom->flush == DOM_FLUSH_LAZY)
		f |= PROTO_DEV_LAZY;
	if (dom->visibility == DOM_VISIBLE_ON_LINK)
		f |= PROTO_DEV_VISIBLE_ON_LINK;
	return f;
}

int devices_init(struct dev_table *t, struct event_base *base, const struct config *cfg,
		 char *err, size_t errlen)
{
	int r;

	memset(t, 0, sizeof(*t));
	t->base = base;
	r = pmem_space_init(&t->pmem);
	if (r)
		return r;
	t->doms = calloc(cfg->ndoms, sizeof(*t->doms));
	t->devs = calloc(cfg->ndevs, sizeof(*t->devs));
	t->fq_timers = calloc(cfg->ndoms, sizeof(*t->fq_timers));
	if (!t->doms || !t->devs || !t->fq_timers) {
		r = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < cfg->ndoms; i++) {
		const struct cfg_domain *cd = &cfg->doms[i];

		r = dom_domain_create(&t->pmem, &cd->dom, &t->doms[i]);
		if (r) {
			snprintf(err, errlen, "domain %s: %s", cd->name, strerror(-r));
			goto err;
		}
		t->ndoms++;
		if (cd->dom.flush == DOM_FLUSH_LAZY) {
			struct fq_timer_arg *a = malloc(sizeof(*a));

			if (!a) {
				r = -ENOMEM;
				goto err;
			}
			a->t = t;
			a->dom = i;
			t->fq_timers[i] = evtimer_new(base, fq_timer_cb, a);
			if (!t->fq_timers[i]) {
				free(a);
				r = -ENOMEM;
				goto err;
			}
		}
	}
	for (uint32_t i = 0; i < cfg->ndevs; i++) {
		const struct cfg_device *cv = &cfg->devs[i];
		struct dev_entry *e = &t->devs[i];
		struct dom_device_config dc = { .name = cv->name, .dma_mask_bits = cv->dma_mask_bits,
						.untrusted = cv->untrusted,
						.non_coherent = cv->non_coherent,
						.not_pci = cv->not_pci };
		uint32_t d;

		for (d = 0; d < cfg->ndoms && strcmp(cfg->doms[d].name, cv->domain); d++)
			;
		if (d == cfg->ndoms) {
			r = -EINVAL;
			snprintf(err, errlen, "device %s: no domain %s", cv->name, cv->domain);
			goto err;
		}
		r = dom_device_create(t->doms[d], &dc, &e->dev);
		if (r) {
			snprintf(err, errlen, "device %s: %s", cv->name, strerror(-r));
			goto err;
		}
		t->ndevs++;
		snprintf(e->name, sizeof(e->name), "%s", cv->name);
		e->index = i;
		e->dom_index = d;
		e->dom = t->doms[d];
		e->merge_links = !cfg->doms[d].no_merge_links;
		e->flags = flags_of(&cfg->doms[d].dom, cv);
		if (cv->backend == DEV_BACKEND_RXE) {
			char why[256];

			r = rxe_open(cv->rdma_device, &e->rxe, why, sizeof(why));
			if (r) {
				snprintf(err, errlen, "device %s (backend rxe): %s", cv->name, why);
				goto err;
			}
			e->odp_mr = device_odp(cv, e->rxe);
			if (e->odp_mr)
				e->flags |= PROTO_DEV_ODP_MR;
		}
	}
	return 0;
err:
	devices_fini(t);
	return r;
}

void devices_fini(struct dev_table *t)
{
	for (uint32_t i = 0; i < t->ndevs; i++) {
		/* Sessions are gone: every MR on it was deregistered with its state. */
		rxe_close(t->devs[i].rxe);
		dom_device_destroy(t->devs[i].dev);
	}
	for (uint32_t i = 0; t->fq_timers && i < t->ndoms; i++) {
		if (t->fq_timers[i]) {
			free(event_get_callback_arg(t->fq_timers[i]));
			event_free(t->fq_timers[i]);
		}
	}
	for (uint32_t i = 0; i < t->ndoms; i++)
		dom_domain_destroy(t->doms[i]);
	pmem_space_fini(&t->pmem);
	free(t->doms);
	free(t->devs);
	free(t->fq_timers);
	memset(t, 0, sizeof(*t));
}

struct dev_entry *devices_find(struct dev_table *t, const char *name)
{
	for (uint32_t i = 0; i < t->ndevs; i++)
		if (!strcmp(t->devs[i].name, name))
			return &t->devs[i];
	return NULL;
}

void devices_stats(const struct dev_entry *e, struct proto_dev_stats *ret)
{
	struct dom_stats s;

	dom_domain_stats(e->dom, &s);
	*ret = (struct proto_dev_stats){
		.iova_allocs = s.iova_allocs,
		.iova_frees = s.iova_frees,
		.links = s.links,
		.unlinks = s.unlinks,
		.syncs = s.syncs,
		.iotlb_flushes = s.iotlb_flushes,
		.bounced_bytes = s.bounced_bytes,
		.io_page_faults = s.io_page_faults,
		.map_phys = s.map_phys,
		.unmap_phys = s.unmap_phys,
		.dma_reads = s.dma_reads,
		.dma_writes = s.dma_writes,
		.dma_bytes = s.dma_bytes,
		.free_busy = s.free_busy,
		.mapped_bytes = s.mapped_bytes,
		.table_bytes = s.table_bytes,
	};
}
