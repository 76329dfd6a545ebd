/* SPDX-License-Identifier: MIT */
/*
 * journal.h - the state journal: an append-only file of checksummed
 * records, written through io_uring with group commit.
 *
 * Records appended while the loop runs collect in a buffer; once per loop
 * iteration the buffer goes out as one write linked to one fdatasync (one
 * io_uring submission), while the next iteration's records collect behind
 * it. When both complete, every record in the commit is durable and the
 * owner is told the highest durable sequence number, so that it can release
 * the replies it held back. A write or sync that fails is fatal to the
 * process (the owner decides how to die): after a failed fsync the page
 * cache's state is unknown, so the only honest recovery is a restart from
 * what the file provably holds, as PostgreSQL does.
 *
 * File format (little-endian): records of struct jrec_hdr + body, each
 * padded to 8 bytes. crc is CRC-32 (zlib) over the header with crc = 0
 * and the body. Reading stops at the first record that is short, has a
 * bad magic, length or CRC: the tail of a write the process died in. That
 * tail is cut off, so the next append follows the last whole record.
 *
 * A checkpoint rewrites the live state into "journal.new" with plain
 * synchronous writes, fdatasyncs it, renames it over "journal" and syncs
 * the directory: a crash at any point leaves one whole file.
 */
#ifndef IOVAD_DAEMON_JOURNAL_H
#define IOVAD_DAEMON_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JREC_MAGIC 0x4a564f49u /* "IOVJ" */

struct jrec_hdr {
	uint32_t magic;
	uint32_t len;   /* header + body, before padding */
	uint32_t type;
	uint32_t crc;
	uint64_t seq;   /* 1, 2, ... in the order records were appended */
};

struct event_base;
struct journal;

struct journal_ops {
	/* Just before a commit is cut: the last chance to add a record to it. */
	void (*pre_commit)(void *arg);
	/* Every record up to seq is durable. */
	void (*durable)(void *arg, uint64_t seq);
	/* A commit failed (-errno, already logged): the process must not go on. */
	void (*failed)(void *arg, int err);
};

/* One part of a record's body (records are gathered from up to 4). */
struct jpart {
	const void *p;
	size_t len;
};

/*
 * journal_open - open (creating) DIR/journal. sync: fdatasync each commit
 * (false: a commit is durable once written, which survives the daemon's
 * crash but not the machine's). Return: 0, or -errno with a message.
 */
int journal_open(struct journal **ret, const char *dir, bool sync, struct event_base *base,
		 const struct journal_ops *ops, void *arg, char *err, size_t errlen);
/* Flush what is pending synchronously and close. NULL-safe. */
void journal_close(struct journal *j);

/*
 * journal_read - call fn for each whole record in file order, then cut off
 * a torn tail. fn returns 0 or -errno (stops the read with that error).
 * Return: 0, or -errno. *bytes_cut gets what was cut.
 */
int journal_read(struct journal *j, int (*fn)(void *arg, const struct jrec_hdr *h,
					     const uint8_t *body, size_t len),
		 void *arg, uint64_t *bytes_cut);

/* Append a record; it commits with the current loop iteration. Return: its seq, 0 on ENOMEM. */
uint64_t journal_append(struct journal *j, uint32_t type, const struct jpart *parts, int nparts);
/* Commit what is pending now, and take a finished commit's completions (the ring
 * poller's shortcut: it runs libevent only every few microseconds). */
void journal_poll(struct journal *j);
/* The highest seq known durable, and the highest appended. */
uint64_t journal_durable(const struct journal *j);
uint64_t journal_last(const struct journal *j);
/* Commit now and wait for it (shutdown, before a checkpoint). Return: 0 or -errno. */
int journal_flush(struct journal *j);

/*
 * journal_rewrite_begin / _end - write a checkpoint. Between the two,
 * journal_append() writes synchronously into the new file (the caller
 * appends the whole live state). _end makes it the journal. abort drops it.
 * Return: 0, or -errno (the old journal stays in use).
 */
int journal_rewrite_begin(struct journal *j);
int journal_rewrite_end(struct journal *j);
void journal_rewrite_abort(struct journal *j);

/* Bytes in the journal file (the live one). */
uint64_t journal_size(const struct journal *j);

struct journal_stats {
	uint64_t commits;
	uint64_t records;
	uint64_t bytes;
	uint64_t checkpoints;
	uint64_t commit_ns_total; /* submit to durable, summed */
};
void journal_stats(const struct journal *j, struct journal_stats *ret);

#endif /* IOVAD_DAEMON_JOURNAL_H */
