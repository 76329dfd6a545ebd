/* SPDX-License-Identifier: MIT */
/*
 * pgtbl.h - multi-level radix IO page table (the simulated IOMMU's format)
 *
 * Formats, with a 48-bit input address space (IAS):
 *   granule  4 KiB: 4 levels x 512 entries (9 bits each); blocks of 2 MiB
 *                   (level 2) and 1 GiB (level 1) when cfg.blocks is set
 *   granule 16 KiB: 4 levels, 2 + 2048 x 3 entries (1 + 11 x 3 bits)
 *   granule 64 KiB: 3 levels, 64 + 8192 x 2 entries (6 + 13 x 2 bits)
 * Every table is one granule-sized array of 64-bit PTEs, exactly as the
 * hardware formats size them, so a densely mapped page costs 8 bytes of leaf
 * table (plus ~1/512 of that for the levels above).
 *
 * A leaf PTE holds the granule-aligned output address and permission bits.
 * A table PTE holds the next table's pointer and, in the bits its alignment
 * frees, the number of valid entries in that table, so a table is freed as
 * soon as it becomes empty without any side structure.
 *
 * PGTBL_PENDING marks a leaf written by pgtbl_map() but not yet published by
 * pgtbl_publish(): the domain uses it to model "linked but not synced", which
 * the simulated device treats as not present.
 *
 * Not thread-safe; no global state; never logs.
 */
#ifndef IOVAD_DOMAIN_PGTBL_H
#define IOVAD_DOMAIN_PGTBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGTBL_IAS_BITS 48

struct pgtbl_chunk; /* private to pgtbl.c */

/* Leaf permissions and attributes (stored in the PTE). */
enum {
	PGTBL_READ    = 1u << 0, /* device may read */
	PGTBL_WRITE   = 1u << 1, /* device may write */
	PGTBL_MMIO    = 1u << 2, /* MMIO / peer-to-peer attributes, not cached */
	PGTBL_CACHE   = 1u << 3, /* coherent (snooped) access */
	PGTBL_PENDING = 1u << 4, /* linked, not yet made visible */
	PGTBL_PROT_MASK = PGTBL_READ | PGTBL_WRITE | PGTBL_MMIO | PGTBL_CACHE,
	/* pgtbl_map() only, not stored: granule leaves only, never a block */
	PGTBL_NO_BLOCKS = 1u << 5,
};

struct pgtbl_cfg {
	unsigned int granule_shift; /* 12, 14 or 16 */
	bool blocks;                /* allow 2 MiB and 1 GiB leaves (4 KiB granule only) */
	uint64_t max_table_bytes;   /* 0 = unlimited; beyond it map/split fail with -ENOMEM */
};

struct pgtbl_stats {
	uint64_t table_bytes;   /* bytes of table memory currently allocated, root included */
	uint64_t tables;        /* tables currently allocated, root included */
	uint64_t mapped_bytes;  /* bytes currently mapped by leaves */
	uint64_t leaves;        /* valid leaf PTEs */
	uint64_t block_maps;    /* leaves installed above the last level, ever */
	uint64_t block_splits;  /* blocks split by a partial unmap, ever */
	uint64_t tables_freed;  /* tables freed because they became empty, ever */
};

struct pgtbl {
	struct pgtbl_cfg cfg;
	unsigned int levels;         /* number of levels */
	unsigned int bits_per_level; /* index bits of every level but the top */
	unsigned int top_bits;       /* index bits of the top level */
	uint64_t pgsize_bitmap;      /* supported leaf sizes, as the kernel's */
	uint64_t *root;              /* top-level table */
	uint32_t root_nr;            /* valid entries in the root */
	struct pgtbl_stats stats;
	/*
	 * Table memory taken from the system: the root and whole chunks of
	 * tables, free ones included (>= stats.table_bytes); chunks are kept
	 * until pgtbl_fini(), so this is the high-water mark. Not in stats: a
	 * failed map restores those, but a chunk it took stays.
	 */
	uint64_t reserved_bytes;
	/* private: the chunks tables come from (pgtbl.c) */
	struct pgtbl_chunk **chunks; /* sorted by address */
	uint32_t nr_chunks, cap_chunks;
	uint32_t nr_empty;           /* chunks with every table free */
	struct pgtbl_chunk *avail;   /* chunks with a free table */
};

/* One leaf as found by a lookup. */
struct pgtbl_leaf {
	uint64_t iova;  /* first IOVA covered by the leaf (aligned to size) */
	uint64_t phys;  /* output address of that first IOVA */
	uint64_t size;  /* leaf size: granule, 2 MiB or 1 GiB */
	unsigned int prot; /* PGTBL_* bits, PGTBL_PENDING included */
};

/*
 * Called by pgtbl_unmap() for what it removes, in ascending IOVA order: once
 * per run of adjacent leaves of the same size within one table, with the
 * run's first IOVA, its length (a multiple of pgsize) and the leaf size; for
 * a split block, once with the whole block (iova aligned to it, len == pgsize
 * == block size) before its remaining parts are re-installed one level down.
 * A run is exactly what the kernel's iotlb gather would have merged from
 * per-page calls, so a gather fed from runs flushes the same ranges.
 */
typedef void (*pgtbl_unmap_cb)(void *arg, uint64_t iova, uint64_t len, uint64_t pgsize);

/* Return: 0, -EINVAL (bad granule, or blocks without a 4 KiB granule), -ENOMEM. */
int pgtbl_init(struct pgtbl *pt, const struct pgtbl_cfg *cfg);
/* Free every table. NULL-safe. */
void pgtbl_fini(struct pgtbl *pt);

/*
 * pgtbl_map - map [iova, iova + size) to [phys, phys + size) with prot
 * (PGTBL_PROT_MASK bits, plus PGTBL_PENDING to leave the leaves unpublished).
 * Uses the largest supported leaf whose size fits the remaining length and
 * to which both iova and phys are aligned (with PGTBL_NO_BLOCKS in prot:
 * granule leaves only, as granule-sized calls one by one would).
 * All or nothing: on error nothing has changed.
 * Return: 0; -EINVAL if iova, phys or size is not granule-aligned, size is 0,
 * or the range leaves the IAS; -EEXIST if any granule of the range is mapped;
 * -ENOMEM if a table cannot be allocated (or max_table_bytes is reached).
 */
int pgtbl_map(struct pgtbl *pt, uint64_t iova, uint64_t phys, uint64_t size, unsigned int prot);

/*
 * pgtbl_unmap - remove every leaf in [iova, iova + size), skipping holes.
 * A block only partly covered is split first (needs a table: -ENOMEM is
 * possible, in which case leaves before it may already be gone; cb has been
 * told about each). Tables that become empty are freed.
 * Return: bytes unmapped (size minus holes), -EINVAL (alignment/IAS as for
 * map), or -ENOMEM.
 */
int64_t pgtbl_unmap(struct pgtbl *pt, uint64_t iova, uint64_t size, pgtbl_unmap_cb cb, void *arg);

/*
 * pgtbl_publish - clear PGTBL_PENDING on every leaf that intersects
 * [iova, iova + size). Return: number of leaves published (>= 0), or -EINVAL.
 */
int64_t pgtbl_publish(struct pgtbl *pt, uint64_t iova, uint64_t size);

/*
 * pgtbl_protect - OR set (PGTBL_READ / PGTBL_WRITE) into every leaf that
 * intersects [iova, iova + size); a block is changed whole. cb (may be
 * NULL) is told each changed leaf as (arg, leaf iova, leaf size, leaf size).
 * Return: bytes of leaves changed (>= 0), -EINVAL (alignment/IAS as map).
 */
int64_t pgtbl_protect(struct pgtbl *pt, uint64_t iova, uint64_t size, unsigned int set,
		      pgtbl_unmap_cb cb, void *arg);

/* pgtbl_lookup - the leaf translating iova. Return: 0, or -ENOENT. */
int pgtbl_lookup(const struct pgtbl *pt, uint64_t iova, struct pgtbl_leaf *ret);

/* pgtbl_any_mapped - true if any leaf intersects [iova, iova + size). */
bool pgtbl_any_mapped(const struct pgtbl *pt, uint64_t iova, uint64_t size);

static inline uint64_t pgtbl_granule(const struct pgtbl *pt)
{
	return UINT64_C(1) << pt->cfg.granule_shift;
}

#endif /* IOVAD_DOMAIN_PGTBL_H */
