#!/usr/bin/env bash
# Configure, build and stage vfiolab against a kernel's uAPI headers.
#
#   scripts/build.sh [--build-dir DIR] [--uapi INCLUDE_DIR] [--target T]... [CMAKE_ARG...]
#
# --target builds only T (and what it needs), and stages nothing: how
# scripts/fuzz builds its targets with clang. Without --uapi, the headers of Debian's linux-source-6.12 are installed
# into the lab cache (lab/kernel.sh --headers-only) and used. Programs for the
# lab (the install component "guest") are staged in BUILD_DIR/stage. Default
# BUILD_DIR: build/main.
#
# Compiles go through ccache (from scripts/deps.sh) where it is installed,
# with its cache in the lab's (VFIOLAB_CACHE, ~/.cache/vfiolab/ccache) and
# paths inside the checkout hashed relative to it, so that another checkout
# of the same sources (a clean clone in CI, scripts/check-paths' copies)
# compiles only what differs. VFIOLAB_CCACHE=0 compiles without it.
# VFIOLAB_JOBS: parallel compiles (default: one more than the processors).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/lab/common.sh"
build_dir="$top/build/main"
uapi=""
targets=()
cmake_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
        --uapi) uapi=$(realpath "$2"); shift 2 ;;
        --target) targets+=(--target "$2"); shift 2 ;;
        *) cmake_args+=("$1"); shift ;;
    esac
done
if [ -z "$uapi" ]; then
    uapi=$("$top/lab/kernel.sh" --headers-only --quiet)/usr/include
fi
[ -f "$uapi/linux/vfio.h" ] || { echo "build: '$uapi' holds no linux/vfio.h" >&2; exit 1; }

launcher=()
if [ "${VFIOLAB_CCACHE:-1}" != 0 ] && command -v ccache >/dev/null; then
    # Also in the launcher itself, so a later `cmake --build` of this folder
    # uses the same cache. NOHASHDIR: the build folder (in the debug info's
    # compilation directory) is not part of the hash, so copies share hits.
    launcher="env;CCACHE_DIR=$LAB_CACHE/ccache;CCACHE_BASEDIR=$top;CCACHE_NOHASHDIR=1;ccache"
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher" -DCMAKE_C_COMPILER_LAUNCHER="$launcher")
else
    launcher=(-UCMAKE_CXX_COMPILER_LAUNCHER -UCMAKE_C_COMPILER_LAUNCHER)
fi
werror=OFF
[ "${CI:-}" != true ] || werror=ON
cmake -S "$top" -B "$build_dir" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" \
    -DVFIOLAB_UAPI_INCLUDE="$uapi" -DVFIOLAB_WERROR="$werror" "${launcher[@]}" \
    ${cmake_args[@]+"${cmake_args[@]}"} >/dev/null
cmake --build "$build_dir" -j"${VFIOLAB_JOBS:-$(( $(nproc) + 1 ))}" ${targets[@]+"${targets[@]}"}
[ ${#targets[@]} -eq 0 ] || exit 0
rm -rf "$build_dir/stage"
cmake --install "$build_dir" --prefix "$build_dir/stage" --component guest >/dev/null
