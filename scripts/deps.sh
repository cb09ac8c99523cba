#!/usr/bin/env bash
# Install what vfiolab needs on Debian 12, from the machine's own apt sources.
# Installs only when something is missing, so repeated runs are quick.
set -euo pipefail

packages=(
    # build
    g++ binutils make cmake pkgconf libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
    # builds of the same sources from other checkouts and runs (scripts/build.sh)
    ccache
    # lab kernel
    linux-source-6.12 bc bison flex libelf-dev libssl-dev cpio rsync xz-utils kmod
    # lab machine
    qemu-system-x86 busybox-static
    # the kernel's own VFIO selftests, linked statically (lab/run --kernel-selftests)
    uuid-dev
    # the fuzz targets (scripts/fuzz): clang 19, the first whose C++20 concepts
    # libstdc++ 12's std::expected accepts, and its libFuzzer and sanitizers
    clang-19 libclang-rt-19-dev
    # the Debian package (scripts/package-deb) and the man pages' checks
    dpkg-dev debhelper man-db groff-base
)

if ! command -v dpkg-query >/dev/null; then
    echo "deps: not a Debian system; install by hand: ${packages[*]}" >&2
    exit 0
fi
missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    sudo=sudo
    command -v sudo >/dev/null || { echo "deps: need root to install: ${missing[*]}" >&2; exit 1; }
else
    sudo=""
fi
echo "deps: installing ${missing[*]}" >&2
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
