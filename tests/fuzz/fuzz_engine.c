// SPDX-License-Identifier: MIT
/*
 * fuzz_engine.c - libFuzzer target for the domain engine, as a state machine.
 *
 * Each input builds a fresh world: a pmem space with three 64 KiB objects
 * (filled with a pattern, so a wrong translation reads wrong bytes), and
 * three domains with one trusted, coherent device each:
 *   D0  strict flush, 4 KiB granule
 *   D1  lazy flush (flush queue on a fake clock), 4 KiB granule
 *   D2  strict flush, 64 KiB granule, FROM_DEVICE mapped read+write
 * The input is then a sequence of 5-byte ops (opcode + 4 argument bytes),
 * with arguments clamped so most calls hit valid states. A small model
 * tracks every live IOVA state, dma_map_phys mapping and ODP region in
 * slots, with one flag byte and the phys per IOVA granule.
 *
 * Invariants (a violation is __builtin_trap()):
 *  - every return code is in the set domain.h / odp.h document for the call,
 *    and the exact one where the model can predict it (link's -EEXIST,
 *    unlink's -ENOENT, free/destroy's -EBUSY, ...);
 *  - a device access to granules the model says are linked, synced and
 *    permitted succeeds, and moves exactly the memory object's bytes
 *    (checked with pmem_read);
 *  - a device access touching a granule the model says is not linked (or
 *    not synced, or lacks the right) is -EFAULT, unless that granule may
 *    still sit in the IOTLB of a lazy domain (freed through the flush queue
 *    and not flushed since: the lazy policy allows exactly that);
 *  - after odp_service() serves a fault, the device can do that access and
 *    reads the object's bytes; after odp_invalidate() the range faults;
 *  - at the end, with everything unlinked, destroyed and fini'd, every
 *    domain maps 0 bytes and holds only its root table; LSan finds no leak.
 * ASan and UBSan catch the rest.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "domain.h"
#include "odp.h"
#include "pmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

#define NOBJ   3
#define OBJSZ  (UINT64_C(64) << 10)
#define NDOM   3
#define NSLOT  8
#define MAXG   24   /* granules per slot: 64 KiB + a misaligned head, in 4 KiB */
#define NSTALE 32
#define OPSZ   5
#define MAXOPS 512

/* Per-granule model flags. */
#define G_MAP 0x01  /* linked (ODP: known mapped) */
#define G_VIS 0x02  /* synced: the device may see it */
#define G_R   0x04  /* device may read */
#define G_W   0x08  /* device may write */
#define G_UNK 0x10  /* ODP only: may or may not be mapped (window, NO_POPULATE) */

enum slot_kind { S_FREE = 0, S_STATE, S_MAP, S_ODP };

struct slot {
	enum slot_kind kind;
	unsigned int dom;
	struct dma_iova_state st;   /* S_STATE */
	uint64_t dma, size;         /* S_MAP: dma and size; S_STATE/S_ODP: size */
	struct odp_region r;        /* S_ODP */
	unsigned int obj;           /* S_ODP: the object backing the region */
	bool inv_in_call;           /* S_ODP: a resolve invalidated it this service */
	uint64_t base;              /* granule-aligned first IOVA of the span */
	uint32_t ng;                /* granules in the span */
	uint8_t g[MAXG];
	uint64_t phys[MAXG];        /* granule-aligned phys, where G_MAP */
};

struct stale {
	uint64_t start, end;
};

struct world {
	struct pmem_space pmem;
	struct pmem_obj *obj[NOBJ];
	struct dom_domain *dom[NDOM];
	struct dom_device *dev[NDOM];
	uint64_t root_bytes[NDOM];
	unsigned int batch[NDOM];
	struct stale stale[NDOM][NSTALE];
	unsigned int nstale[NDOM];
	bool stale_all[NDOM];
	uint64_t now;
	struct slot s[NSLOT];
	/* resolve callback's mischief, armed per service */
	int inv_budget;
};

static struct world W;
/* Device buffers, apart from W so the per-input memset stays small. */
static struct {
	uint8_t buf[2][2 * OBJSZ];
} B;

static uint64_t fake_clock(void *arg)
{
	return *(const uint64_t *)arg;
}

static uint64_t gran(unsigned int d)
{
	return W.dom[d]->granule;
}

/* ---- lazy-domain staleness --------------------------------------------------------- */

/* A range freed through the flush queue may stay in the IOTLB until it is flushed. */
static void stale_add(unsigned int d, uint64_t start, uint64_t len)
{
	if (W.dom[d]->cfg.flush != DOM_FLUSH_LAZY)
		return;
	if (W.nstale[d] == NSTALE) {
		W.stale_all[d] = true;
		return;
	}
	W.stale[d][W.nstale[d]++] = (struct stale){ start, start + len };
}

static void stale_clear(unsigned int d)
{
	W.nstale[d] = 0;
	W.stale_all[d] = false;
}

static bool is_stale(unsigned int d, uint64_t iova, uint64_t len)
{
	if (W.stale_all[d])
		return true;
	for (unsigned int i = 0; i < W.nstale[d]; i++)
		if (iova < W.stale[d][i].end && iova + len > W.stale[d][i].start)
			return true;
	return false;
}

/* ---- model helpers ----------------------------------------------------------------- */

static void slot_span(struct slot *s, uint64_t base, uint64_t len)
{
	s->base = base;
	s->ng = (uint32_t)(len / gran(s->dom));
	CHECK(s->ng && s->ng <= MAXG);
	memset(s->g, 0, sizeof(s->g));
	memset(s->phys, 0, sizeof(s->phys));
}

/* Granule index range [*lo, *hi) of slot s that [iova, iova + len) touches. */
static void gspan(const struct slot *s, uint64_t iova, uint64_t len, uint32_t *lo, uint32_t *hi)
{
	uint64_t g = gran(s->dom);

	*lo = (uint32_t)((iova - s->base) / g);
	*hi = (uint32_t)((iova + len - s->base + g - 1) / g);
	CHECK(*lo < *hi && *hi <= s->ng);
}

static unsigned int dir_perm(unsigned int d, unsigned int dir)
{
	if (dir == DMA_TO_DEVICE)
		return G_R;
	if (dir == DMA_FROM_DEVICE)
		return G_W | (W.dom[d]->cfg.from_device_rw ? G_R : 0);
	return G_R | G_W;
}

static struct slot *pick_slot(uint8_t a, enum slot_kind kind)
{
	for (unsigned int i = 0; i < NSLOT; i++) {
		struct slot *s = &W.s[(a + i) % NSLOT];

		if (s->kind == kind)
			return s;
	}
	return NULL;
}

/* A phys in object (a % NOBJ), granule-aligned or (when odd) not. */
static uint64_t pick_phys(unsigned int d, uint8_t a, uint8_t b)
{
	uint64_t g = gran(d), off;

	off = ((uint64_t)(b & 0x0f) << 12) % OBJSZ;
	off &= ~(g - 1);
	if (b & 0x80)
		off += (uint64_t)(a >> 2) * 64 + 1; /* misaligned, maybe across a granule */
	return W.obj[a % NOBJ]->phys + off;
}

/* ---- device access checks ---------------------------------------------------------- */

/* The bytes memory holds at the phys behind [iova, iova + len); false if unbacked. */
static bool expected_bytes(const struct slot *s, uint64_t iova, uint64_t len, uint8_t *out)
{
	uint64_t g = gran(s->dom);

	while (len) {
		uint32_t i = (uint32_t)((iova - s->base) / g);
		uint64_t in = (iova - s->base) % g, n = g - in;

		if (n > len)
			n = len;
		if (pmem_read(&W.pmem, s->phys[i] + in, out, n))
			return false;
		out += n;
		iova += n;
		len -= n;
	}
	return true;
}

/*
 * One device access inside slot s, checked against the model. Granules may
 * be: all good (must succeed with the right bytes), one certainly bad and
 * not stale (must fault), or neither (only the code is checked).
 */
static void dev_access(struct slot *s, uint64_t iova, uint64_t len, bool write, uint8_t pat)
{
	struct dom_device *dev = W.dev[s->dom];
	unsigned int need = write ? G_W : G_R;
	uint64_t g = gran(s->dom);
	bool all_good = true, bad = false;
	struct dom_fault f;
	uint32_t lo, hi;
	int r;

	gspan(s, iova, len, &lo, &hi);
	for (uint32_t i = lo; i < hi; i++) {
		uint8_t m = s->g[i];

		if (m & G_UNK) {
			all_good = false;
			continue;
		}
		if ((m & (G_MAP | G_VIS | need)) == (G_MAP | G_VIS | need))
			continue;
		all_good = false;
		/*
		 * An ODP granule's rights are a lower bound (a fault may find it
		 * already mapped read+write): only "known unmapped" is certain.
		 */
		if (s->kind == S_ODP && (m & G_MAP))
			continue;
		/* Linked and synced but without the right: a stale entry cannot help. */
		if (!(m & G_MAP) && is_stale(s->dom, s->base + i * g, g))
			continue;
		bad = true;
	}
	if (all_good && !expected_bytes(s, iova, len, B.buf[1]))
		all_good = false, bad = true; /* translated to phys nothing backs: a bus fault */

	if (write) {
		memset(B.buf[0], pat, len);
		r = dom_dev_dma_write(dev, iova, B.buf[0], len, &f);
	} else {
		r = dom_dev_dma_read(dev, iova, B.buf[0], len, &f);
	}
	CHECK(r == 0 || r == -EFAULT);
	if (bad)
		CHECK(r == -EFAULT);
	if (r == -EFAULT)
		CHECK(f.reason >= DOM_FAULT_NOT_PRESENT && f.reason <= DOM_FAULT_BUS &&
		      f.iova >= iova && f.iova < iova + len);
	if (!all_good)
		return;
	CHECK(r == 0);
	if (write) {
		/* The device's bytes landed where the model says the granules point. */
		CHECK(expected_bytes(s, iova, len, B.buf[1]));
		CHECK(!memcmp(B.buf[0], B.buf[1], len));
	} else {
		CHECK(!memcmp(B.buf[0], B.buf[1], len));
	}
}

/* ---- ops --------------------------------------------------------------------------- */

static struct slot *free_slot(void)
{
	return pick_slot(0, S_FREE);
}

static void op_try_alloc(const uint8_t *a)
{
	struct slot *s = free_slot();
	unsigned int d = a[0] % NDOM;
	uint64_t g, phys, size, pad;

	if (!s)
		return;
	g = gran(d);
	phys = pick_phys(d, a[1], a[2]);
	size = ((uint64_t)(a[3] & 0x0f) + 1) << 12;
	if (a[3] & 0x80)
		size -= a[3] & 0x70; /* not a granule multiple */
	if (size > OBJSZ)
		size = OBJSZ;
	s->dom = d;
	if (!dma_iova_try_alloc(W.dev[d], &s->st, phys, size)) {
		CHECK(!dma_use_iova(&s->st) && !s->st.addr);
		return;
	}
	CHECK(dma_iova_size(&s->st) == size && !(s->st.__size & DMA_IOVA_USE_SWIOTLB));
	pad = phys & (g - 1);
	CHECK((s->st.addr & (g - 1)) == pad);
	s->kind = S_STATE;
	s->size = size;
	slot_span(s, s->st.addr - pad, (size + pad + g - 1) & ~(g - 1));
}

static void op_link(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_STATE);
	unsigned int dir = (a[1] & 3), k;
	uint64_t g, gm, pad, off, size, phys, ppad, start;
	unsigned long attrs = 0;
	bool valid, overlap = false;
	uint32_t lo, hi, n;
	int r;

	if (!s)
		return;
	g = gran(s->dom);
	gm = g - 1;
	pad = s->st.addr & gm;
	/* Offsets land on the merge boundary (k granules past the aligned base) mostly. */
	k = (a[1] >> 2) % s->ng;
	off = k ? k * g - pad : 0;
	if ((a[1] & 0xc0) == 0xc0)
		off = (uint64_t)k * g; /* off the boundary when pad != 0 */
	size = ((uint64_t)(a[2] & 0x0f) + 1) * g - ((a[2] & 0x10) ? (a[2] >> 5) + 1 : 0);
	if (a[2] & 0x80 || off >= s->size || size > s->size - off)
		size = s->size > off ? s->size - off : 1;
	phys = pick_phys(s->dom, a[3], a[3] >> 2);
	if (!off && !(a[3] & 0x40))
		phys = (phys & ~gm) + pad; /* the first range matches the state's pad */
	if (a[3] & 0x20)
		attrs = DMA_ATTR_SKIP_CPU_SYNC;
	if ((a[3] & 0x30) == 0x30)
		attrs = 1; /* an unknown attribute */
	ppad = phys & gm;
	start = s->st.addr + off - ppad;
	valid = dir <= DMA_FROM_DEVICE && attrs != 1 && size && off <= s->size &&
		size <= s->size - off && !(start & gm) && !(ppad && off);
	n = 0;
	if (valid) {
		gspan(s, start, size + ppad, &lo, &hi);
		n = hi - lo;
		for (uint32_t i = lo; i < hi; i++)
			overlap |= s->g[i] & G_MAP;
	}
	r = dma_iova_link(W.dev[s->dom], &s->st, phys, off, size, dir, attrs);
	if (!valid) {
		CHECK(r == -EINVAL || r == -EIO);
		return;
	}
	CHECK(overlap ? r == -EEXIST : r == 0);
	if (r)
		return;
	for (uint32_t i = 0; i < n; i++) {
		s->g[lo + i] = G_MAP | dir_perm(s->dom, dir);
		s->phys[lo + i] = phys - ppad + i * g;
	}
}

static void op_sync(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_STATE);
	uint64_t off, size;
	uint32_t lo, hi;
	int r;

	if (!s)
		return;
	off = ((uint64_t)a[1] << 8 | a[2]) % (s->size + 1);
	size = (a[3] & 0x80) ? s->size - off : ((uint64_t)a[3] << 9) % (s->size + 1);
	r = dma_iova_sync(W.dev[s->dom], &s->st, off, size);
	if (!size || off + size > s->size) {
		CHECK(r == -EINVAL);
		return;
	}
	CHECK(r == 0);
	gspan(s, s->st.addr + off, size, &lo, &hi);
	for (uint32_t i = lo; i < hi; i++)
		if (s->g[i] & G_MAP)
			s->g[i] |= G_VIS;
}

/* Clear the granules [off, off + len) of a state touches; true if all were linked. */
static bool model_unlink(struct slot *s, uint64_t off, uint64_t len)
{
	bool all = true;
	uint32_t lo, hi;

	gspan(s, s->st.addr + off, len, &lo, &hi);
	for (uint32_t i = lo; i < hi; i++) {
		all &= !!(s->g[i] & G_MAP);
		s->g[i] = 0;
	}
	return all;
}

static bool model_any(const struct slot *s)
{
	for (uint32_t i = 0; i < s->ng; i++)
		if (s->g[i] & (G_MAP | G_UNK))
			return true;
	return false;
}

static void op_unlink(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_STATE);
	unsigned int dir = a[1] % 3;
	uint64_t off, size;
	bool all;
	int r;

	if (!s)
		return;
	off = ((uint64_t)a[2] << 8) % s->size;
	size = (a[3] & 0x80) ? s->size - off : ((uint64_t)(a[3] & 0x7f) << 9) + 1;
	if (size > s->size - off)
		size = s->size - off;
	all = model_unlink(s, off, size);
	r = dma_iova_unlink(W.dev[s->dom], &s->st, off, size, dir, 0);
	CHECK(all ? r == 0 : r == -ENOENT);
}

static void state_gone(struct slot *s)
{
	CHECK(!dma_use_iova(&s->st));
	stale_add(s->dom, s->base, (uint64_t)s->ng * gran(s->dom));
	s->kind = S_FREE;
}

static void op_destroy(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_STATE);
	uint64_t len;
	bool all;
	int r;

	if (!s)
		return;
	len = (a[1] & 0x80) ? s->size : ((uint64_t)a[2] << 8 | a[3]) % (s->size + 1);
	if (!len) {
		r = dma_iova_destroy(W.dev[s->dom], &s->st, 0, a[1] % 3, 0);
		CHECK(model_any(s) ? r == -EBUSY : r == 0);
		if (!r) {
			/* dma_iova_free: not queued, and nothing was mapped to linger. */
			CHECK(!dma_use_iova(&s->st));
			s->kind = S_FREE;
		}
		return;
	}
	all = model_unlink(s, 0, len);
	r = dma_iova_destroy(W.dev[s->dom], &s->st, len, a[1] % 3, 0);
	if (model_any(s)) {
		CHECK(r == -EBUSY && dma_use_iova(&s->st));
		return;
	}
	CHECK(all ? r == 0 : r == -ENOENT);
	state_gone(s);
}

static void op_free(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_STATE);
	int r;

	if (!s)
		return;
	r = dma_iova_free(W.dev[s->dom], &s->st);
	if (model_any(s)) {
		CHECK(r == -EBUSY && dma_use_iova(&s->st));
		return;
	}
	CHECK(r == 0 && !dma_use_iova(&s->st));
	s->kind = S_FREE;
}

static void op_map_phys(const uint8_t *a)
{
	struct slot *s = free_slot();
	unsigned int d = a[0] % NDOM, dir = a[1] % 3;
	uint64_t g, phys, size, dma, off;
	int r;

	if (!s)
		return;
	g = gran(d);
	phys = pick_phys(d, a[2], a[3]);
	size = ((uint64_t)(a[1] >> 2) << 10) + 1 + (a[3] & 0x3f);
	r = dma_map_phys(W.dev[d], phys, size, dir, 0, &dma);
	CHECK(r == 0 || r == -ENOMEM);
	if (r)
		return;
	off = phys & (g - 1);
	CHECK((dma & (g - 1)) == off);
	s->kind = S_MAP;
	s->dom = d;
	s->dma = dma;
	s->size = size;
	slot_span(s, dma - off, (size + off + g - 1) & ~(g - 1));
	for (uint32_t i = 0; i < s->ng; i++) {
		/* iommu_map() syncs: visible at once. */
		s->g[i] = G_MAP | G_VIS | dir_perm(d, dir);
		s->phys[i] = phys - off + i * g;
	}
}

static void op_unmap_phys(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_MAP);
	int r;

	if (!s)
		return;
	r = dma_unmap_phys(W.dev[s->dom], s->dma, s->size, a[1] % 3, 0);
	CHECK(r == 0);
	stale_add(s->dom, s->base, (uint64_t)s->ng * gran(s->dom));
	s->kind = S_FREE;
	/* Unmapping it again is refused without touching anything. */
	if (W.dom[s->dom]->cfg.flush == DOM_FLUSH_STRICT)
		CHECK(dma_unmap_phys(W.dev[s->dom], s->dma, s->size, a[1] % 3, 0) == -ENOENT);
}

static void op_access(const uint8_t *a)
{
	static const enum slot_kind kinds[] = { S_STATE, S_MAP, S_ODP, S_STATE };
	struct slot *s = pick_slot(a[0], kinds[a[1] & 3]);
	uint64_t span, off, len;

	if (!s)
		return;
	span = (uint64_t)s->ng * gran(s->dom);
	off = ((uint64_t)a[2] << 8 | (a[3] & 0x0f) << 4 | (a[3] & 0x0f)) % span;
	len = ((uint64_t)(a[1] >> 3) << 9) + 1 + (a[3] >> 4);
	if (len > span - off)
		len = span - off;
	dev_access(s, s->base + off, len, a[1] & 4, a[3]);
}

/* Somewhere no allocation ever reaches (above the aperture's 4 GiB-first space). */
static void op_wild(const uint8_t *a)
{
	unsigned int d = a[0] % NDOM;
	uint64_t iova = (UINT64_C(0x7f00) << 32) + ((uint64_t)a[1] << 12) + a[2];
	int r;

	r = (a[3] & 1) ? dom_dev_dma_write(W.dev[d], iova, B.buf[0], 1 + a[3], NULL)
		       : dom_dev_dma_read(W.dev[d], iova, B.buf[0], 1 + a[3], NULL);
	CHECK(r == -EFAULT);
}

/* ---- on-demand paging -------------------------------------------------------------- */

static int resolve(void *arg, uint64_t off, uint64_t *phys, uint64_t *run)
{
	struct slot *s = arg;

	CHECK(off < s->r.size && !(off & (gran(s->dom) - 1)));
	/* A notifier firing mid-fault: the service must retry, not link stale backing. */
	if (W.inv_budget > 0) {
		W.inv_budget--;
		s->inv_in_call = true;
		CHECK(odp_invalidate(&s->r, off, gran(s->dom)) >= 0);
	}
	*phys = W.obj[s->obj]->phys + off;
	*run = s->r.size - off;
	return 0;
}

static void op_odp_init(const uint8_t *a)
{
	struct slot *s = free_slot();
	unsigned int d = a[0] % NDOM;
	uint64_t g, size;
	uint32_t access = (a[2] & 7) | ((a[2] & 8) ? 0 : ODP_ACCESS_DEVICE_READ);
	int r;

	if (!s)
		return;
	g = gran(d);
	size = (((uint64_t)(a[1] & 0x0f) + 1) << 12);
	size = (size + g - 1) & ~(g - 1);
	if (size > OBJSZ)
		size = OBJSZ;
	if ((a[2] & 0xf0) == 0xf0)
		size += 512; /* not a granule multiple */
	s->dom = d;
	s->obj = a[3] % NOBJ;
	r = odp_region_init(&s->r, W.dev[d], size, access, resolve, s);
	if (size & (g - 1)) {
		CHECK(r == -EINVAL);
		return;
	}
	CHECK(r == 0 || r == -ENOSPC);
	if (r)
		return;
	CHECK(!(s->r.st.addr & (g - 1)) && s->r.access == (access | ODP_ACCESS_LOCAL_READ));
	s->kind = S_ODP;
	s->size = size;
	slot_span(s, s->r.st.addr, size); /* every granule known unmapped */
}

static void op_odp_service(const uint8_t *a, const uint8_t *more, size_t nmore)
{
	struct odp_fault f[4];
	struct slot *fs[4];
	struct odp_config cfg = {
		.sync = (a[0] & 1) ? ODP_SYNC_PER_PAGE : ODP_SYNC_BATCH,
		.window = (uint64_t)1 << (a[0] >> 3),
	};
	unsigned int n = 1 + ((a[0] >> 1) & 3), nf = 0;
	int r;

	if (a[0] & 0x80)
		cfg.window = (uint64_t)a[1] << 10; /* not always a power of two */
	W.inv_budget = (a[1] & 0x80) ? 1 + (a[1] & 3) : 0;
	for (unsigned int i = 0; i < n && (!i || i * 4 <= nmore); i++) {
		/* The first fault shares the config byte: an op has only 4 argument bytes. */
		const uint8_t first[4] = { a[1], a[2], a[3], a[0] };
		const uint8_t *b = i ? more + (i - 1) * 4 : first;
		struct slot *s = pick_slot(b[0], S_ODP);
		uint64_t g;

		if (!s)
			break;
		g = gran(s->dom);
		s->inv_in_call = false;
		fs[nf] = s;
		f[nf] = (struct odp_fault){
			.r = &s->r,
			.off = ((uint64_t)b[1] << 8 | b[2]) % (s->size + (b[3] & 1 ? g : 0)),
			.len = ((uint64_t)(b[3] >> 4) << 10) + (b[2] & 0x3f),
			.access = (b[0] & 0x80) ? DOM_ACCESS_WRITE : DOM_ACCESS_READ,
			.flags = (b[3] >> 1) & 7,
			.status = 1,
			.pages = ~UINT64_C(0),
		};
		if (b[3] == 0xff)
			f[nf].len = 0;
		nf++;
	}
	if (!nf)
		return;
	r = odp_service(&cfg, f, nf);
	W.inv_budget = 0;
	CHECK(r >= 0);
	for (unsigned int i = 0; i < nf; i++) {
		struct slot *s = fs[i];
		bool in = f[i].len && f[i].off < s->size && f[i].len <= s->size - f[i].off;
		uint32_t right = f[i].access == DOM_ACCESS_WRITE ? ODP_ACCESS_DEVICE_WRITE
								 : ODP_ACCESS_DEVICE_READ;
		int st = f[i].status;

		CHECK(st == 0 || st == -EFAULT || st == -ENOMEM || st == -EAGAIN ||
		      st == -EINVAL);
		if (!f[i].len)
			CHECK(st == -EINVAL);
		else if (!in || !(s->r.access & right))
			CHECK(st == -EFAULT);
		else
			/* Backing always resolves and nothing caps the table. */
			CHECK(st == 0 || (st == -EAGAIN && s->inv_in_call));
		CHECK(f[i].pages <= s->ng);
	}
	/*
	 * Update the model after the call: the whole window of a fault may now
	 * be mapped (unknown), the faulting range certainly is (unless only
	 * resident pages were asked for or an invalidation ran during the call).
	 */
	for (unsigned int i = 0; i < nf; i++) {
		struct slot *s = fs[i];

		for (uint32_t k = 0; k < s->ng; k++)
			if (!(s->g[k] & G_MAP) || s->inv_in_call)
				s->g[k] = G_UNK;
	}
	for (unsigned int i = 0; i < nf; i++) {
		struct slot *s = fs[i];
		uint32_t lo, hi;
		unsigned int perm;

		if (f[i].status || s->inv_in_call || (f[i].flags & ODP_FAULT_NO_POPULATE))
			continue;
		perm = f[i].access == DOM_ACCESS_WRITE ? G_W : G_R;
		gspan(s, s->base + f[i].off, f[i].len, &lo, &hi);
		for (uint32_t k = lo; k < hi; k++) {
			s->g[k] = (s->g[k] & (G_R | G_W) & ~G_UNK) | G_MAP | G_VIS | perm;
			s->phys[k] = W.obj[s->obj]->phys + (uint64_t)k * gran(s->dom);
		}
		CHECK(!odp_needs_service(&s->r, f[i].off, f[i].len, f[i].access));
	}
	/* The promise itself: the access that faulted now goes through. */
	for (unsigned int i = 0; i < nf; i++) {
		uint64_t len = f[i].len > 2 * OBJSZ ? 2 * OBJSZ : f[i].len;

		if (!f[i].status && !fs[i]->inv_in_call && !(f[i].flags & ODP_FAULT_NO_POPULATE))
			dev_access(fs[i], fs[i]->base + f[i].off, len,
				   f[i].access == DOM_ACCESS_WRITE, (uint8_t)i);
	}
}

static void op_odp_invalidate(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_ODP);
	uint64_t off, len;
	int64_t r;

	if (!s)
		return;
	off = ((uint64_t)a[1] << 8 | a[2]) % (s->size + 1);
	len = ((uint64_t)(a[3] & 0x7f) << 9) + (a[3] >> 7);
	r = odp_invalidate(&s->r, off, len);
	if (!len || off >= s->size || len > s->size - off) {
		CHECK(r == -EINVAL);
		return;
	}
	CHECK(r >= 0 && (uint64_t)r <= s->ng);
	{
		uint32_t lo, hi;

		gspan(s, s->base + off, len, &lo, &hi);
		for (uint32_t k = lo; k < hi; k++)
			s->g[k] = 0;
		/* ... and the device faults there until the next service. */
		dev_access(s, s->base + off, len > 2 * OBJSZ ? 2 * OBJSZ : len, a[0] & 0x80, 0);
	}
}

static void op_odp_fini(const uint8_t *a)
{
	struct slot *s = pick_slot(a[0], S_ODP);

	if (!s)
		return;
	odp_region_fini(&s->r);
	CHECK(!dma_use_iova(&s->r.st) && !s->r.mapped);
	stale_add(s->dom, s->base, (uint64_t)s->ng * gran(s->dom));
	s->kind = S_FREE;
}

static void op_discard(const uint8_t *a)
{
	struct pmem_obj *o = W.obj[a[0] % NOBJ];
	uint64_t off = ((uint64_t)(a[1] & 0x0f) << 12), len = ((uint64_t)(a[2] & 0x0f) + 1) << 12;
	int r;

	if (a[3] & 1)
		off += 512; /* misaligned */
	r = pmem_discard(&W.pmem, o->phys + off, len);
	if (off & 4095)
		CHECK(r == -EINVAL);
	else if (off + len > o->size)
		CHECK(r == -EFAULT || r == -EINVAL);
	else
		CHECK(r == 0);
}

static void op_fq(const uint8_t *a)
{
	unsigned int d = a[0] % NDOM;
	int r;

	switch (a[1] & 3) {
	case 0:
		W.now += (uint64_t)a[2] << 16; /* up to ~16 ms: past the 10 ms timeout sometimes */
		r = dom_fq_poll(W.dom[d]);
		CHECK(r >= 0);
		if (r > 0)
			stale_clear(d);
		break;
	case 1:
		CHECK(dom_fq_flush(W.dom[d]) >= 0);
		stale_clear(d);
		break;
	case 2:
		if (W.batch[d] < 4) {
			dom_batch_begin(W.dom[d]);
			W.batch[d]++;
		}
		break;
	default:
		if (W.batch[d]) {
			r = dom_batch_end(W.dom[d]);
			W.batch[d]--;
			CHECK(r == 0 || (r == 1 && !W.batch[d]));
		}
		break;
	}
}

/* ---- setup and teardown -------------------------------------------------------------- */

static void setup(void)
{
	static const struct dom_config cfgs[NDOM] = {
		{ .granule_shift = 12, .flush = DOM_FLUSH_STRICT },
		{ .granule_shift = 12, .flush = DOM_FLUSH_LAZY },
		{ .granule_shift = 16, .flush = DOM_FLUSH_STRICT, .from_device_rw = true },
	};
	static const char *const names[NDOM] = { "d0", "d1", "d2" };

	memset(&W, 0, sizeof(W));
	CHECK(!pmem_space_init(&W.pmem));
	for (unsigned int i = 0; i < NOBJ; i++) {
		uint8_t *p;

		CHECK(!pmem_obj_create(&W.pmem, OBJSZ, "fuzz", &W.obj[i]));
		p = pmem_va(&W.pmem, W.obj[i]->phys, OBJSZ);
		CHECK(p);
		/* Every byte differs from its neighbours and from the other objects'. */
		for (uint64_t k = 0; k < OBJSZ; k++)
			p[k] = (uint8_t)(k * 7 + (k >> 8) * 13 + i * 101 + 1);
	}
	for (unsigned int d = 0; d < NDOM; d++) {
		struct dom_config c = cfgs[d];
		struct dom_device_config dc = { .name = names[d] };

		c.clock = fake_clock;
		c.clock_arg = &W.now;
		c.swiotlb_bytes = UINT64_C(256) << 10;
		CHECK(!dom_domain_create(&W.pmem, &c, &W.dom[d]));
		CHECK(!dom_device_create(W.dom[d], &dc, &W.dev[d]));
		W.root_bytes[d] = W.dom[d]->pt.stats.table_bytes;
	}
}

static void teardown(void)
{
	struct dom_stats st;

	for (unsigned int i = 0; i < NSLOT; i++) {
		struct slot *s = &W.s[i];
		int r;

		switch (s->kind) {
		case S_STATE: {
			bool all = model_unlink(s, 0, s->size);

			r = dma_iova_destroy(W.dev[s->dom], &s->st, s->size, DMA_BIDIRECTIONAL, 0);
			CHECK(all ? r == 0 : r == -ENOENT);
			CHECK(!dma_use_iova(&s->st));
			break;
		}
		case S_MAP:
			CHECK(!dma_unmap_phys(W.dev[s->dom], s->dma, s->size, DMA_TO_DEVICE, 0));
			break;
		case S_ODP:
			odp_region_fini(&s->r);
			break;
		default:
			break;
		}
		s->kind = S_FREE;
	}
	for (unsigned int d = 0; d < NDOM; d++) {
		while (W.batch[d]--)
			CHECK(dom_batch_end(W.dom[d]) >= 0);
		CHECK(dom_fq_flush(W.dom[d]) >= 0);
		CHECK(!dom_fq_deadline(W.dom[d]));
		dom_domain_stats(W.dom[d], &st);
		CHECK(st.mapped_bytes == 0);
		CHECK(st.table_bytes == W.root_bytes[d] && W.dom[d]->pt.stats.tables == 1);
		dom_device_destroy(W.dev[d]);
		CHECK(!dom_domain_destroy(W.dom[d]));
	}
	pmem_space_fini(&W.pmem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t nops = size / OPSZ;

	if (nops > MAXOPS)
		nops = MAXOPS;
	setup();
	for (size_t i = 0; i < nops; i++) {
		const uint8_t *op = data + i * OPSZ, *a = op + 1;

		switch (op[0] % 18) {
		case 0: case 1:
			op_try_alloc(a);
			break;
		case 2: case 3:
			op_link(a);
			break;
		case 4:
			op_sync(a);
			break;
		case 5:
			op_unlink(a);
			break;
		case 6:
			op_destroy(a);
			break;
		case 7:
			op_free(a);
			break;
		case 8:
			op_map_phys(a);
			break;
		case 9:
			op_unmap_phys(a);
			break;
		case 10: case 11:
			op_access(a);
			break;
		case 12:
			op_odp_init(a);
			break;
		case 13:
			/* Further faults of the batch come from the next op's bytes. */
			op_odp_service(a, op + OPSZ, (nops - i - 1) * OPSZ);
			break;
		case 14:
			op_odp_invalidate(a);
			break;
		case 15:
			if (op[0] & 0x80)
				op_odp_fini(a);
			else
				op_wild(a);
			break;
		case 16:
			op_discard(a);
			break;
		default:
			op_fq(a);
			break;
		}
	}
	teardown();
	return 0;
}
