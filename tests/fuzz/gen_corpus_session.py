#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write fuzz_session's seed corpus (tests/fuzz/corpus_session/*.bin).

    tests/fuzz/gen_corpus_session.py [outdir]   (default: corpus_session/ next to this file)

Each seed is a meaningful client session in fuzz_session.c's input format
(see the comment at the top of that file): a setup byte, then records of
ctl, type, u16 length and body. Addresses are written "fixed": the top byte
picks an entry of what earlier replies told (IOVAs, dma addresses and ODP
IOVAs in reply order; phys of each memory object, then its end), the low 24
bits are an offset from it. So a seed names "the first IOVA the daemon gave
out, + 0x1000" without knowing the daemon's allocator.

Layouts mirror proto/proto.h (gen_corpus.py checks the same sizes).
"""
import os
import struct
import sys

# ctl bits
B, RAW, FIX, LOOP, RECONNECT, RING = 1, 2, 4, 8, 16, 128
FD_SEALED, FD_UNSEALED, FD_NONE, FD_TWO = 0, 1, 2, 3

(HELLO, DEV_OPEN, DEV_CLOSE, DEV_STATS, MEM_IMPORT, MEM_FREE, IOVA_ALLOC, BATCH, DMA_READ,
 DMA_WRITE, STATUS, LIST_DEVICES, LIST_CLIENTS, CLIENT_MAPS, ODP_REG, ODP_DEREG, ODP_ADVISE,
 ODP_INVALIDATE, MEM_DISCARD, ODP_STATS, FAULT_DONE, LIST_ODP, IOVA_RKEY, RING_SETUP) = range(1, 25)
LINK, SYNC, UNLINK, DESTROY, FREE, MAP, UNMAP = range(1, 8)
BIDI, TO_DEV, FROM_DEV = 0, 1, 2

# fuzz_session's device table: the daemon's defaults, then its own three (DEV_OPEN's byte 0)
DEVS = ["sim0", "sim-lazy0", "sim32", "untrusted0", "identity0", "sim64k0", "sim0b", "nc0", "vis0"]
ODP_RW = 0x7
ODP_IMPLICIT, ODP_USER_FAULTS = 1, 2
HDR = struct.Struct("<IHHIIQ")
MAGIC = 0x44564F49


def fx(idx, off=0):
    """An address field: entry idx of the known addresses, plus off."""
    return (idx << 56) | off


def setup(hello_a=True, hello_b=True, version=3):
    return bytes([(1 if hello_a else 0) | (2 if hello_b else 0) | ((version - 1) << 2)])


def rec(typ, body=b"", ctl=0, fd=FD_SEALED):
    return struct.pack("<BBH", ctl | (fd << 5), typ - 1, len(body)) + body


def raw(frame, ctl=0):
    return struct.pack("<BBH", ctl | RAW, 0, len(frame)) + frame


def dev_open(dev, ctl=0):
    return rec(DEV_OPEN, bytes([DEVS.index(dev)]) + bytes(31), ctl)


def ref(typ, handle, word=0, ctl=0):
    return rec(typ, struct.pack("<II", handle, word), ctl)


def mem_import(pages, ctl=0, fd=FD_SEALED, offset_pages=0):
    # fuzz_session: size = ((size & 0x3f) + 1) pages, offset = (offset & 3) pages
    return rec(MEM_IMPORT, struct.pack("<QQ", offset_pages, pages - 1), ctl, fd)


def iova_alloc(dev, phys, size, ctl=FIX):
    return rec(IOVA_ALLOC, struct.pack("<IIQQ", dev, 0, phys, size), ctl)


def op(opcode, dev, iova=0, phys=0, offset=0, size=0, d=BIDI, attrs=0):
    return struct.pack("<HBBIQQQQQ", opcode, d, 0, dev, iova, phys, offset, size, attrs)


def batch(ops, flags=0, ctl=FIX):
    return rec(BATCH, struct.pack("<II", len(ops) - 1, flags) + b"".join(ops), ctl)


def dma_read(dev, iova, length, ctl=FIX):
    # fuzz_session: len = 1 + len % 16384
    return rec(DMA_READ, struct.pack("<IIQ", dev, length - 1, iova), ctl)


def dma_write(dev, iova, data, ctl=FIX):
    return rec(DMA_WRITE, struct.pack("<IIQ", dev, len(data), iova) + data, ctl)


def lst(typ, session_idx=0, start=0, ctl=0):
    return rec(typ, struct.pack("<QII", fx(session_idx) if ctl & FIX else 0, start, 0), ctl)


def odp_reg(dev, mem, offset, length, access=ODP_RW, flags=0, ctl=0):
    return rec(ODP_REG, struct.pack("<IIQQII", dev, mem, offset, length, access, flags), ctl)


def odp_range(typ, odp, offset, length, advice=0, flags=0, ctl=0):
    return rec(typ, struct.pack("<IIIIQQ", odp, advice, flags, 0, offset, length), ctl)


def mem_discard(mem, offset, length, ctl=0):
    return rec(MEM_DISCARD, struct.pack("<IIQQ", mem, 0, offset, length), ctl)


def fault_done(idx, status=0, ctl=FIX):
    # fuzz_session: with FIX, byte 0 picks a fault id the daemon sent
    return rec(FAULT_DONE, struct.pack("<QiI", idx, status, 0), ctl)


def iova_rkey(dev, iova, ctl=FIX):
    return rec(IOVA_RKEY, struct.pack("<IIQ", dev, 0, iova), ctl)


def frame(typ, body, version=3, ident=1, magic=MAGIC, length=None):
    n = HDR.size + len(body) if length is None else length
    return HDR.pack(magic, version, typ, n, 0, ident) + body


P = 4096
SEEDS = {}

# The IOVA-based DMA API end to end: alloc, link in two pieces, sync, device
# writes and reads, unlink half, destroy, free the memory, close the device.
SEEDS["state_lifecycle"] = setup() + b"".join([
    dev_open("sim0"), mem_import(16),
    iova_alloc(1, fx(0), 4 * P),
    batch([op(LINK, 1, fx(0), fx(0), 0, 2 * P), op(LINK, 1, fx(0), fx(0, 2 * P), 2 * P, 2 * P),
           op(SYNC, 1, fx(0), 0, 0, 4 * P)]),
    dma_write(1, fx(0, 0x100), b"0123456789abcdef"), dma_read(1, fx(0, 0xF0), 64),
    batch([op(UNLINK, 1, fx(0), 0, 2 * P, 2 * P)]),
    dma_read(1, fx(0, 3 * P), 16),
    batch([op(DESTROY, 1, fx(0), 0, 0, 2 * P)]),
    ref(MEM_FREE, 1), ref(DEV_CLOSE, 1),
])

# The same on every kind of device: lazy flush, 32-bit mask, bouncing, 64 KiB
# granule, two devices of one domain, non-coherent, visible on link.
for dev in ["sim-lazy0", "sim32", "untrusted0", "sim64k0", "sim0b", "nc0", "vis0"]:
    SEEDS["state_" + dev] = setup() + b"".join([
        dev_open(dev), mem_import(32),
        # phys 0x80 into a page: the IOVA keeps that offset (addr is known IOVA 0)
        iova_alloc(1, fx(0, 0x80), 5 * P),
        batch([op(LINK, 1, fx(0), fx(0, 0x80), 0, 5 * P, BIDI),
               op(SYNC, 1, fx(0), 0, 0, 5 * P)]),
        dma_read(1, fx(0), 3 * P), dma_write(1, fx(0, 0x1000), bytes(range(200))),
        batch([op(UNLINK, 1, fx(0), 0, P, P, BIDI),
               op(FREE, 1, fx(0)),
               op(DESTROY, 1, fx(0), 0, 0, 5 * P, BIDI)]),
        batch([op(MAP, 1, 0, fx(0, 2 * P), 0, 3 * P, FROM_DEV)]),
        dma_write(1, fx(1, 0x10), b"x" * 100),
        batch([op(UNMAP, 1, fx(1), 0, 0, 3 * P, FROM_DEV)]),
    ])

# Streaming maps, on the identity domain too; an unmap of the wrong size.
SEEDS["maps"] = setup() + b"".join([
    dev_open("identity0"), dev_open("sim0"), mem_import(8),
    batch([op(MAP, 1, 0, fx(0), 0, 2 * P), op(MAP, 2, 0, fx(0, P), 0, 2 * P, TO_DEV),
           op(MAP, 1, 0, fx(0, 0x10), 0, 0x20)]),
    dma_read(1, fx(0), 128), dma_read(2, fx(1, 0x800), 128),
    batch([op(UNMAP, 2, fx(1), 0, 0, P, TO_DEV), op(UNMAP, 2, fx(1), 0, 0, 2 * P, TO_DEV),
           op(UNMAP, 1, fx(0), 0, 0, 2 * P)], flags=1),
    iova_alloc(1, fx(0), P),
])

# On-demand paging: an explicit region, faults served by the daemon, prefetch,
# invalidation, a hole punched, counters, deregistration with a fault parked.
SEEDS["odp_explicit"] = setup() + b"".join([
    dev_open("sim0"), mem_import(32),
    odp_reg(1, 1, 4 * P, 16 * P),
    dma_read(1, fx(0, 0x123), 300, FIX | LOOP),
    dma_write(1, fx(0, 5 * P), b"w" * 64, FIX | LOOP),
    odp_range(ODP_ADVISE, 1, 8 * P, 4 * P, advice=1, flags=1),
    odp_range(ODP_ADVISE, 1, 12 * P, 2 * P, advice=2),
    odp_range(ODP_INVALIDATE, 1, 0, 16 * P, ctl=LOOP),
    mem_discard(1, 6 * P, 2 * P),
    dma_read(1, fx(0, 2 * P), 4 * P),
    ref(ODP_STATS, 1), ref(ODP_STATS, 0, 1), ref(ODP_STATS, 0),
    ref(ODP_DEREG, 1),
    dma_read(1, fx(0), 16),
    odp_reg(1, 1, 0, 32 * P, access=0x3),
    dma_write(1, fx(1), b"no", FIX | LOOP),
    ref(MEM_FREE, 1), dma_read(1, fx(1), 16, FIX | LOOP),
])

# An implicit region over every memory object, present and future.
SEEDS["odp_implicit"] = setup() + b"".join([
    dev_open("sim-lazy0"), mem_import(8),
    odp_reg(1, 0, 0, 0, flags=ODP_IMPLICIT),
    mem_import(4),
    dma_read(1, fx(0, 0x10), 64, FIX | LOOP),
    dma_write(1, fx(0, 0x200000 + 0x20), b"implicit", FIX | LOOP),
    ref(MEM_FREE, 1),
    dma_read(1, fx(0, 0x10), 64, FIX | LOOP),
    mem_discard(2, 0, P), ref(ODP_STATS, 1),
])

# Faults the client resolves itself: the event, the answer, a failed answer,
# an answer after the timeout, and an access left parked at teardown.
SEEDS["odp_user_faults"] = setup() + b"".join([
    dev_open("sim0"), mem_import(16),
    odp_reg(1, 1, 0, 16 * P, flags=ODP_USER_FAULTS),
    dma_read(1, fx(0, 0x40), 64),
    fault_done(0, 0, FIX | LOOP),
    dma_write(1, fx(0, 4 * P), b"u" * 32),
    fault_done(1, -14, FIX | LOOP),
    dma_read(1, fx(0, 9 * P), 64, FIX | LOOP),
    fault_done(2, 0),
    dma_read(1, fx(0, 12 * P), 64),
    odp_range(ODP_INVALIDATE, 1, 0, 16 * P),
    fault_done(3, 0, FIX | LOOP),
    dma_read(1, fx(0, 14 * P), 64),
])

# Isolation: B names A's IOVAs, phys and handles; its accesses must fault.
SEEDS["isolation"] = setup() + b"".join([
    dev_open("sim0"), mem_import(8),
    iova_alloc(1, fx(0), 4 * P),
    batch([op(LINK, 1, fx(0), fx(0), 0, 4 * P), op(SYNC, 1, fx(0), 0, 0, 4 * P)]),
    dev_open("sim0b", B),
    rec(DMA_READ, struct.pack("<IIQ", 1, 63, fx(0)), B | FIX),
    rec(BATCH, struct.pack("<II", 1, 0) + op(UNLINK, 1, fx(0), 0, 0, P) +
        op(LINK, 1, fx(0), fx(0), 0, P), B | FIX),
    rec(MEM_FREE, struct.pack("<II", 1, 0), B),
    rec(IOVA_ALLOC, struct.pack("<IIQQ", 1, 0, fx(0), P), B | FIX),
    rec(MEM_IMPORT, struct.pack("<QQ", 0, 3), B),
    rec(BATCH, struct.pack("<II", 0, 0) + op(MAP, 1, 0, fx(0), 0, P), B | FIX),
    dma_read(1, fx(0), 64),
])

# The administrator's queries, and a non-administrator's refusals.
SEEDS["admin"] = setup() + b"".join([
    dev_open("sim0"), mem_import(4), iova_alloc(1, fx(0), P),
    odp_reg(1, 1, 0, 4 * P),
    rec(STATUS), lst(LIST_DEVICES), lst(LIST_CLIENTS), lst(LIST_CLIENTS, start=1),
    lst(CLIENT_MAPS, 0, ctl=FIX), lst(CLIENT_MAPS, 1, ctl=FIX), lst(LIST_ODP),
    lst(LIST_ODP, 0, ctl=FIX), ref(ODP_STATS, 0, 1), ref(DEV_STATS, 1),
    rec(STATUS, ctl=B), rec(LIST_CLIENTS, bytes(16), B), ref(ODP_STATS, 0, 1, B),
])

# Every limit: memory objects, bytes, descriptors, states, maps, links, regions.
SEEDS["limits"] = setup() + b"".join(
    [dev_open("sim0")] +
    [mem_import(64) for _ in range(5)] +
    [mem_import(1, fd=FD_TWO), mem_import(1, fd=FD_UNSEALED), mem_import(1, fd=FD_NONE),
     mem_import(64, fd=FD_SEALED)] +
    [iova_alloc(1, fx(0, i * 8 * P), 8 * P) for i in range(9)] +
    [batch([op(LINK, 1, fx(i), fx(0, (i * 8 + j) * P), j * P, P)
            for i in range(8) for j in range(5)])] +
    [batch([op(MAP, 1, 0, fx(2, i * P), 0, P) for i in range(9)])] +
    [odp_reg(1, 2, 0, 16 * P) for _ in range(4)] +
    [dev_open("sim0") for _ in range(3)]
)

# A session torn down while holding everything, then a new one reusing it all.
SEEDS["reconnect"] = setup() + b"".join([
    dev_open("sim0"), mem_import(16), iova_alloc(1, fx(0), 8 * P),
    batch([op(LINK, 1, fx(0), fx(0), 0, 8 * P), op(SYNC, 1, fx(0), 0, 0, 8 * P),
           op(MAP, 1, 0, fx(0, 8 * P), 0, 2 * P)]),
    odp_reg(1, 1, 10 * P, 4 * P, flags=ODP_USER_FAULTS), dma_read(1, fx(2), 64),
    dev_open("sim0", RECONNECT), mem_import(4),
    dma_read(1, fx(0), 64), batch([op(UNLINK, 1, fx(0), 0, 0, P)]),
])

# Frames the session refuses, and ones that end the connection.
SEEDS["bad_frames"] = setup(hello_b=False) + b"".join([
    raw(frame(DEV_OPEN, bytes(32), version=1)),             # version not negotiated
    rec(0xF5 + 1, b"", 0),                                   # unknown type
    raw(frame(DEV_STATS, struct.pack("<II", 1, 7))),         # reserved field set
    raw(frame(BATCH, struct.pack("<II", 1, 0) + op(9, 1))),  # bad opcode
    raw(frame(HELLO, struct.pack("<HHIII", 1, 3, 65536, 256, 0))),  # HELLO again
    rec(DEV_OPEN, b"sim0" + bytes(28), B),                   # B before HELLO
    raw(frame(STATUS, b"", ident=5, length=100), B),        # length lies: closed
    raw(frame(STATUS, b"", magic=0x12345678)),               # bad magic: closed
    rec(STATUS),                                             # nothing after that
])

# Many device accesses parked at once: throttling, then the service.
SEEDS["throttle"] = setup() + b"".join(
    [dev_open("sim0"), mem_import(64), odp_reg(1, 1, 0, 64 * P)] +
    [dma_read(1, fx(0, i * 16 * P + 0x10), 32) for i in range(4)] +
    [dma_write(1, fx(0, i * 16 * P + 0x20), b"t" * 8) for i in range(4)] +
    [rec(STATUS, ctl=LOOP)]
)

# Protocol version 1 (no ODP) and 2 (no rkey): newer requests are unknown there.
SEEDS["version1"] = setup(version=1) + b"".join([
    dev_open("sim0"), mem_import(4), odp_reg(1, 1, 0, 4 * P), iova_rkey(1, fx(0)),
])
SEEDS["version2_rkey"] = setup(version=2) + b"".join([
    dev_open("sim0"), mem_import(4), iova_alloc(1, fx(0), P), iova_rkey(1, fx(0)),
])


# Version 4: the same lifecycle through a shared-memory ring (RING_SETUP on the
# socket with its three fds, MEM_IMPORT on the socket with its memfd, the rest
# on the ring); then refusals (an unsealed memfd, a pipe for a doorbell, no
# fds, a second setup), and a client that breaks its own ring.
RING_LIFECYCLE = [
    rec(RING_SETUP, bytes(16)),
    dev_open("sim0", RING), mem_import(16),
    iova_alloc(1, fx(0), 4 * P, FIX | RING),
    batch([op(LINK, 1, fx(0), fx(0), 0, 4 * P), op(SYNC, 1, fx(0), 0, 0, 4 * P)], ctl=FIX | RING),
    dma_write(1, fx(0, 0x100), b"0123456789abcdef", FIX | RING),
    dma_read(1, fx(0, 0xF0), 64, FIX | RING),
    odp_reg(1, 1, 0, 16 * P, ctl=RING), dma_read(1, fx(1, 5 * P), 32, FIX | RING),
    ref(DEV_STATS, 1, ctl=RING), lst(CLIENT_MAPS, 0, 0, FIX | RING),
    batch([op(DESTROY, 1, fx(0), 0, 0, 4 * P)], ctl=FIX | RING),
    ref(MEM_FREE, 1, ctl=RING),
]
SEEDS["rings"] = setup(version=4) + b"".join(RING_LIFECYCLE)
SEEDS["rings_refused"] = setup(version=4) + b"".join([
    rec(RING_SETUP, bytes(16), fd=FD_UNSEALED), rec(RING_SETUP, bytes(16), fd=FD_TWO),
    rec(RING_SETUP, bytes(16), fd=FD_NONE), rec(RING_SETUP, bytes(16), ctl=B),
    rec(RING_SETUP, bytes(16)), rec(RING_SETUP, bytes(16)), dev_open("sim0", RING),
    mem_import(4, RING),
])
SEEDS["rings_broken"] = setup(version=4) + b"".join(RING_LIFECYCLE[:4] + [
    raw(frame(DEV_STATS, struct.pack("<II", 1, 0), version=4, ident=9), RING),
    raw(b"\xab" * 40, RING),
    raw(b"\xff\xff" + struct.pack("<II", 1 << 20, 0), RING | B),
    dev_open("sim0", RING | B),
])


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus_session")
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(outdir, name + ".bin"), "wb") as f:
            f.write(data)
    print(f"gen_corpus_session: {len(SEEDS)} seeds in {outdir}")


if __name__ == "__main__":
    main()
