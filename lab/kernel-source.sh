#!/usr/bin/env bash
# Fetch a Debian kernel source package that the machine's apt sources do not
# carry, unpack it once into the cache, and print the tree's directory (for
# lab/kernel.sh --source or lab/run --kernel-source).
#
#   lab/kernel-source.sh [--suite SUITE] newest|PACKAGE
#
# newest      the linux-source-X.Y with the highest X.Y in the suites
# PACKAGE     that package, e.g. linux-source-7.2
# --suite     Debian suite to take it from (repeatable; default: sid, then
#             experimental, where release candidates such as 7.3-rc7 are)
#
# With several suites, newest is the highest X.Y in any of them (the first
# suite wins a tie), and PACKAGE comes from the first suite that has it: a
# kernel in both sid and experimental is sid's.
#
# The suite's package lists live in a private apt directory under the cache
# (lab/common.sh: lab_apt_prepare); the system's apt configuration and lists
# are not touched. The .deb is kept in $LAB_CACHE/debs and unpacked to
# $LAB_CACHE/src/PACKAGE-VERSION. A later call asks the mirror nothing while
# the lists are younger than VFIOLAB_APT_MAX_AGE seconds (default a day);
# after that it refreshes the lists (a few seconds) and downloads again only
# if the suite has a new version.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab/common.sh
. "$here/common.sh"

suites=()
what=""
while [ $# -gt 0 ]; do
    case "$1" in
        --suite)
            [ $# -ge 2 ] || die "kernel-source: --suite needs a value"
            [[ "$2" =~ ^[a-z][a-z0-9-]*$ ]] || die "kernel-source: '$2' is not a Debian suite name"
            suites+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "kernel-source: unknown option '$1' (see --help)" ;;
        *) [ -z "$what" ] || die "kernel-source: one package at a time"; what=$1; shift ;;
    esac
done
[ -n "$what" ] || die "kernel-source: say 'newest' or a package name (see --help)"

[ ${#suites[@]} -gt 0 ] || suites=(sid experimental)
if [ "$what" != newest ]; then
    [[ "$what" =~ ^linux-source-[0-9]+\.[0-9]+$ ]] ||
        die "kernel-source: '$what' is not a linux-source-X.Y package name"
fi

# Each suite is its own package set (named after it), so sid's lists and
# candidates are the same whether experimental is looked at or not.
package="" version="" suite=""
for candidate_suite in "${suites[@]}"; do
    lab_apt_prepare "$candidate_suite" "$candidate_suite"
    if [ "$what" = newest ]; then
        # The set's dpkg status is empty, so only the suite's packages show.
        found=$(lab_apt "$candidate_suite" apt-cache search --names-only '^linux-source-[0-9]+\.[0-9]+$' |
            awk '{ print $1 }' | sort -V | tail -n1)
        [ -n "$found" ] || continue
        # Kept only if strictly newer than an earlier suite's.
        [ -z "$package" ] || [ "$(printf '%s\n' "$package" "$found" | sort -V | tail -n1)" != "$package" ] ||
            continue
    else
        found=$what
    fi
    found_version=$(lab_apt_candidate "$candidate_suite" "$found")
    [ -n "$found_version" ] || continue
    package=$found version=$found_version suite=$candidate_suite
    [ "$what" = newest ] || break
done
if [ -z "$package" ]; then
    if [ "$what" = newest ]; then
        die "kernel-source: no linux-source-X.Y package in ${suites[*]}"
    fi
    die "kernel-source: $what is in none of: ${suites[*]}"
fi
set_name=$suite

dir="$LAB_CACHE/src/$package-$version"
if [ ! -f "$dir/.vfiolab-unpacked" ]; then
    deb=$(lab_apt_download "$set_name" "$package=$version")
    member="./usr/src/$package.tar.xz"
    echo "kernel-source: unpacking $member from $(basename "$deb")" >&2
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "$member" | tar -xJ -C "$dir.tmp" --strip-components=1
    [ -f "$dir.tmp/Makefile" ] && [ -f "$dir.tmp/Kconfig" ] ||
        die "kernel-source: $member did not unpack to a kernel tree"
    mv "$dir.tmp" "$dir"
    echo "debian $package $version" >"$dir/.vfiolab-unpacked"
fi
echo "kernel-source: $package $version from $suite" >&2
echo "$dir"
