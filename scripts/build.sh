#!/usr/bin/env bash
# Configure and build one configuration: scripts/build.sh release|asan [extra cmake args]
#   release: RelWithDebInfo, warnings as errors     -> build/release
#   asan:    ASan + UBSan, warnings as errors        -> build/asan
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cfg=${1:-release}
shift || true
# shellcheck disable=SC2054 # the comma belongs to -fsanitize=address,undefined
case "$cfg" in
release) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOVAD_ENABLE_WERROR=ON) ;;
asan) args=(-DCMAKE_BUILD_TYPE=Debug -DIOVAD_ENABLE_WERROR=ON -DIOVAD_SANITIZE=address,undefined) ;;
*) echo "usage: $0 release|asan [cmake args]" >&2; exit 2 ;;
esac
cmake -S "$root" -B "$root/build/$cfg" "${args[@]}" "$@" >/dev/null
cmake --build "$root/build/$cfg" -j "$(nproc)"
