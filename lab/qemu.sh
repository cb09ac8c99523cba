#!/usr/bin/env bash
# Provide a given QEMU version for the lab beside the system's, never in its
# place, and print how to run it.
#
#   lab/qemu.sh VERSION        VERSION: 7.2 or 10 (major or major.minor)
#
# Prints two lines on stdout:
#   the qemu-system-x86_64 to run (the system's when its version matches,
#     else a wrapper that passes -L with the data directories below)
#   the data directory for -L ("-" for the system's own QEMU)
#
# When the system's qemu-system-x86_64 is another version, the packages come
# from the Debian suite that carries VERSION for Debian 12 (10: bookworm-
# backports), looked up in a private apt directory (lab/common.sh) without
# changing the system's apt state: qemu-system-x86, qemu-system-common and
# qemu-system-data of that version and the suite's seabios are downloaded to
# $LAB_CACHE/debs and unpacked with dpkg -x into $LAB_CACHE/qemu/DEBIAN-VERSION/ (no epoch).
# The shared libraries the binary needs are installed with apt (root, or
# sudo): from the default suites, or from that suite only where the default
# ones have no new enough version. ipxe-qemu's option ROMs come from the
# system (the lab's e1000e uses none).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab/common.sh
. "$here/common.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac
want=$1
[[ "$want" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "qemu: VERSION is a number like 10 or 7.2, not '$want'"

# "QEMU emulator version 7.2.22 (Debian ...)" -> 7.2.22
qemu_version() { "$@" --version 2>/dev/null | sed -n '1s/^QEMU emulator version \([0-9][0-9.]*\).*/\1/p'; }
matches() { [ "$1" = "$want" ] || [[ "$1" == "$want".* ]]; }

if command -v qemu-system-x86_64 >/dev/null && matches "$(qemu_version qemu-system-x86_64)"; then
    command -v qemu-system-x86_64
    echo -
    exit 0
fi

case "$want" in
    10|10.*) suite=bookworm-backports ;;
    7.2|7.2.*) suite=bookworm ;;
    *) die "qemu: no Debian 12 suite known to carry QEMU $want (known: 7.2 bookworm, 10 bookworm-backports)" ;;
esac

lab_apt_prepare "$suite" "$suite"
version=$(lab_apt_candidate "$suite" qemu-system-x86)
[ -n "$version" ] || die "qemu: $suite has no qemu-system-x86"
upstream=${version#*:}
upstream=${upstream%%[+~-]*}
matches "$upstream" || die "qemu: $suite has qemu-system-x86 $version, not $want"
seabios=$(lab_apt_candidate "$suite" seabios)
[ -n "$seabios" ] || die "qemu: $suite has no seabios"

root="$LAB_CACHE/qemu/${version#*:}"
binary=$root/usr/bin/qemu-system-x86_64
wrapper=$root/qemu-system-x86_64
if [ ! -f "$root/.complete" ]; then
    mapfile -t debs < <(lab_apt_download "$suite" "qemu-system-x86=$version" \
        "qemu-system-common=$version" "qemu-system-data=$version" "seabios=$seabios")
    [ ${#debs[@]} -eq 4 ] || die "qemu: downloading the packages failed"
    rm -rf "$root" "$root.tmp"
    mkdir -p "$root.tmp"
    for deb in "${debs[@]}"; do
        echo "qemu: unpacking $(basename "$deb")" >&2
        dpkg-deb -x "$deb" "$root.tmp"
    done
    dpkg-deb -f "${debs[0]}" Depends >"$root.tmp/depends"
    # QEMU looks for firmware in the -L directories first, then in its
    # built-in ones (the system's); its loadable modules must be its own.
    cat >"$root.tmp/qemu-system-x86_64" <<EOF
#!/bin/sh
# QEMU $version from Debian's $suite, unpacked by vfiolab's lab/qemu.sh.
QEMU_MODULE_DIR='$root/usr/lib/x86_64-linux-gnu/qemu'
export QEMU_MODULE_DIR
exec '$binary' -L '$root/usr/share/qemu' -L '$root/usr/share/seabios' "\$@"
EOF
    chmod +x "$root.tmp/qemu-system-x86_64"
    mv "$root.tmp" "$root"
    touch "$root/.complete"
fi

# Shared libraries: ldd names missing ones and missing symbol versions alike.
unresolved() { ldd "$binary" 2>&1 | grep 'not found' || true; }

# plan_libraries: from the binary's Depends (less the QEMU and firmware
# packages unpacked above), print "NAME" for each package whose candidate in
# the default suites satisfies the clause and "NAME/SUITE" for the others.
# apt-get satisfy would not do: it never looks past a candidate version.
plan_libraries() {
    local clause name op wanted candidate
    tr ',' '\n' <"$root/depends" | sed 's/^ *//; s/ *$//' | grep -vE '^(qemu-|seabios|ipxe-qemu)' |
    while IFS= read -r clause; do
        name=${clause%% *}
        op=""
        if [[ "$clause" =~ ^[^\ ]+\ \((<<|<=|=|>=|>>)\ ([^\)]+)\)$ ]]; then
            op=${BASH_REMATCH[1]}
            wanted=${BASH_REMATCH[2]}
        fi
        candidate=$(apt-cache policy "$name" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
        if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] &&
            { [ -z "$op" ] || dpkg --compare-versions "$candidate" "$op" "$wanted"; }; then
            echo "$name"
        else
            echo "$name/$suite"
        fi
    done
}

if [ -n "$(unresolved)" ]; then
    echo "qemu: QEMU $version lacks shared libraries:" >&2
    unresolved >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "qemu: run 'sudo $0 $want' once to install them"
        sudo=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get -q update >&2
    mapfile -t libraries < <(plan_libraries)
    if ! printf '%s\n' "${libraries[@]}" | grep -q /; then
        echo "qemu: installing from the default suites: ${libraries[*]}" >&2
        $sudo apt-get -q -y --no-install-recommends install "${libraries[@]}" >&2 ||
            die "qemu: could not install the libraries QEMU $version needs"
    else
        # Those only $suite has new enough come from there; apt sees the
        # system's sources (and real dpkg status) beside it, in a private
        # lists directory.
        [ -z "$sudo" ] || die "qemu: some libraries must come from $suite: run 'sudo $0 $want' once"
        echo "qemu: installing (NAME/$suite from $suite, the rest from the default suites): ${libraries[*]}" >&2
        lab_apt_prepare "$suite+system" --with-system "$suite"
        lab_apt "$suite+system" apt-get -q -y --no-install-recommends install "${libraries[@]}" >&2 ||
            die "qemu: could not install the libraries QEMU $version needs"
    fi
    [ -z "$(unresolved)" ] || { unresolved >&2; die "qemu: libraries still missing for $binary"; }
fi

echo "qemu: $(qemu_version "$wrapper") from $suite in $root" >&2
echo "$wrapper"
echo "$root/usr/share/qemu"
