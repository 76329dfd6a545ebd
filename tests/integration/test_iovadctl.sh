#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_iovadctl.sh IOVAD IOVADCTL - iovadctl against the real daemon.
#
# Starts IOVAD on a temporary socket (epoll backend), runs every iovadctl
# command in both output formats, checks what they print against the
# daemon's default device set and a helper client that holds an IOVA state
# and a streaming mapping, then stops the daemon with SIGTERM and checks it
# exited 0. Needs python3 (JSON validation and the helper client).
# The sh -c snippets below expand their own positional parameters.
# shellcheck disable=SC2016
set -u

if [ $# -ne 2 ]; then
	echo "usage: $0 IOVAD IOVADCTL" >&2
	exit 2
fi
IOVAD=$1
CTL=$2
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
need_executables test_iovadctl "$IOVAD" "$CTL"

dir=$(mktemp -d /tmp/test_iovadctl.XXXXXX) || exit 1
sock=$dir/s
daemon_pid=
holder_pid=

cleanup() {
	[ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null
	[ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# shellcheck disable=SC2034 # read by not_ok in ../lib.sh
failure_logs=("$dir/out" "$dir/err")

# check NAME COMMAND...: COMMAND succeeds.
check() {
	local name=$1
	shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}

# run EXPECTED_RC ARGS...: iovadctl ARGS into $dir/out and $dir/err; true if rc matches.
run() {
	local want=$1 rc
	shift
	timeout 20 "$CTL" --socket "$sock" "$@" >"$dir/out" 2>"$dir/err"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "     (iovadctl $*: exit $rc, expected $want)" >>"$dir/err"
		return 1
	fi
	return 0
}

# json PYTHON_EXPR: $dir/out is valid JSON (json.tool) and EXPR holds for it as d.
json() {
	python3 -m json.tool "$dir/out" >/dev/null 2>>"$dir/err" || return 1
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval("(" + sys.argv[2].strip() + ")") else 1)' "$dir/out" "$1" 2>>"$dir/err"
}

# field ROW_KEY COLUMN: the COLUMN-th word of the row of $dir/out whose first word is ROW_KEY.
field() {
	awk -v k="$1" -v c="$2" '$1 == k { print $c; exit }' "$dir/out"
}

# ---- start the daemon ------------------------------------------------------------

"$IOVAD" --socket "$sock" --io=epoll 2>"$dir/iovad.log" &
daemon_pid=$!

ready=0
for _ in $(seq 100); do
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		break
	fi
	if [ -S "$sock" ] && python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])' "$sock" 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.1
done
if [ "$ready" -ne 1 ]; then
	echo "test_iovadctl: iovad did not start; its log:" >&2
	cat "$dir/iovad.log" >&2
	exit 1
fi

# ---- no daemon needed ------------------------------------------------------------

check "--help exits 0 and prints the usage" \
	sh -c '"$1" --help | grep -q "^Usage: iovadctl"' sh "$CTL"
check "--version exits 0 and names iovadctl" \
	sh -c '"$1" --version | grep -q "^iovadctl "' sh "$CTL"
if run 2 frobnicate; then
	check "unknown command exits 2 and says so" \
		grep -q "^iovadctl: unknown command 'frobnicate'$" "$dir/err"
else
	not_ok "unknown command exits 2"
fi
check "no command exits 2" run 2
check "unknown option exits 2" run 2 --frobnicate status
check "status with an extra argument exits 2" run 2 status extra
check "mappings without SESSION_ID exits 2" run 2 mappings
check "mappings with a non-numeric SESSION_ID exits 2" run 2 mappings abc

check "missing socket: exit 1, names the path and the errno" sh -c '
	"$1" --socket "$2/nonexistent" status >/dev/null 2>"$2/err"
	[ $? -eq 1 ] && grep -q "cannot connect to $2/nonexistent: No such file or directory" "$2/err"
' sh "$CTL" "$dir"
check "\$IOVAD_SOCKET is used without --socket" sh -c '
	IOVAD_SOCKET="$2" "$1" status | grep -q "^devices: *6$"' sh "$CTL" "$sock"
check "--socket wins over \$IOVAD_SOCKET" sh -c '
	IOVAD_SOCKET="$2/nonexistent" "$1" --socket "$3" status >/dev/null' sh "$CTL" "$dir" "$sock"

# ---- status ----------------------------------------------------------------------

if run 0 status; then
	check "status: 6 devices" grep -q "^devices: *6$" "$dir/out"
	check "status: io backend epoll" grep -q "^io backend: *epoll" "$dir/out"
	check "status: the daemon's pid" grep -q "^pid: *$daemon_pid$" "$dir/out"
	for k in uptime clients "sessions served" "frames in" "frames bad" teardowns \
		"leaked states" "leaked maps" "leaked mems" "client memory"; do
		check "status: shows $k" grep -q "^$k: " "$dir/out"
	done
else
	not_ok "status exits 0"
fi

if run 0 --json status; then
	check "status --json: valid, every key, 6 devices, epoll" json '
		set(d) >= {"pid", "uptime_ns", "io_backend", "io_backend_id", "clients", "devices",
			   "sessions_total", "frames_in", "frames_bad", "teardowns",
			   "leaked_states", "leaked_maps", "leaked_mems", "mem_bytes"}
		and d["devices"] == 6 and d["io_backend"] == "epoll" and d["io_backend_id"] == 1
		and d["pid"] == '"$daemon_pid"' and d["clients"] >= 1
		and all(type(v) is int for k, v in d.items() if k != "io_backend")'
else
	not_ok "status --json exits 0"
fi

# ---- devices ---------------------------------------------------------------------

devices="sim0 sim-lazy0 sim32 untrusted0 identity0 sim64k0"
if run 0 devices; then
	check "devices: a header and 6 rows" test "$(wc -l <"$dir/out")" -eq 7
	check "devices: header" grep -q "^NAME  *DOM  *TYPE  *GRANULE  *MASK  *FLAGS" "$dir/out"
	for d in $devices; do
		check "devices: lists $d" test -n "$(field "$d" 1)"
	done
	for d in sim0 sim-lazy0 sim32 untrusted0; do
		check "devices: $d is translating with a 4096 granule" \
			test "$(field "$d" 3) $(field "$d" 4)" = "translating 4096"
	done
	check "devices: sim64k0 has a 65536 granule" test "$(field sim64k0 4)" = 65536
	check "devices: identity0 is identity" test "$(field identity0 3)" = identity
	check "devices: sim32 has a 32-bit mask" test "$(field sim32 5)" = 32
	check "devices: sim0 has a 64-bit mask" test "$(field sim0 5)" = 64
	check "devices: untrusted0 is untrusted" test "$(field untrusted0 6)" = untrusted
	check "devices: sim-lazy0 is lazy" test "$(field sim-lazy0 6)" = lazy
	# The last column is right-aligned: aligned rows all have the header's length.
	check "devices: columns are aligned" \
		test "$(awk '{ print length($0) }' "$dir/out" | sort -u | wc -l)" -eq 1
else
	not_ok "devices exits 0"
fi

if run 0 devices --long; then
	check "devices --long: every counter" grep -q \
		"IOVA_ALLOCS.*IOVA_FREES.*LINKS.*UNLINKS.*SYNCS.*IOTLB_FLUSHES.*BOUNCED_BYTES.*IO_PAGE_FAULTS.*MAP_PHYS.*UNMAP_PHYS.*DMA_READS.*DMA_WRITES.*DMA_BYTES.*FREE_BUSY.*MAPPED_BYTES.*TABLE_BYTES" \
		"$dir/out"
	check "devices --long: 6 rows of 22 columns" \
		test "$(awk 'NR > 1 && NF == 22' "$dir/out" | wc -l)" -eq 6
else
	not_ok "devices --long exits 0"
fi

if run 0 --json devices; then
	check "devices --json: valid, the 6 devices in order" json '
		[e["name"] for e in d] == "'"$devices"'".split()'
	check "devices --json: every field and counter" json '
		all(set(e) >= {"name", "domain", "type", "granule", "granule_shift", "dma_mask",
			       "dma_mask_bits", "flags", "untrusted", "non_coherent", "lazy", "stats"}
		    and set(e["stats"]) == {"iova_allocs", "iova_frees", "links", "unlinks",
					    "syncs", "iotlb_flushes", "bounced_bytes",
					    "io_page_faults", "map_phys", "unmap_phys", "dma_reads",
					    "dma_writes", "dma_bytes", "free_busy", "mapped_bytes",
					    "table_bytes"}
		    and all(type(v) is int for v in e["stats"].values()) for e in d)'
	check "devices --json: granules, types, flags" json '
		{e["name"]: (e["type"], e["granule"]) for e in d} == {
			"sim0": ("translating", 4096), "sim-lazy0": ("translating", 4096),
			"sim32": ("translating", 4096), "untrusted0": ("translating", 4096),
			"identity0": ("identity", 0), "sim64k0": ("translating", 65536)}
		and [e["name"] for e in d if e["untrusted"]] == ["untrusted0"]
		and [e["name"] for e in d if e["lazy"]] == ["sim-lazy0"]
		and {e["name"]: e["dma_mask_bits"] for e in d}["sim32"] == 32
		and {e["name"]: e["dma_mask"] for e in d}["sim32"] == 0xffffffff'
else
	not_ok "devices --json exits 0"
fi

# ---- Prometheus ------------------------------------------------------------------

# A strict reader of the text exposition format (0.0.4): every line is a HELP,
# a TYPE or a sample (no blank lines, no other comments); each family has
# one HELP then one TYPE before its samples, and its samples are together;
# names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*,
# label values escape only \\, \" and \n; no series twice; values are
# integers (iovad's are); counters end in _total and gauges do not; the
# output ends with a newline. Then: the families named on the command line
# are there, and every family with a device label has the six devices.
cat >"$dir/prom.py" <<'EOF_PY'
import re, sys

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LNAME = r'[a-zA-Z_][a-zA-Z0-9_]*'
LVALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
HELP = re.compile(r'# HELP (' + NAME + r') ((?:[^\\\n]|\\[\\n])*)$')
TYPE = re.compile(r'# TYPE (' + NAME + r') (counter|gauge|histogram|summary|untyped)$')
SAMPLE = re.compile(r'(' + NAME + r')(\{(?:' + LNAME + '=' + LVALUE + r'(?:,' + LNAME + '='
                    + LVALUE + r')*,?)?\})? (-?[0-9]+)$')
PAIR = re.compile(r'(' + LNAME + ')=(' + LVALUE + ')')
DEVICES = sys.argv[2].split()
want = sys.argv[3:]

def die(n, msg, line=''):
    sys.exit('line %d: %s: %r' % (n, msg, line))

text = open(sys.argv[1]).read()
if not text.endswith('\n'):
    sys.exit('does not end with a newline')
helps, types, done, series, devs = {}, {}, set(), set(), {}
cur = None
for n, line in enumerate(text[:-1].split('\n'), 1):
    if line.startswith('#'):
        m = HELP.match(line) or TYPE.match(line)
        if not m:
            die(n, 'a comment that is neither HELP nor TYPE', line)
        name = m.group(1)
        if name in done:
            die(n, 'HELP or TYPE after the samples of ' + name, line)
        if cur and name != cur:
            done.add(cur)
        cur = name
        if line.startswith('# HELP'):
            if name in helps or name in types:
                die(n, 'HELP twice, or after TYPE, for ' + name, line)
            helps[name] = m.group(2)
        else:
            if name in types or name not in helps:
                die(n, 'TYPE twice, or before HELP, for ' + name, line)
            types[name] = m.group(2)
            if m.group(2) == 'counter' and not name.endswith('_total'):
                die(n, 'a counter without the _total suffix', line)
            if m.group(2) == 'gauge' and name.endswith('_total'):
                die(n, 'a gauge with the _total suffix', line)
            if m.group(2) not in ('counter', 'gauge'):
                die(n, 'iovad has only counters and gauges', line)
        continue
    m = SAMPLE.match(line)
    if not m:
        die(n, 'not a sample line (or a value that is not an integer)', line)
    name, labels = m.group(1), m.group(2) or '{}'
    if name != cur or name not in types or name in done:
        die(n, 'a sample without HELP and TYPE just before, or apart from its family', line)
    pairs = PAIR.findall(labels)
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        die(n, 'a label twice', line)
    key = (name, tuple(sorted(pairs)))
    if key in series:
        die(n, 'a series twice', line)
    series.add(key)
    lab = dict(pairs)
    if 'device' in lab:
        if not re.fullmatch(r'"[0-9]+"', lab.get('domain', '')):
            die(n, 'a device sample without an integer domain label', line)
        devs.setdefault(name, []).append(lab['device'].strip('"'))
for name in types:
    if not any(s[0] == name for s in series):
        sys.exit('family %s has no samples' % name)
for name in want:
    if name not in types:
        sys.exit('missing family ' + name)
for name, seen in devs.items():
    if seen != DEVICES:
        sys.exit('%s: devices %s, expected %s' % (name, seen, DEVICES))
if want and any(w.startswith('iovad_device_') for w in want) and not devs:
    sys.exit('no device samples')
EOF_PY

# prom FAMILY...: $dir/out passes prom.py and has these families.
prom() {
	python3 "$dir/prom.py" "$dir/out" "$devices" "$@" 2>>"$dir/err"
}

status_families="iovad_uptime_seconds iovad_pid iovad_io_backend_info iovad_clients
	iovad_devices iovad_sessions_total iovad_frames_in_total iovad_frames_bad_total
	iovad_teardowns_total iovad_leaked_states_total iovad_leaked_maps_total
	iovad_leaked_mems_total iovad_mem_bytes"
device_families="iovad_device_info iovad_device_granule_bytes iovad_device_dma_mask_bits
	iovad_device_iova_allocs_total iovad_device_iova_frees_total iovad_device_links_total
	iovad_device_unlinks_total iovad_device_syncs_total iovad_device_iotlb_flushes_total
	iovad_device_bounced_bytes_total iovad_device_io_page_faults_total
	iovad_device_map_phys_total iovad_device_unmap_phys_total iovad_device_dma_reads_total
	iovad_device_dma_writes_total iovad_device_dma_bytes_total iovad_device_free_busy_total
	iovad_device_mapped_bytes iovad_device_table_bytes"
odp_families="iovad_odp_page_faults_total iovad_odp_page_faults_handled_total
	iovad_odp_page_invalidations_total iovad_odp_page_invalidations_handled_total
	iovad_odp_page_prefetch_total iovad_odp_fault_errors_total iovad_odp_fault_retries_total
	iovad_odp_perm_upgrades_total iovad_odp_syncs_total iovad_odp_flushes_total
	iovad_odp_user_faults_total iovad_odp_user_fault_timeouts_total iovad_odp_mapped_bytes
	iovad_odp_faults_timed_total iovad_odp_fault_latency_p50_nanoseconds
	iovad_odp_fault_latency_p99_nanoseconds"

# The checker itself must refuse what the format forbids.
prom_refuses() {
	printf '%b' "$1" >"$dir/out"
	! python3 "$dir/prom.py" "$dir/out" "" 2>/dev/null
}
check "prom checker: refuses a sample without HELP and TYPE" prom_refuses 'a_total 1\n'
check "prom checker: refuses TYPE before HELP" \
	prom_refuses '# TYPE a_total counter\n# HELP a_total x\na_total 1\n'
check "prom checker: refuses a counter without _total" \
	prom_refuses '# HELP a x\n# TYPE a counter\na 1\n'
check "prom checker: refuses a bad name" prom_refuses '# HELP 1a x\n# TYPE 1a gauge\n1a 1\n'
check "prom checker: refuses a bad escape" \
	prom_refuses '# HELP a x\n# TYPE a gauge\na{l="\\t"} 1\n'
check "prom checker: refuses a non-integer" prom_refuses '# HELP a x\n# TYPE a gauge\na 1.5\n'
check "prom checker: refuses a split family" \
	prom_refuses '# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na{x="1"} 1\n'
check "prom checker: accepts escapes" sh -c '
	printf "%s\n" "# HELP a x \\\\ y \\n z" "# TYPE a gauge" "a{l=\"q\\\"b\\\\s\\nn\"} 1" >"$2/out"
	python3 "$1" "$2/out" ""' sh "$dir/prom.py" "$dir"

check "--help mentions --prometheus and metrics" sh -c '
	"$1" --help >"$2/help" && grep -q -- "--prometheus" "$2/help" &&
	grep -q "^  metrics " "$2/help" && grep -q "^  odp " "$2/help"' sh "$CTL" "$dir"

if run 0 --prometheus status; then
	# shellcheck disable=SC2086
	check "status --prometheus: strict format, every status family" prom $status_families
	check "status --prometheus: 6 devices" grep -q "^iovad_devices 6$" "$dir/out"
	check "status --prometheus: io backend epoll" \
		grep -q '^iovad_io_backend_info{backend="epoll"} 1$' "$dir/out"
	check "status --prometheus: the daemon's pid" grep -q "^iovad_pid $daemon_pid$" "$dir/out"
	check "status --prometheus: no device samples" sh -c '! grep -q "^iovad_device_" "$1"' \
		sh "$dir/out"
else
	not_ok "status --prometheus exits 0"
fi

if run 0 -p devices; then
	# shellcheck disable=SC2086
	check "devices -p: strict format, every device family" prom $device_families
	for d in $devices; do
		check "devices -p: $d labelled" grep -q "^iovad_device_links_total{device=\"$d\",domain=\"[0-9]*\"} [0-9]*$" "$dir/out"
	done
	check "devices -p: sim64k0 has a 65536 granule" \
		grep -q '^iovad_device_granule_bytes{device="sim64k0",domain="[0-9]*"} 65536$' "$dir/out"
	check "devices -p: sim32 has a 32-bit mask" \
		grep -q '^iovad_device_dma_mask_bits{device="sim32",domain="[0-9]*"} 32$' "$dir/out"
	check "devices -p: identity0 is identity" \
		grep -q '^iovad_device_info{device="identity0",domain="[0-9]*",type="identity",' "$dir/out"
	check "devices -p: 16 counters and gauges of struct proto_dev_stats, 6 samples each" \
		test "$(grep -c '^iovad_device_[a-z_]*{device=' "$dir/out")" -eq $((19 * 6))
	check "devices -p: no status samples" sh -c '! grep -q "^iovad_clients" "$1"' sh "$dir/out"
else
	not_ok "devices -p exits 0"
fi

if run 0 --prometheus devices --long; then
	# shellcheck disable=SC2086
	check "devices --prometheus --long: the same strict output" prom $device_families
else
	not_ok "devices --prometheus --long exits 0"
fi

if run 0 metrics; then
	# shellcheck disable=SC2086
	check "metrics: strict format, status, device and ODP families" \
		prom $status_families $device_families $odp_families
	check "metrics: every counter ends in _total, every family typed" sh -c '
		awk "\$1 == \"#\" && \$2 == \"TYPE\" { if ((\$4 == \"counter\") != (\$3 ~ /_total\$/)) bad = 1; n++ }
		     END { exit bad || n != 48 }" "$1"' sh "$dir/out"
	check "metrics: values are integers" sh -c '
		grep -v "^#" "$1" | awk "{ if (\$NF !~ /^[0-9]+\$/) bad = 1 } END { exit bad }"' \
		sh "$dir/out"
else
	not_ok "metrics exits 0"
fi
check "--prometheus metrics: the same families" sh -c '
	"$1" --socket "$2" --prometheus metrics >"$3/out" &&
	python3 "$3/prom.py" "$3/out" "$4" iovad_clients iovad_device_links_total' \
	sh "$CTL" "$sock" "$dir" "$devices"

for args in "--json --prometheus status" "--prometheus --json devices" "-j -p metrics" \
	"--json metrics" "--prometheus clients" "--prometheus mappings 1" "metrics extra" \
	"odp extra"; do
	# shellcheck disable=SC2086
	if run 2 $args; then
		check "$args: usage error, nothing on stdout" test ! -s "$dir/out"
	else
		not_ok "$args exits 2"
	fi
done
if run 2 --json --prometheus status; then
	check "--json --prometheus: says why" \
		grep -q "^iovadctl: --json and --prometheus exclude each other$" "$dir/err"
else
	not_ok "--json --prometheus status exits 2"
fi
check "metrics with no daemon: exit 1, nothing on stdout" sh -c '
	"$1" --socket "$2/nonexistent" metrics >"$2/out" 2>/dev/null
	[ $? -eq 1 ] && [ ! -s "$2/out" ]' sh "$CTL" "$dir"

# ---- odp -------------------------------------------------------------------------

odp_keys='{"page_faults", "page_faults_handled", "page_invalidations",
	   "page_invalidations_handled", "page_prefetch", "fault_errors", "fault_retries",
	   "perm_upgrades", "syncs", "flushes", "user_faults", "user_fault_timeouts",
	   "mapped_bytes", "fault_count", "fault_p50_ns", "fault_p99_ns"}'
if run 0 odp; then
	for k in "page faults" "page faults handled" "page invalidations" "page prefetch" \
		"fault errors" "user faults" "user fault timeouts" "fault latency"; do
		check "odp: shows $k" grep -q "^$k: " "$dir/out"
	done
	check "odp: the region table's header" grep -q \
		"^SESSION  *ODP  *DEVICE  *FLAGS  *ACCESS  *IOVA  *SIZE  *MAPPED  *FAULTS" "$dir/out"
else
	not_ok "odp exits 0"
fi
if run 0 --json odp; then
	check "odp --json: valid, every total, a list of regions" json '
		set(d) == {"totals", "regions"} and set(d["totals"]) == '"$odp_keys"'
		and all(type(v) is int for v in d["totals"].values())
		and type(d["regions"]) is list'
else
	not_ok "odp --json exits 0"
fi
if run 0 --prometheus odp; then
	# shellcheck disable=SC2086
	check "odp --prometheus: strict format, every ODP family" prom $odp_families
else
	not_ok "odp --prometheus exits 0"
fi

# ---- clients ---------------------------------------------------------------------

if run 0 clients; then
	check "clients: header" grep -q \
		"^ *SESSION  *PID  *UID  *GID  *MEMS  *MEM_BYTES  *STATES  *MAPS  *LINKED  *REQUESTS  *PATH$" \
		"$dir/out"
	check "clients: its own session, marked" grep -q "^ *[0-9][0-9]*\* " "$dir/out"
	# iovadctl speaks the protocol on the socket itself: no rings for its session.
	check "clients: its own session on the socket" grep -q "^ *[0-9][0-9]*\* .* socket$" "$dir/out"
else
	not_ok "clients exits 0"
fi
if run 0 --json clients; then
	check "clients --json: valid, its own session with every key" json '
		len([e for e in d if e["self"]]) == 1
		and all(set(e) >= {"session_id", "pid", "uid", "gid", "mems", "mem_bytes", "states",
				   "maps", "linked_bytes", "requests", "rings"} for e in d)
		and all(e["rings"] is False for e in d if e["self"])'
else
	not_ok "clients --json exits 0"
fi

# ---- mappings, with a client that holds an IOVA state and a streaming mapping ----

cat >"$dir/holder.py" <<'EOF'
# holder.py SOCKET: HELLO, open sim0, import 64 KiB of memory, allocate 16 KiB
# of IOVA and link 8 KiB of it, map 4 KiB; print READY SESSION IOVA DMA, then
# hold everything until killed.
import fcntl, os, socket, struct, sys, time

HDR = struct.Struct('<IHHIIQ')
OP = struct.Struct('<HBBIQQQQQ')
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
nid = 0


def recvn(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit('holder: iovad closed the connection')
        b += c
    return b


def call(typ, body, fds=None):
    global nid
    nid += 1
    frame = HDR.pack(0x44564f49, 1, typ, HDR.size + len(body), 0, nid) + body
    if fds:
        socket.send_fds(s, [frame], fds)
    else:
        s.sendall(frame)
    _, _, t, ln, _, rid = HDR.unpack(recvn(HDR.size))
    rb = recvn(ln - HDR.size)
    st = struct.unpack_from('<i', rb)[0]
    if t != (typ | 0x8000) or rid != nid or st != 0:
        sys.exit('holder: request %d failed: type %#x status %d' % (typ, t, st))
    return rb


sid = struct.unpack_from('<Q', call(1, struct.pack('<HHIII', 1, 1, 65536, 16, 0)), 24)[0]
dev = struct.unpack_from('<I', call(2, b'sim0'.ljust(32, b'\0')), 8)[0]
fd = os.memfd_create('holder', os.MFD_ALLOW_SEALING)
os.ftruncate(fd, 65536)
fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)  # iovad refuses shrinkable memory
phys = struct.unpack_from('<Q', call(5, struct.pack('<QQ', 0, 65536), [fd]), 16)[0]
iova = struct.unpack_from('<Q', call(7, struct.pack('<IIQQ', dev, 0, phys, 16384)), 8)[0]
ops = (OP.pack(1, 0, 0, dev, iova, phys, 0, 8192, 0) +
       OP.pack(6, 1, 0, dev, 0, phys + 32768, 0, 4096, 0))
rb = call(8, struct.pack('<II', 2, 0) + ops)
r1 = struct.unpack_from('<i', rb, 16)[0]
r2, _, dma = struct.unpack_from('<iIQ', rb, 32)
if r1 or r2:
    sys.exit('holder: batch ops failed: %d %d' % (r1, r2))
print('READY %d %#x %#x' % (sid, iova, dma), flush=True)
time.sleep(600)
EOF

python3 "$dir/holder.py" "$sock" >"$dir/holder.out" 2>"$dir/holder.err" &
holder_pid=$!
for _ in $(seq 100); do
	grep -q '^READY' "$dir/holder.out" 2>/dev/null && break
	kill -0 "$holder_pid" 2>/dev/null || break
	sleep 0.1
done
if read -r _ sid iova dma <"$dir/holder.out" 2>/dev/null && [ -n "${dma:-}" ]; then
	ok "helper client holds a state and a mapping (session $sid)"
	if run 0 clients; then
		check "clients: the helper with 1 mem, 65536 bytes, 1 state, 1 map, 8192 linked" \
			test "$(field "$sid" 5) $(field "$sid" 6) $(field "$sid" 7) $(field "$sid" 8) $(field "$sid" 9)" \
			= "1 65536 1 1 8192"
	else
		not_ok "clients exits 0 (with the helper)"
	fi
	if run 0 mappings "$sid"; then
		check "mappings: header" grep -q "^KIND  *DEVICE  *IOVA  *SIZE  *LINKED$" "$dir/out"
		check "mappings: the IOVA state on sim0" \
			grep -q "^iova  *sim0  *$iova  *16384  *8192$" "$dir/out"
		check "mappings: the streaming mapping on sim0" \
			grep -q "^map  *sim0  *$dma  *4096  *4096$" "$dir/out"
	else
		not_ok "mappings $sid exits 0"
	fi
	if run 0 --json mappings "$sid"; then
		check "mappings --json: valid, both entries" json '
			sorted((e["kind"], e["device"], e["device_index"], e["iova"], e["size"],
				e["linked_bytes"]) for e in d) ==
			[("iova", "sim0", 0, '"$iova"', 16384, 8192),
			 ("map", "sim0", 0, '"$dma"', 4096, 4096)]'
	else
		not_ok "mappings --json $sid exits 0"
	fi
	check "status: 64 KiB of client memory" sh -c '
		"$1" --socket "$2" status | grep -q "^client memory: *65536 bytes$"' sh "$CTL" "$sock"
	kill "$holder_pid" 2>/dev/null
	wait "$holder_pid" 2>/dev/null
	holder_pid=
	# The daemon tears the session down once it sees the hang-up: give it a moment.
	for _ in $(seq 50); do
		run 0 --json status && json 'd["leaked_states"] >= 1' && break
		sleep 0.1
	done
	if run 0 --json status; then
		check "status --json: the helper's teardown counted" json '
			d["teardowns"] == 1 and d["leaked_states"] == 1 and d["leaked_maps"] == 1
			and d["leaked_mems"] == 1 and d["mem_bytes"] == 0'
	else
		not_ok "status --json exits 0 (after the helper)"
	fi
	if run 1 mappings "$sid"; then
		check "mappings of a session that ended: a message" \
			grep -q "mappings: No such process (no session $sid)" "$dir/err"
	else
		not_ok "mappings of a session that ended exits 1"
	fi
else
	not_ok "helper client holds a state and a mapping"
	sed 's/^/     | /' "$dir/holder.err"
fi

if run 1 mappings 999999; then
	check "mappings of a non-existent session: a message" \
		grep -q "^iovadctl: mappings: No such process (no session 999999)$" "$dir/err"
	check "mappings of a non-existent session: nothing on stdout" test ! -s "$dir/out"
else
	not_ok "mappings of a non-existent session exits 1"
fi

# ---- not an admin ----------------------------------------------------------------

# The socket's group (here root's) may connect, but only uid 0 or the
# daemon's uid may ask admin queries.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	check "non-admin: status exits 1 with EPERM and why" sh -c '
		chmod 755 "$2"
		setpriv --reuid=65534 --regid="$(stat -c %g "$3")" --clear-groups \
			"$1" --socket "$3" status >/dev/null 2>"$2/err"
		[ $? -eq 1 ] && grep -q "^iovadctl: status: Operation not permitted (admin queries need uid 0 or the daemon.s uid)$" "$2/err"
	' sh "$CTL" "$dir" "$sock"
else
	echo "skip non-admin check (needs root and setpriv)"
fi

# ---- stop the daemon -------------------------------------------------------------

kill -TERM "$daemon_pid"
stopped=0
for _ in $(seq 100); do
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		stopped=1
		break
	fi
	sleep 0.1
done
if [ "$stopped" -eq 1 ]; then
	wait "$daemon_pid"
	rc=$?
	daemon_pid=
	if [ "$rc" -eq 0 ]; then ok "iovad exits 0 on SIGTERM"; else not_ok "iovad exits 0 on SIGTERM (exit $rc)"; fi
else
	not_ok "iovad exits within 10 s of SIGTERM"
fi

summary iovadctl
