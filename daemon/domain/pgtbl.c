// SPDX-License-Identifier: MIT
/*
 * pgtbl.c - multi-level radix IO page table
 *
 * Levels are numbered from the root: level 0 is the top table, level
 * (levels - 1) the last one, whose entries are always granule-sized leaves.
 * With a 4 KiB granule and cfg.blocks, level 2 entries may also be 2 MiB
 * leaves and level 1 entries 1 GiB leaves.
 *
 * PTE encoding (64 bits; 0 means "invalid", no other invalid value exists):
 *
 *   bit 0       VALID
 *   bit 1       TABLE: 1 = points to a next-level table, 0 = leaf
 *
 *   leaf:       bits [63:granule_shift]  output address (granule-aligned;
 *                                        block-aligned for a block)
 *               bits [6:2]               PGTBL_READ/WRITE/MMIO/CACHE/PENDING,
 *                                        i.e. the prot value shifted left by 2
 *
 *   table:      bits [63:granule_shift]  child table pointer (every non-root
 *                                        table is one granule, aligned to it)
 *               bits [granule_shift-1:2] number of valid entries in the child
 *                                        (10/12/14 bits for 4K/16K/64K tables,
 *                                        enough for 512/2048/8192 entries)
 *
 * Keeping the child's population count in its parent PTE lets unmap free a
 * table the moment it empties, without any side structure, and lets the
 * read-only walkers (any_mapped, publish, unmap) treat every valid table
 * entry as "something is mapped below", since empty tables never exist
 * (outside the internals of a failing pgtbl_map(), which prunes them).
 * The root's count is pgtbl.root_nr; the root is never freed.
 *
 * Split blocks and the unmap callback: when pgtbl_unmap() only partly covers
 * a block, the block is replaced by a table one level down holding leaves
 * for the whole block (same output addresses and prot, PENDING included) and
 * cb is called ONCE for the whole block (block-aligned IOVA, block size),
 * since the device may have cached the block translation and the whole of it
 * must be invalidated. The smaller leaves then removed inside that block are
 * NOT reported again through cb (a 1 GiB block split into 2 MiB leaves, one
 * of which is split again, still yields one single callback for the 1 GiB).
 * The return value counts only the bytes actually removed.
 *
 * stats.block_maps counts blocks installed by pgtbl_map() only; the smaller
 * blocks a split creates are not counted there (stats.block_splits is).
 */
#include "pgtbl.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PTE_VALID	UINT64_C(1)
#define PTE_TABLE	(UINT64_C(1) << 1)
#define PTE_PROT_SHIFT	2
#define PTE_PROT_BITS	((unsigned int)(PGTBL_PROT_MASK | PGTBL_PENDING))
#define PTE_PENDING	((uint64_t)PGTBL_PENDING << PTE_PROT_SHIFT)
#define PTE_PENDING_BIT	(PTE_PROT_SHIFT + 4)	/* PGTBL_PENDING is 1 << 4 */
#define PTE_CNT_SHIFT	2

#define IAS_END		(UINT64_C(1) << PGTBL_IAS_BITS)

_Static_assert(PGTBL_PENDING == 1u << 4, "PTE_PENDING_BIT");
_Static_assert((PTE_PROT_BITS << PTE_PROT_SHIFT) < 4096, "leaf flags must fit below the granule");

/* Deepest format (4 KiB and 16 KiB granules) has 4 levels. */
#define MAX_LEVELS	4

static inline uint64_t low_mask(const struct pgtbl *pt)
{
	return pgtbl_granule(pt) - 1;
}

static inline unsigned int lvl_shift(const struct pgtbl *pt, unsigned int lvl)
{
	return pt->cfg.granule_shift + pt->bits_per_level * (pt->levels - 1 - lvl);
}

static inline size_t lvl_entries(const struct pgtbl *pt, unsigned int lvl)
{
	return (size_t)1 << (lvl ? pt->bits_per_level : pt->top_bits);
}

static inline size_t lvl_idx(const struct pgtbl *pt, unsigned int lvl, uint64_t iova)
{
	return (size_t)(iova >> lvl_shift(pt, lvl)) & (lvl_entries(pt, lvl) - 1);
}

static inline uint64_t *pte_child(const struct pgtbl *pt, uint64_t pte)
{
	return (uint64_t *)(uintptr_t)(pte & ~low_mask(pt));
}

static inline uint64_t pte_count(const struct pgtbl *pt, uint64_t pte)
{
	return (pte & low_mask(pt)) >> PTE_CNT_SHIFT;
}

/* Adjust the valid-entry count of a table: held in its parent PTE, or root_nr. */
static inline void cnt_add(struct pgtbl *pt, uint64_t *parent_pte, uint64_t n)
{
	if (parent_pte)
		*parent_pte += n << PTE_CNT_SHIFT;
	else
		pt->root_nr += (uint32_t)n;
}

static inline void cnt_sub(struct pgtbl *pt, uint64_t *parent_pte, uint64_t n)
{
	if (parent_pte)
		*parent_pte -= n << PTE_CNT_SHIFT;
	else
		pt->root_nr -= (uint32_t)n;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/*
 * Run helpers for the hot paths: they work on consecutive entries of one
 * table, unrolled by hand with independent accumulators because the build
 * uses plain -O2 (no loop vectorisation worth the name) and a single
 * accumulator would serialise every entry on one dependency chain.
 */

/* OR of n entries: non-zero iff any is valid. */
static inline uint64_t run_or(const uint64_t *p, size_t n)
{
	uint64_t a = 0, b = 0, c = 0, d = 0;
	size_t j = 0;

	for (; j + 4 <= n; j += 4) {
		a |= p[j];
		b |= p[j + 1];
		c |= p[j + 2];
		d |= p[j + 3];
	}
	for (; j < n; j++)
		a |= p[j];
	return a | b | c | d;
}

/* Number of valid entries. */
static inline uint64_t run_count(const uint64_t *p, size_t n)
{
	uint64_t a = 0, b = 0;
	size_t j = 0;

	for (; j + 2 <= n; j += 2) {
		a += p[j] != 0;
		b += p[j + 1] != 0;
	}
	if (j < n)
		a += p[j] != 0;
	return a + b;
}

/* Write n leaves: v, v + step, ... (step does not carry into the flags). */
static inline void run_fill(uint64_t *p, size_t n, uint64_t v, uint64_t step)
{
	size_t j = 0;

	for (; j + 4 <= n; j += 4) {
		p[j] = v;
		p[j + 1] = v + step;
		p[j + 2] = v + 2 * step;
		p[j + 3] = v + 3 * step;
		v += 4 * step;
	}
	for (; j < n; j++, v += step)
		p[j] = v;
}

/* Clear PENDING on n last-level entries (leaves or zeros); count cleared. */
static inline uint64_t run_publish(uint64_t *p, size_t n)
{
	const unsigned int pb = PTE_PENDING_BIT;
	uint64_t a = 0, b = 0;
	size_t j = 0;

	for (; j + 2 <= n; j += 2) {
		uint64_t v = p[j], w = p[j + 1];

		a += (v >> pb) & 1;
		b += (w >> pb) & 1;
		p[j] = v & ~PTE_PENDING;
		p[j + 1] = w & ~PTE_PENDING;
	}
	if (j < n) {
		a += (p[j] >> pb) & 1;
		p[j] &= ~PTE_PENDING;
	}
	return a + b;
}

/*
 * Table memory. Every non-root table is one granule, aligned to it (its
 * parent PTE keeps a count in the low bits). Tables come from chunks of
 * CHUNK_TABLES tables, each one anonymous mmap aligned to the granule, so a
 * table costs exactly its granule of memory: glibc's aligned_alloc(4096,
 * 4096), used before, takes two pages per table (it over-allocates by the
 * alignment and the gaps stay resident), which measured 16 bytes of daemon
 * memory per densely mapped 4 KiB page instead of 8 (bench-scale, rss).
 *
 * Fresh chunk memory is zero, and a table is only ever freed once empty,
 * hence zero again: no table is ever memset. A chunk's free tables are a
 * bitmap; chunks with a free table are on the pt->avail list, so taking a
 * table is O(1). A freed table finds its chunk by binary search in the
 * array of chunks sorted by address, O(log chunks).
 *
 * Chunks are kept until pgtbl_fini(): giving them back when they empty made
 * every table after an invalidation a fresh page to fault in, and the ODP
 * first touch grew with the region's size (bench-scale, fault, over the
 * socket on one vCPU: 6.3 us at 1 GiB, 10.5 us from 4 GiB up, where each
 * fault needs new tables; 6.3 to 6.6 us with the chunks kept; the old
 * aligned_alloc() tables, trimmed back by glibc, 6.0 to 10.8 us). An empty
 * chunk beyond the first is
 * MADV_FREE'd instead: the kernel may take its pages back under memory
 * pressure (they read as zero then, which is what a free table holds) and
 * a table reused before that costs no fault. The first empty chunk is left
 * alone, so a map/unmap cycle that frees and takes one table costs no
 * syscall.
 */
#define CHUNK_TABLES	64u

struct pgtbl_chunk {
	uint8_t *base;		/* CHUNK_TABLES granules */
	size_t map_len;		/* the mapping, alignment slack trimmed */
	uint64_t free;		/* bit i: table i is free */
	struct pgtbl_chunk *next, *prev;	/* on pt->avail while free != 0 */
};

_Static_assert(CHUNK_TABLES == 64, "the free bitmap is one u64");

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Freed tables stay poisoned, so a use after free is still caught under ASan. */
#define tbl_poison(p, n)	ASAN_POISON_MEMORY_REGION((p), (n))
#define tbl_unpoison(p, n)	ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define tbl_poison(p, n)	((void)(p), (void)(n))
#define tbl_unpoison(p, n)	((void)(p), (void)(n))
#endif

static inline size_t chunk_bytes(const struct pgtbl *pt)
{
	return (size_t)CHUNK_TABLES << pt->cfg.granule_shift;
}

static void avail_add(struct pgtbl *pt, struct pgtbl_chunk *c)
{
	c->prev = NULL;
	c->next = pt->avail;
	if (pt->avail)
		pt->avail->prev = c;
	pt->avail = c;
}

static void avail_del(struct pgtbl *pt, struct pgtbl_chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		pt->avail = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

/* Index in pt->chunks of the chunk holding t, or of where base t would go. */
static uint32_t chunk_index(const struct pgtbl *pt, const void *t)
{
	uint32_t lo = 0, hi = pt->nr_chunks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if ((const uint8_t *)t < pt->chunks[mid]->base)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo ? lo - 1 : 0;
}

static void chunk_unmap(struct pgtbl_chunk *c)
{
	tbl_unpoison(c->base, c->map_len);
	munmap(c->base, c->map_len);
	free(c);
}

/* A new chunk, every table free, on pt->avail. */
static struct pgtbl_chunk *chunk_new(struct pgtbl *pt)
{
	size_t len = chunk_bytes(pt), align = (size_t)pgtbl_granule(pt), page, slack;
	struct pgtbl_chunk *c, **nc;
	uint8_t *raw, *base;
	uint32_t i;

	if (pt->nr_chunks == pt->cap_chunks) {
		uint32_t cap = pt->cap_chunks ? 2 * pt->cap_chunks : 16;

		nc = realloc(pt->chunks, cap * sizeof(*nc));
		if (!nc)
			return NULL;
		pt->chunks = nc;
		pt->cap_chunks = cap;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	/* mmap aligns to the page; a larger granule needs the slack trimmed. */
	page = (size_t)sysconf(_SC_PAGESIZE);
	slack = align > page ? align - page : 0;
	raw = mmap(NULL, len + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		free(c);
		return NULL;
	}
	base = (uint8_t *)(((uintptr_t)raw + align - 1) & ~((uintptr_t)align - 1));
	if (base > raw)
		munmap(raw, (size_t)(base - raw));
	if (raw + len + slack > base + len)
		munmap(base + len, (size_t)(raw + len + slack - (base + len)));
	/* Resident means used: no huge page behind a chunk that holds one table. */
	(void)madvise(base, len, MADV_NOHUGEPAGE);
	tbl_poison(base, len);
	c->base = base;
	c->map_len = len;
	c->free = ~UINT64_C(0);
	i = pt->nr_chunks ? chunk_index(pt, base) : 0;
	if (pt->nr_chunks && pt->chunks[i]->base < base)
		i++;
	memmove(pt->chunks + i + 1, pt->chunks + i, (pt->nr_chunks - i) * sizeof(*pt->chunks));
	pt->chunks[i] = c;
	pt->nr_chunks++;
	pt->reserved_bytes += len;
	pt->nr_empty++;
	avail_add(pt, c);
	return c;
}

static uint64_t *tbl_alloc(struct pgtbl *pt)
{
	size_t sz = (size_t)pgtbl_granule(pt);
	struct pgtbl_chunk *c;
	unsigned int i;
	uint64_t *t;

	if (pt->cfg.max_table_bytes && pt->stats.table_bytes + sz > pt->cfg.max_table_bytes)
		return NULL;
	c = pt->avail ? pt->avail : chunk_new(pt);
	if (!c)
		return NULL;
	if (c->free == ~UINT64_C(0))
		pt->nr_empty--;
	i = (unsigned int)__builtin_ctzll(c->free);
	c->free &= c->free - 1;
	if (!c->free)
		avail_del(pt, c);
	t = (uint64_t *)(c->base + ((size_t)i << pt->cfg.granule_shift));
	tbl_unpoison(t, sz);
	pt->stats.table_bytes += sz;
	pt->stats.tables++;
	return t;
}

/* Release a (now empty, hence all-zero) non-root table. */
static void tbl_free(struct pgtbl *pt, uint64_t *t)
{
	struct pgtbl_chunk *c = pt->chunks[chunk_index(pt, t)];
	size_t sz = (size_t)pgtbl_granule(pt);
	unsigned int i = (unsigned int)(((uint8_t *)t - c->base) >> pt->cfg.granule_shift);

	assert((uint8_t *)t >= c->base && (uint8_t *)t < c->base + chunk_bytes(pt));
	assert(!(c->free & (UINT64_C(1) << i)));
	tbl_poison(t, sz);
	if (!c->free)
		avail_add(pt, c);
	c->free |= UINT64_C(1) << i;
	pt->stats.table_bytes -= sz;
	pt->stats.tables--;
	pt->stats.tables_freed++;
	if (c->free != ~UINT64_C(0))
		return;
	if (pt->nr_empty++)
		(void)madvise(c->base, chunk_bytes(pt), MADV_FREE);
}

/* Granule-aligned, non-empty, inside the IAS. */
static bool range_ok(const struct pgtbl *pt, uint64_t iova, uint64_t size)
{
	if (!size || ((iova | size) & low_mask(pt)))
		return false;
	return iova < IAS_END && size <= IAS_END - iova;
}

int pgtbl_init(struct pgtbl *pt, const struct pgtbl_cfg *cfg)
{
	unsigned int bpl, levels;
	size_t root_bytes;

	memset(pt, 0, sizeof(*pt));
	switch (cfg->granule_shift) {
	case 12:
		bpl = 9;
		levels = 4;
		break;
	case 14:
		bpl = 11;
		levels = 4;
		break;
	case 16:
		bpl = 13;
		levels = 3;
		break;
	default:
		return -EINVAL;
	}
	/* Only the 4 KiB format has 2 MiB / 1 GiB blocks at levels 2 and 1. */
	if (cfg->blocks && cfg->granule_shift != 12)
		return -EINVAL;

	pt->cfg = *cfg;
	pt->levels = levels;
	pt->bits_per_level = bpl;
	pt->top_bits = PGTBL_IAS_BITS - cfg->granule_shift - bpl * (levels - 1);
	pt->pgsize_bitmap = pgtbl_granule(pt);
	if (cfg->blocks)
		pt->pgsize_bitmap |= (UINT64_C(1) << 21) | (UINT64_C(1) << 30);

	root_bytes = lvl_entries(pt, 0) * sizeof(uint64_t);
	pt->root = calloc(lvl_entries(pt, 0), sizeof(uint64_t));
	if (!pt->root)
		return -ENOMEM;
	pt->stats.table_bytes = root_bytes;
	pt->reserved_bytes = root_bytes;
	pt->stats.tables = 1;
	return 0;
}

void pgtbl_fini(struct pgtbl *pt)
{
	if (!pt || !pt->root)
		return;
	/* Every non-root table lives in a chunk: no need to walk the tree. */
	for (uint32_t i = 0; i < pt->nr_chunks; i++)
		chunk_unmap(pt->chunks[i]);
	free(pt->chunks);
	free(pt->root);
	pt->chunks = NULL;
	pt->nr_chunks = pt->cap_chunks = pt->nr_empty = 0;
	pt->avail = NULL;
	pt->root = NULL;
	pt->root_nr = 0;
	pt->stats.table_bytes = 0;
	pt->reserved_bytes = 0;
	pt->stats.tables = 0;
}

/*
 * Largest supported leaf size that fits len and to which iova and phys are
 * both aligned (the kernel's iommu_pgsize()). Returns its shift.
 */
static inline unsigned int pick_shift(uint64_t sizes, uint64_t iova, uint64_t phys, uint64_t len)
{
	uint64_t merge = iova | phys;

	/* Sizes <= len (unsigned wrap-around makes top == 63 mean "all"). */
	sizes &= (UINT64_C(2) << (63 - __builtin_clzll(len))) - 1;
	if (merge)
		sizes &= ((merge & -merge) << 1) - 1;
	assert(sizes);
	return 63 - (unsigned int)__builtin_clzll(sizes);
}

/* Forward: used by the map rollback. */
static int64_t unmap_tbl(struct pgtbl *pt, uint64_t *tbl, unsigned int lvl, uint64_t iova,
			 uint64_t end, pgtbl_unmap_cb cb, void *arg, uint64_t *removed);

/*
 * A failing map may have left freshly allocated, still empty tables on the
 * path of the IOVA where it stopped: free them bottom-up.
 */
static void prune_path(struct pgtbl *pt, uint64_t iova)
{
	uint64_t *pteps[MAX_LEVELS];
	uint64_t *tbl = pt->root;
	unsigned int l, depth = 0;

	for (l = 0; l < pt->levels - 1; l++) {
		uint64_t *ptep = tbl + lvl_idx(pt, l, iova);

		if (!(*ptep & PTE_TABLE))
			break;
		pteps[depth++] = ptep;
		tbl = pte_child(pt, *ptep);
	}
	while (depth) {
		uint64_t *ptep = pteps[--depth];

		if (pte_count(pt, *ptep))
			break;
		tbl_free(pt, pte_child(pt, *ptep));
		*ptep = 0;
		cnt_sub(pt, depth ? pteps[depth - 1] : NULL, 1);
	}
}

int pgtbl_map(struct pgtbl *pt, uint64_t iova, uint64_t phys, uint64_t size, unsigned int prot)
{
	const unsigned int last = pt->levels - 1;
	const uint64_t start = iova;
	struct pgtbl_stats saved;
	uint64_t end, flags, sizes, removed = 0;
	int ret;

	if (!range_ok(pt, iova, size) || (phys & low_mask(pt)))
		return -EINVAL;
	end = iova + size;
	flags = ((uint64_t)(prot & PTE_PROT_BITS) << PTE_PROT_SHIFT) | PTE_VALID;
	sizes = prot & PGTBL_NO_BLOCKS ? UINT64_C(1) << pt->cfg.granule_shift : pt->pgsize_bitmap;
	saved = pt->stats;

	while (iova < end) {
		unsigned int shift = pick_shift(sizes, iova, phys, end - iova);
		unsigned int lvl = last - (shift - pt->cfg.granule_shift) / pt->bits_per_level;
		uint64_t *tbl = pt->root, *parent = NULL;
		size_t i, n;
		unsigned int l;

		for (l = 0; l < lvl; l++) {
			uint64_t *ptep = tbl + lvl_idx(pt, l, iova);
			uint64_t pte = *ptep;

			if (!pte) {
				uint64_t *child = tbl_alloc(pt);

				if (!child) {
					ret = -ENOMEM;
					goto fail;
				}
				*ptep = (uintptr_t)child | PTE_TABLE | PTE_VALID;
				cnt_add(pt, parent, 1);
				tbl = child;
			} else if (!(pte & PTE_TABLE)) {
				/* A block covers where we need to descend. */
				ret = -EEXIST;
				goto fail;
			} else {
				tbl = pte_child(pt, pte);
			}
			parent = ptep;
		}

		/*
		 * Fill a run of entries of this table. Inside one table the
		 * chosen size cannot grow (the next larger size is the table's
		 * own span), it only shrinks when the remaining length does, so
		 * the run ends at the table end or when less than a leaf is left.
		 * Any non-zero entry (leaf, or table with something below) is a
		 * conflict; check first so the fill loop stays branch-free.
		 */
		i = lvl_idx(pt, lvl, iova);
		n = min_u64(lvl_entries(pt, lvl) - i, (end - iova) >> shift);
		if (run_or(tbl + i, n)) {
			ret = -EEXIST;
			goto fail;
		}
		run_fill(tbl + i, n, phys | flags, UINT64_C(1) << shift);
		cnt_add(pt, parent, n);
		pt->stats.leaves += n;
		pt->stats.mapped_bytes += (uint64_t)n << shift;
		if (lvl != last)
			pt->stats.block_maps += n;
		iova += (uint64_t)n << shift;
		phys += (uint64_t)n << shift;
	}
	return 0;

fail:
	/*
	 * Everything in [start, iova) was free before this call and is now
	 * made of leaves we installed, each entirely inside the range, so
	 * unmapping it cannot split nor fail, and frees the tables we added.
	 */
	prune_path(pt, iova);
	if (iova > start) {
		unmap_tbl(pt, pt->root, 0, start, iova, NULL, NULL, &removed);
		pt->root_nr -= (uint32_t)removed;
	}
	pt->stats = saved;
	return ret;
}

/*
 * Replace the block pte at level lvl by a table of leaves one level down that
 * translate the same way. Returns the new table PTE, or 0 on -ENOMEM.
 */
static uint64_t split_block(struct pgtbl *pt, uint64_t pte, unsigned int lvl)
{
	unsigned int cshift = lvl_shift(pt, lvl + 1);
	size_t j, n = lvl_entries(pt, lvl + 1);
	uint64_t addr = pte & ~low_mask(pt), flags = pte & low_mask(pt);
	uint64_t *child = tbl_alloc(pt);

	if (!child)
		return 0;
	for (j = 0; j < n; j++)
		child[j] = (addr + ((uint64_t)j << cshift)) | flags;
	pt->stats.leaves += n - 1;
	pt->stats.block_splits++;
	return (uintptr_t)child | PTE_TABLE | PTE_VALID | ((uint64_t)n << PTE_CNT_SHIFT);
}

/*
 * Unmap [iova, end) within tbl (level lvl); the range does not leave the
 * table's span. *removed is set to the number of entries of tbl cleared (the
 * caller owns tbl's count). Returns bytes unmapped or -ENOMEM.
 */
static int64_t unmap_tbl(struct pgtbl *pt, uint64_t *tbl, unsigned int lvl, uint64_t iova,
			 uint64_t end, pgtbl_unmap_cb cb, void *arg, uint64_t *removed)
{
	unsigned int shift = lvl_shift(pt, lvl);
	uint64_t sz = UINT64_C(1) << shift;
	size_t i = lvl_idx(pt, lvl, iova);
	uint64_t cnt = 0;
	int64_t bytes = 0;

	if (lvl == pt->levels - 1) {
		/* Last level: every valid entry is a granule leaf, fully covered. */
		size_t j, n = (size_t)((end - iova) >> shift);

		if (cb) {
			/* One callback per run of present leaves, not per leaf. */
			for (j = 0; j < n;) {
				size_t k = j;

				if (!tbl[i + j]) {
					j++;
					continue;
				}
				while (k < n && tbl[i + k])
					k++;
				cnt += k - j;
				cb(arg, iova + ((uint64_t)j << shift), (uint64_t)(k - j) << shift, sz);
				j = k;
			}
		} else {
			cnt = run_count(tbl + i, n);
		}
		memset(tbl + i, 0, n * sizeof(*tbl));
		pt->stats.leaves -= cnt;
		pt->stats.mapped_bytes -= cnt << shift;
		*removed = cnt;
		return (int64_t)(cnt << shift);
	}

	for (; iova < end; i++) {
		uint64_t e_start = iova & ~(sz - 1);
		uint64_t next = min_u64(e_start + sz, end);
		uint64_t *ptep = tbl + i;
		uint64_t pte = *ptep;
		pgtbl_unmap_cb ccb = cb;
		uint64_t crem = 0;
		int64_t r;

		if (!pte) {
			iova = next;
			continue;
		}
		if (!(pte & PTE_TABLE)) {
			if (iova == e_start && next == e_start + sz) {
				*ptep = 0;
				cnt++;
				bytes += (int64_t)sz;
				pt->stats.leaves--;
				pt->stats.mapped_bytes -= sz;
				if (cb)
					cb(arg, e_start, sz, sz);
				iova = next;
				continue;
			}
			/* Partly covered block: split, report it whole, go on below. */
			pte = split_block(pt, pte, lvl);
			if (!pte) {
				*removed = cnt;
				return -ENOMEM;
			}
			*ptep = pte;
			if (cb)
				cb(arg, e_start, sz, sz);
			ccb = NULL;
		}
		r = unmap_tbl(pt, pte_child(pt, pte), lvl + 1, iova, next, ccb, arg, &crem);
		*ptep -= crem << PTE_CNT_SHIFT;
		if (!pte_count(pt, *ptep)) {
			tbl_free(pt, pte_child(pt, *ptep));
			*ptep = 0;
			cnt++;
		}
		if (r < 0) {
			*removed = cnt;
			return r;
		}
		bytes += r;
		iova = next;
	}
	*removed = cnt;
	return bytes;
}

int64_t pgtbl_unmap(struct pgtbl *pt, uint64_t iova, uint64_t size, pgtbl_unmap_cb cb, void *arg)
{
	uint64_t removed = 0;
	int64_t r;

	if (!range_ok(pt, iova, size))
		return -EINVAL;
	r = unmap_tbl(pt, pt->root, 0, iova, iova + size, cb, arg, &removed);
	pt->root_nr -= (uint32_t)removed;
	return r;
}

/* Clear PENDING on leaves of tbl intersecting [iova, end); count them. */
static uint64_t publish_tbl(struct pgtbl *pt, uint64_t *tbl, unsigned int lvl, uint64_t iova,
			    uint64_t end)
{
	unsigned int shift = lvl_shift(pt, lvl);
	uint64_t sz = UINT64_C(1) << shift;
	size_t i = lvl_idx(pt, lvl, iova);
	uint64_t cnt = 0;

	if (lvl == pt->levels - 1) {
		/* Only leaves (or zeros, which stay zero) here: branch-free. */
		return run_publish(tbl + i, (size_t)((end - iova) >> shift));
	}
	for (; iova < end; i++) {
		uint64_t next = min_u64((iova & ~(sz - 1)) + sz, end);
		uint64_t pte = tbl[i];

		if (pte & PTE_TABLE) {
			cnt += publish_tbl(pt, pte_child(pt, pte), lvl + 1, iova, next);
		} else if (pte & PTE_PENDING) {
			tbl[i] = pte & ~PTE_PENDING;
			cnt++;
		}
		iova = next;
	}
	return cnt;
}

int64_t pgtbl_publish(struct pgtbl *pt, uint64_t iova, uint64_t size)
{
	if (!range_ok(pt, iova, size))
		return -EINVAL;
	return (int64_t)publish_tbl(pt, pt->root, 0, iova, iova + size);
}

int pgtbl_lookup(const struct pgtbl *pt, uint64_t iova, struct pgtbl_leaf *ret)
{
	const uint64_t *tbl = pt->root;
	unsigned int l;

	if (iova >= IAS_END)
		return -ENOENT;
	for (l = 0; l < pt->levels; l++) {
		uint64_t pte = tbl[lvl_idx(pt, l, iova)];

		if (!pte)
			return -ENOENT;
		if (!(pte & PTE_TABLE)) {
			uint64_t sz = UINT64_C(1) << lvl_shift(pt, l);

			ret->size = sz;
			ret->iova = iova & ~(sz - 1);
			ret->phys = pte & ~low_mask(pt);
			ret->prot = (unsigned int)(pte >> PTE_PROT_SHIFT) & PTE_PROT_BITS;
			return 0;
		}
		tbl = pte_child(pt, pte);
	}
	assert(0 && "table entry at the last level");
	return -ENOENT;
}

/*
 * Any leaf of tbl intersecting [iova, end)? A valid table entry whose span
 * the range covers entirely answers yes at once: empty tables never exist.
 */
static bool any_tbl(const struct pgtbl *pt, const uint64_t *tbl, unsigned int lvl,
		    uint64_t iova, uint64_t end)
{
	unsigned int shift = lvl_shift(pt, lvl);
	uint64_t sz = UINT64_C(1) << shift;
	size_t i = lvl_idx(pt, lvl, iova);

	for (; iova < end; i++) {
		uint64_t e_start = iova & ~(sz - 1);
		uint64_t next = min_u64(e_start + sz, end);
		uint64_t pte = tbl[i];

		if (pte) {
			if (!(pte & PTE_TABLE) || (iova == e_start && next == e_start + sz))
				return true;
			if (any_tbl(pt, pte_child(pt, pte), lvl + 1, iova, next))
				return true;
		}
		iova = next;
	}
	return false;
}

bool pgtbl_any_mapped(const struct pgtbl *pt, uint64_t iova, uint64_t size)
{
	uint64_t end;

	if (!size || iova >= IAS_END)
		return false;
	end = size > IAS_END - iova ? IAS_END : iova + size;
	return any_tbl(pt, pt->root, 0, iova, end);
}

/*
 * OR add (PTE bits, already shifted) into the leaves of tbl intersecting
 * [iova, end); report each changed leaf. Only READ/WRITE ever get here, so
 * PENDING and the output address are left exactly as they were: an upgrade
 * must not publish a leaf nobody has synced, nor move it.
 */
static uint64_t protect_tbl(struct pgtbl *pt, uint64_t *tbl, unsigned int lvl, uint64_t iova,
			    uint64_t end, uint64_t add, pgtbl_unmap_cb cb, void *arg)
{
	unsigned int shift = lvl_shift(pt, lvl);
	uint64_t sz = UINT64_C(1) << shift;
	size_t i = lvl_idx(pt, lvl, iova);
	uint64_t bytes = 0;

	for (; iova < end; i++) {
		uint64_t e_start = iova & ~(sz - 1);
		uint64_t next = min_u64(e_start + sz, end);
		uint64_t pte = tbl[i];

		if (pte & PTE_TABLE) {
			bytes += protect_tbl(pt, pte_child(pt, pte), lvl + 1, iova, next, add, cb,
					     arg);
		} else if (pte && (pte | add) != pte) {
			/* A block only partly in the range still changes whole. */
			tbl[i] = pte | add;
			bytes += sz;
			if (cb)
				cb(arg, e_start, sz, sz);
		}
		iova = next;
	}
	return bytes;
}

int64_t pgtbl_protect(struct pgtbl *pt, uint64_t iova, uint64_t size, unsigned int set,
		      pgtbl_unmap_cb cb, void *arg)
{
	uint64_t add = (uint64_t)(set & (PGTBL_READ | PGTBL_WRITE)) << PTE_PROT_SHIFT;

	if (!range_ok(pt, iova, size))
		return -EINVAL;
	if (!add)
		return 0;
	return (int64_t)protect_tbl(pt, pt->root, 0, iova, iova + size, add, cb, arg);
}
