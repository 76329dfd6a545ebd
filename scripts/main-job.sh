#!/usr/bin/env bash
# The README's main-job command: install dependencies, build, then run the
# IOVA API lifecycle demo on the simulated domain and the domain benchmark.
# (The daemon and a socket client take over this job in the daemon issue.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/deps.sh"
"$root/scripts/build.sh" release
echo "== examples/iova-lifecycle"
"$root/build/release/examples/iova-lifecycle"
echo "== bench/domain"
"$root/build/release/bench/domain/bench-domain" "$@"
