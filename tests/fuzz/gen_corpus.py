#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write fuzz_proto's seed corpus (tests/fuzz/corpus/*.bin).

    tests/fuzz/gen_corpus.py [outdir]      (default: the corpus/ next to this file)

Each session is a stream of valid frames, written whole (stream*.bin) and one
frame per file; a frame's id is its offset in its stream + 1, so every seed is
unique and a crash report names where in the stream a frame sits. The
version-1 seeds are reproduced byte for byte as they were first written by
hand; version 2 adds a session that negotiates 2 and uses every on-demand
paging request, and a PROTO_EVT_FAULT event (the client side's decoder);
version 3 a session that negotiates 3 and asks for an rkey (IOVA_RKEY);
version 4 a session that negotiates 4 and sets up rings (RING_SETUP), then
sends what would travel on them; version 5 a session that negotiates 5, and
a connection that opens with RESUME instead of HELLO and resends a request.

Layouts mirror proto/proto.h; the _Static_asserts there fix the sizes that
the asserts below check again.
"""
import os
import struct
import sys

MAGIC = 0x44564F49
HDR = struct.Struct("<IHHIIQ")  # magic, version, type, len, flags, id

(HELLO, DEV_OPEN, DEV_CLOSE, DEV_STATS, MEM_IMPORT, MEM_FREE, IOVA_ALLOC, BATCH, DMA_READ,
 DMA_WRITE, STATUS, LIST_DEVICES, LIST_CLIENTS, CLIENT_MAPS, ODP_REG, ODP_DEREG, ODP_ADVISE,
 ODP_INVALIDATE, MEM_DISCARD, ODP_STATS, FAULT_DONE, LIST_ODP, IOVA_RKEY, RING_SETUP,
 RESUME) = range(1, 26)
EVT_FAULT = 0x4001

ODP_ACCESS = 0x7
ODP_IMPLICIT, ODP_USER_FAULTS = 0x1, 0x2
ODP_STATS_DAEMON = 0x1
ADVISE_PREFETCH_WRITE = 1
ADVISE_FLAG_FLUSH = 0x1
EFAULT = 14


def hello(vmin, vmax):
    return struct.pack("<HHIII", vmin, vmax, 64 << 10, 256, 0)


def resume(vmin, vmax, session_id, token):
    return hello(vmin, vmax) + struct.pack("<Q16s", session_id, token)


def dev_open(name):
    return struct.pack("<32s", name)


def ref(handle, word=0):  # proto_dev_ref, proto_mem_ref, proto_odp_ref
    return struct.pack("<II", handle, word)


def mem_import(offset, size):
    return struct.pack("<QQ", offset, size)


def iova_alloc(dev, phys, size):
    return struct.pack("<IIQQ", dev, 0, phys, size)


def batch():
    ops = b""
    for i in range(7):  # LINK..UNMAP, the directions in turn, one attribute
        ops += struct.pack("<HBBIQQQQQ", i + 1, i % 3, 0, 1, 0xFFFFC000, 0x100000, 0x1000 * i,
                           0x1000, 0x20 if i == 6 else 0)
    return struct.pack("<II", 7, 1) + ops


def dma(dev, length, iova, data=b""):
    return struct.pack("<IIQ", dev, length, iova) + data


def lst(session_id=0, start=0):
    return struct.pack("<QII", session_id, start, 0)


def odp_reg(dev, mem, offset, length, access, flags):
    return struct.pack("<IIQQII", dev, mem, offset, length, access, flags)


def odp_range(odp, advice, flags, offset, length):
    return struct.pack("<IIIIQQ", odp, advice, flags, 0, offset, length)


def iova_rkey(dev, iova):
    return struct.pack("<IIQ", dev, 0, iova)


def ring_setup(sq_size, cq_size):
    return struct.pack("<IIII", sq_size, cq_size, 0, 0)


def mem_range(mem, offset, length):
    return struct.pack("<IIQQ", mem, 0, offset, length)


def fault_done(fault_id, status):
    return struct.pack("<QiI", fault_id, status, 0)


def evt_fault(fault_id, odp, access, offset, length, iova):
    return struct.pack("<QIIQQQ", fault_id, odp, access, offset, length, iova)


SIZES = [(hello(1, 1), 16), (dev_open(b""), 32), (ref(0), 8), (mem_import(0, 0), 16),
         (iova_alloc(0, 0, 0), 24), (dma(0, 0, 0), 16), (lst(), 16),
         (odp_reg(0, 0, 0, 0, 0, 0), 32), (odp_range(0, 0, 0, 0, 0), 32), (mem_range(0, 0, 0), 24),
         (fault_done(0, 0), 16), (evt_fault(0, 0, 0, 0, 0, 0), 40), (iova_rkey(0, 0), 16),
         (ring_setup(0, 0), 16), (resume(5, 5, 0, b""), 40)]
for body, size in SIZES:
    assert len(body) == size, (body, size)
assert len(batch()) == 8 + 7 * 48

# (seed name, type, body) in stream order. Version 1: what the first corpus held.
V1 = [
    ("hello", HELLO, hello(1, 1)),
    ("dev_open", DEV_OPEN, dev_open(b"rxe0")),
    ("dev_stats", DEV_STATS, ref(1)),
    ("mem_import", MEM_IMPORT, mem_import(0, 0x10000)),
    ("iova_alloc", IOVA_ALLOC, iova_alloc(1, 0x100000, 0x4000)),
    ("batch", BATCH, batch()),
    ("dma_read", DMA_READ, dma(1, 0x100, 0xFFFFF000)),
    ("dma_write", DMA_WRITE, dma(1, 16, 0xFFFFF000, b"0123456789abcdef")),
    ("status", STATUS, b""),
    ("list_devices", LIST_DEVICES, lst()),
    ("list_clients", LIST_CLIENTS, lst()),
    ("client_maps", CLIENT_MAPS, lst(1)),
    ("mem_free", MEM_FREE, ref(1)),
    ("dev_close", DEV_CLOSE, ref(1)),
]

# Version 2: a client offering 1..2 (the daemon picks 2), then an ODP session.
V2 = [
    ("hello_v2", HELLO, hello(1, 2)),
    (None, DEV_OPEN, dev_open(b"rxe0")),
    (None, MEM_IMPORT, mem_import(0, 0x10000)),
    ("odp_reg", ODP_REG, odp_reg(1, 1, 0, 0x10000, ODP_ACCESS, ODP_USER_FAULTS)),
    ("odp_reg_implicit", ODP_REG, odp_reg(1, 0, 0, 0, ODP_ACCESS, ODP_IMPLICIT)),
    ("odp_advise", ODP_ADVISE,
     odp_range(1, ADVISE_PREFETCH_WRITE, ADVISE_FLAG_FLUSH, 0x1000, 0x4000)),
    (None, DMA_READ, dma(1, 0x100, 0x1000)),
    ("fault_done", FAULT_DONE, fault_done(7, -EFAULT)),
    ("odp_invalidate", ODP_INVALIDATE, odp_range(1, 0, 0, 0, 0x2000)),
    ("mem_discard", MEM_DISCARD, mem_range(1, 0x2000, 0x2000)),
    ("odp_stats", ODP_STATS, ref(1)),
    ("odp_stats_daemon", ODP_STATS, ref(0, ODP_STATS_DAEMON)),
    ("list_odp", LIST_ODP, lst(0, 0)),
    ("odp_dereg", ODP_DEREG, ref(1)),
    (None, MEM_FREE, ref(1)),
]

# Version 3: a client offering 1..3, a synced link, and the rkey a remote peer needs.
V3 = [
    ("hello_v3", HELLO, hello(1, 3)),
    (None, DEV_OPEN, dev_open(b"rxe0")),
    (None, MEM_IMPORT, mem_import(0, 0x10000)),
    (None, IOVA_ALLOC, iova_alloc(1, 0x100000, 0x4000)),
    (None, BATCH, batch()),
    ("iova_rkey", IOVA_RKEY, iova_rkey(1, 0xFFFFC000)),
    (None, MEM_FREE, ref(1)),
]

# Version 4: a client offering 1..4 sets up rings of 256 KiB each (its fds go
# with the frame on the socket), then the requests it would put on them.
V4 = [
    ("hello_v4", HELLO, hello(1, 4)),
    ("ring_setup", RING_SETUP, ring_setup(256 << 10, 256 << 10)),
    (None, DEV_OPEN, dev_open(b"sim0")),
    (None, MEM_IMPORT, mem_import(0, 0x10000)),
    (None, IOVA_ALLOC, iova_alloc(1, 0x100000, 0x4000)),
    (None, BATCH, batch()),
    (None, DMA_READ, dma(1, 0x100, 0xFFFFF000)),
    (None, MEM_FREE, ref(1)),
]

# Version 5: a client offering 1..5 (the reply carries the session's token),
# then a new connection that reattaches session 1 with RESUME and resends
# the BATCH it had no reply to.
TOKEN = bytes(range(0xA0, 0xB0))
V5 = [
    ("hello_v5", HELLO, hello(1, 5)),
    (None, DEV_OPEN, dev_open(b"sim0")),
    (None, MEM_IMPORT, mem_import(0, 0x10000)),
    (None, IOVA_ALLOC, iova_alloc(1, 0x100000, 0x4000)),
    (None, BATCH, batch()),
    ("resume_again", RESUME, resume(5, 5, 1, TOKEN)),  # on the session: -EALREADY
]
V5_RESUME = [
    ("resume", RESUME, resume(5, 5, 1, TOKEN)),
    (None, BATCH, batch()),
    (None, MEM_FREE, ref(1)),
]


def stream(frames, version):
    """Frames of one session; HELLO says the highest version it offers."""
    out, seeds = b"", {}
    for name, typ, body in frames:
        ln = HDR.size + len(body)
        frame = HDR.pack(MAGIC, version, typ, ln, 0, len(out) + 1) + body
        if name:
            seeds[name] = frame
        out += frame
    return out, seeds


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    files = {}
    s1, seeds = stream(V1, 1)
    files.update(seeds, stream=s1)
    s2, seeds = stream(V2, 2)
    files.update(seeds, stream_v2=s2)
    s3, seeds = stream(V3, 3)
    files.update(seeds, stream_v3=s3)
    s4, seeds = stream(V4, 4)
    files.update(seeds, stream_v4=s4)
    s5, seeds = stream(V5, 5)
    files.update(seeds, stream_v5=s5)
    s5r, seeds = stream(V5_RESUME, 5)
    files.update(seeds, stream_v5_resume=s5r)
    # The daemon's unsolicited event: id 0, flags 0, a write fault in region 1.
    files["evt_fault"] = HDR.pack(MAGIC, 2, EVT_FAULT, HDR.size + 40, 0, 0) + evt_fault(
        7, 1, 2, 0x1000, 0x4000, 0x1234)
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(files.items()):
        with open(os.path.join(outdir, name + ".bin"), "wb") as f:
            f.write(data)
    print(f"gen_corpus: {len(files)} seeds in {outdir}")


if __name__ == "__main__":
    main()
