#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write the AFL++ seeds for the daemon's socket (tests/fuzz/afl/seeds/*.bin).

    tests/fuzz/afl/gen_seeds.py [outdir]     (default: seeds/ next to this file)

Each seed is what one client writes into the socket: a stream of frames,
taken by iovad-stdin from its standard input (daemon/fuzz_stdin.c, which
passes a memfd with every MEM_IMPORT frame). scripts/afl.sh starts from
these and from tests/fuzz/corpus/ (fuzz_proto's seeds, whose sessions name
rxe0, a device the default configuration does not have). These sessions use
the default devices, and the addresses a freshly started daemon hands out
(its allocator is deterministic): the first memory object at phys 1 GiB,
the first IOVA of a PCI device's domain just below 4 GiB.
"""
import os
import struct
import sys

MAGIC = 0x44564F49
HDR = struct.Struct("<IHHIIQ")
(HELLO, DEV_OPEN, DEV_CLOSE, DEV_STATS, MEM_IMPORT, MEM_FREE, IOVA_ALLOC, BATCH, DMA_READ,
 DMA_WRITE, STATUS, LIST_DEVICES, LIST_CLIENTS, CLIENT_MAPS, ODP_REG, ODP_DEREG, ODP_ADVISE,
 ODP_INVALIDATE, MEM_DISCARD, ODP_STATS, FAULT_DONE, LIST_ODP, IOVA_RKEY) = range(1, 24)
LINK, SYNC, UNLINK, DESTROY, FREE, MAP, UNMAP = range(1, 8)
BIDI, TO_DEV, FROM_DEV = 0, 1, 2
P = 4096
PHYS0 = 0x40000000      # the first memory object
TOP = 0x100000000       # PCI devices allocate below 4 GiB first, top down


class Stream:
    def __init__(self, version=3):
        self.out = b""
        self.version = version
        self.id = 0
        self.frame(HELLO, struct.pack("<HHIII", 1, version, 65536, 256, 0))

    def frame(self, typ, body=b""):
        self.id += 1
        self.out += HDR.pack(MAGIC, self.version, typ, HDR.size + len(body), 0, self.id) + body
        return self

    def dev_open(self, name):
        return self.frame(DEV_OPEN, name.encode().ljust(32, b"\0"))

    def mem_import(self, size, offset=0):
        return self.frame(MEM_IMPORT, struct.pack("<QQ", offset, size))

    def iova_alloc(self, dev, phys, size):
        return self.frame(IOVA_ALLOC, struct.pack("<IIQQ", dev, 0, phys, size))

    def batch(self, ops, flags=0):
        return self.frame(BATCH, struct.pack("<II", len(ops), flags) + b"".join(ops))

    def dma_read(self, dev, iova, length):
        return self.frame(DMA_READ, struct.pack("<IIQ", dev, length, iova))

    def dma_write(self, dev, iova, data):
        return self.frame(DMA_WRITE, struct.pack("<IIQ", dev, len(data), iova) + data)

    def ref(self, typ, handle, word=0):
        return self.frame(typ, struct.pack("<II", handle, word))

    def odp_reg(self, dev, mem, offset, length, flags=0, access=7):
        return self.frame(ODP_REG, struct.pack("<IIQQII", dev, mem, offset, length, access, flags))

    def odp_range(self, typ, odp, offset, length, advice=0, flags=0):
        return self.frame(typ, struct.pack("<IIIIQQ", odp, advice, flags, 0, offset, length))

    def lst(self, typ, session_id=0, start=0):
        return self.frame(typ, struct.pack("<QII", session_id, start, 0))


def op(opcode, dev, iova=0, phys=0, offset=0, size=0, d=BIDI, attrs=0):
    return struct.pack("<HBBIQQQQQ", opcode, d, 0, dev, iova, phys, offset, size, attrs)


SEEDS = {}

# The IOVA-based DMA API, end to end, on the strict default device.
iova = TOP - 4 * P
SEEDS["sim0_state"] = (
    Stream().dev_open("sim0").mem_import(16 * P).iova_alloc(1, PHYS0, 4 * P)
    .batch([op(LINK, 1, iova, PHYS0, 0, 2 * P), op(LINK, 1, iova, PHYS0 + 2 * P, 2 * P, 2 * P),
            op(SYNC, 1, iova, 0, 0, 4 * P)])
    .dma_write(1, iova + 0x100, b"0123456789abcdef").dma_read(1, iova + 0xF0, 64)
    .batch([op(UNLINK, 1, iova, 0, 2 * P, 2 * P)]).dma_read(1, iova + 3 * P, 16)
    .batch([op(DESTROY, 1, iova, 0, 0, 2 * P)])
    .batch([op(MAP, 1, 0, PHYS0 + 8 * P, 0, 2 * P, TO_DEV)])
    .dma_read(1, TOP - 2 * P, 32)
    .batch([op(UNMAP, 1, TOP - 2 * P, 0, 0, 2 * P, TO_DEV)])
    .ref(MEM_FREE, 1).ref(DEV_CLOSE, 1).out)

# The same shape on the other kinds of domain (lazy, bouncing, 64 KiB, 32-bit).
# 5 pages from 0x80 into one: 8 pages of IOVA on a 4 KiB granule, one 64 KiB granule.
for dev, span in [("sim-lazy0", 8 * P), ("untrusted0", 8 * P), ("sim64k0", 16 * P),
                  ("sim32", 8 * P)]:
    base = TOP - span
    SEEDS[dev + "_state"] = (
        Stream().dev_open(dev).mem_import(32 * P).iova_alloc(1, PHYS0 + 0x80, 5 * P)
        .batch([op(LINK, 1, base + 0x80, PHYS0 + 0x80, 0, 5 * P),
                op(SYNC, 1, base + 0x80, 0, 0, 5 * P)])
        .dma_read(1, base + 0x80, 2 * P).dma_write(1, base + 0x1000, bytes(range(200)))
        .batch([op(UNLINK, 1, base + 0x80, 0, P, P), op(FREE, 1, base + 0x80),
                op(DESTROY, 1, base + 0x80, 0, 0, 5 * P)])
        .ref(MEM_FREE, 1).out)

# On-demand paging: faults served by the daemon, prefetch, invalidate, discard.
# The whole stream arrives at once and the service runs after it, so every
# access here is served after the invalidation (and the discard).
region = TOP - 16 * P
SEEDS["sim0_odp"] = (
    Stream().dev_open("sim0").mem_import(32 * P).odp_reg(1, 1, 4 * P, 16 * P)
    .dma_read(1, region + 0x123, 300).dma_write(1, region + 5 * P, b"w" * 64)
    .odp_range(ODP_ADVISE, 1, 8 * P, 4 * P, advice=1, flags=1)
    .odp_range(ODP_INVALIDATE, 1, 0, 16 * P)
    .frame(MEM_DISCARD, struct.pack("<IIQQ", 1, 0, 6 * P, 2 * P))
    .dma_read(1, region + 2 * P, 4 * P).ref(ODP_STATS, 1).ref(ODP_STATS, 0, 1).out)
# ...and deregistered before the service ran: the parked accesses fail. Then an
# implicit region over all of the client's memory.
SEEDS["sim0_odp_dereg"] = (
    Stream().dev_open("sim0").mem_import(32 * P).odp_reg(1, 1, 4 * P, 16 * P)
    .dma_read(1, region + 0x123, 300).ref(ODP_DEREG, 1)
    .odp_reg(1, 0, 0, 0, flags=1).dma_read(1, TOP - (1 << 30) + 0x10, 64)
    .ref(MEM_FREE, 1).out)

# Faults handed to the client (ids count from 1 in a fresh daemon): answered, failed, late.
SEEDS["sim0_user_faults"] = (
    Stream().dev_open("sim0").mem_import(16 * P).odp_reg(1, 1, 0, 16 * P, flags=2)
    .dma_read(1, region + 0x40, 64)
    .frame(FAULT_DONE, struct.pack("<QiI", 1, 0, 0))
    .dma_write(1, region + 8 * P, b"u" * 32)
    .frame(FAULT_DONE, struct.pack("<QiI", 2, -14, 0))
    .dma_read(1, region + 12 * P, 64).out)

# The administrator's queries, and a streaming map on the identity domain.
SEEDS["admin_identity"] = (
    Stream().dev_open("identity0").mem_import(4 * P)
    .batch([op(MAP, 1, 0, PHYS0, 0, 2 * P)]).dma_read(1, PHYS0, 64)
    .frame(STATUS).lst(LIST_DEVICES).lst(LIST_CLIENTS).lst(CLIENT_MAPS, 1).lst(LIST_ODP)
    .ref(DEV_STATS, 1).out)

# Version 1 and 2 sessions: what they do not have is unknown to them.
SEEDS["v1_odp_refused"] = (
    Stream(version=1).dev_open("sim0").mem_import(4 * P).odp_reg(1, 1, 0, 4 * P).out)
SEEDS["v2_rkey_refused"] = (
    Stream(version=2).dev_open("sim0").frame(IOVA_RKEY, struct.pack("<IIQ", 1, 0, TOP - P)).out)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "seeds")
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(outdir, name + ".bin"), "wb") as f:
            f.write(data)
    print(f"gen_seeds: {len(SEEDS)} seeds in {outdir}")


if __name__ == "__main__":
    main()
