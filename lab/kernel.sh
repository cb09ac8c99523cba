#!/usr/bin/env bash
# Build (or find in the cache) the lab kernel and the uAPI headers that
# vfiolab compiles against.
#
#   lab/kernel.sh [--source DIR] [--fragment FILE]... [--headers-only] [--quiet]
#   lab/kernel.sh [--source DIR] --vfio-selftests
#   lab/kernel.sh [--source DIR] --kvm-selftests
#
# Prints one line on stdout: the directory holding the artifacts:
#   bzImage    the kernel (absent with --headers-only)
#   config     its final .config
#   usr/include  the installed uAPI headers (make headers_install)
#   identity   what the cache key was made of
#
# --vfio-selftests instead builds the tree's own VFIO selftests
# (tools/testing/selftests/vfio) against its headers, linked statically for
# the lab's guest, and prints the directory holding them (bin/, identity,
# build.log). Exit status 3, with the reason on stderr, for a tree that has
# none; 1 when they do not build.
#
# --kvm-selftests builds the tree's KVM selftests that vfiolab runs beside
# its own (lab/kernel-selftests.plan): irq_test (the device-interrupt test,
# new in 7.3, linked with the VFIO selftests' library) and debug_regs
# (x86/debug_regs, x86_64/debug_regs before 6.16), each where the tree has
# it, statically, against the tree's own headers. Prints the directory
# holding them (bin/, absent: one "PROGRAM REASON" line for each one the
# tree lacks). Exit status 3 for a tree with none of them.
#
# The default source is Debian's linux-source-6.12, unpacked once into the
# cache. With --source, any kernel tree is built out of tree (O=), so the
# user's tree is never written to. Artifacts are keyed by the source's
# identity (package version, or git HEAD plus a hash of local changes, or a
# listing of file sizes and times) and by the config fragments; build
# directories are keyed by source path and fragments so a developer's edits
# rebuild incrementally.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab/common.sh
. "$here/common.sh"

source_dir=""
fragments=("$here/kernel.config")
headers_only=0
vfio_selftests=0
kvm_selftests=0
quiet=0
while [ $# -gt 0 ]; do
    case "$1" in
        --source) source_dir=$(realpath "$2"); shift 2 ;;
        --fragment) fragments+=("$(realpath "$2")"); shift 2 ;;
        --headers-only) headers_only=1; shift ;;
        --vfio-selftests) vfio_selftests=1; shift ;;
        --kvm-selftests) kvm_selftests=1; shift ;;
        --quiet) quiet=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "kernel.sh: unknown argument '$1' (see --help)" ;;
    esac
done

log() { [ "$quiet" = 1 ] || echo "kernel: $*" >&2; }

debian_source_identity() {
    local version
    version=$(dpkg-query -W -f='${Version}' "$LAB_DEBIAN_KERNEL_PACKAGE" 2>/dev/null) ||
        die "kernel: package $LAB_DEBIAN_KERNEL_PACKAGE is not installed (run scripts/deps.sh, or pass --source DIR)"
    echo "debian $LAB_DEBIAN_KERNEL_PACKAGE $version"
}

# Unpack Debian's tarball once per package version.
debian_source_tree() {
    local version dir tarball
    version=$(dpkg-query -W -f='${Version}' "$LAB_DEBIAN_KERNEL_PACKAGE")
    dir="$LAB_CACHE/src/$LAB_DEBIAN_KERNEL_PACKAGE-$version"
    tarball="/usr/src/$LAB_DEBIAN_KERNEL_PACKAGE.tar.xz"
    if [ ! -f "$dir/.vfiolab-unpacked" ]; then
        [ -f "$tarball" ] || die "kernel: $tarball is missing"
        log "unpacking $tarball"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        tar -xf "$tarball" -C "$dir.tmp" --strip-components=1
        mv "$dir.tmp" "$dir"
        touch "$dir/.vfiolab-unpacked"
    fi
    echo "$dir"
}

user_source_identity() {
    local dir=$1
    [ -f "$dir/Makefile" ] && [ -f "$dir/Kconfig" ] ||
        die "kernel: '$dir' does not look like a kernel tree (no Makefile and Kconfig)"
    if git -C "$dir" rev-parse --git-dir >/dev/null 2>&1; then
        # HEAD plus a hash of everything that differs from it, so local edits
        # make a new key.
        local head changes
        head=$(git -C "$dir" rev-parse HEAD)
        changes=$( { git -C "$dir" diff HEAD; git -C "$dir" status --porcelain --untracked-files=normal; } | sha256sum | cut -c1-16)
        echo "git $dir $head $changes"
    else
        local listing
        listing=$(cd "$dir" && find . -path ./.git -prune -o -type f \
            \( -name '*.[chS]' -o -name 'Kconfig*' -o -name 'Makefile*' -o -name '*.lds*' \) \
            -printf '%P %s %T@\n' | LC_ALL=C sort | sha256sum | cut -c1-16)
        echo "tree $dir $listing"
    fi
}

if [ -n "$source_dir" ]; then
    identity=$(user_source_identity "$source_dir")
    tree=$source_dir
else
    identity=$(debian_source_identity)
    tree=$(debian_source_tree)
fi

# Kbuild cannot build a tree, or into a folder, whose path has a space or a
# colon (make splits words there): say so now, not in the middle of a build.
for path in "$tree" "$LAB_CACHE"; do
    case "$path" in
        *[[:space:]:]*) die "kernel: '$path' has a space or a colon, which Kbuild cannot build in: $( [ "$path" = "$tree" ] &&
            echo "move or link the kernel tree to a path without them" ||
            echo "set VFIOLAB_CACHE to a folder whose path has none")" ;;
    esac
done

jobs=$(( $(nproc) + 1 ))

# uAPI headers depend on the source alone. They are kept once per content
# (headers-HASH), and each source identity points at its copy: after an edit
# that leaves the uAPI alone (the usual kernel change), vfiolab's build sees
# the same header path and files and rebuilds nothing. headers_install runs
# in a build folder kept per tree, so it is incremental too.
headers_key=$(printf '%s\n' "headers" "$identity" | sha256sum | cut -c1-16)
headers="$LAB_CACHE/kernel/$headers_key"
if [ ! -f "$headers/.complete" ]; then
    log "installing uAPI headers from $tree"
    mkdir -p "$LAB_CACHE/kernel"
    staging=$(mktemp -d "$LAB_CACHE/kernel/headers-staging.XXXXXX")
    headers_build="$LAB_CACHE/build/headers-$(printf '%s\n' "$tree" | sha256sum | cut -c1-16)"
    make -s -C "$tree" O="$headers_build" ARCH=x86_64 INSTALL_HDR_PATH="$staging/usr" headers_install >&2
    content=$(cd "$staging" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    copy="$LAB_CACHE/kernel/headers-$content"
    if [ -f "$copy/.complete" ]; then
        rm -rf "$staging"
    else
        rm -rf "$copy"
        echo "$identity" >"$staging/identity"
        touch "$staging/.complete"
        mv "$staging" "$copy"
    fi
    rm -rf "$headers"
    ln -sfn "$copy" "$headers"
fi
headers=$(realpath "$headers")

# selftests_cached KIND KEY_PART...: the cached build of these selftests
# (printed, and the script ends) if there is one; otherwise sets $out to
# where it goes, $staging to a new folder to build it in and $compiler to
# the compiler's version line (part of the key).
selftests_cached() {
    local kind=$1 key
    shift
    compiler=$(gcc --version | head -n1)
    key=$(printf '%s\n' "$kind-selftests" "$identity" "$compiler" "$LAB_SELFTESTS_RECIPE" "$@" |
        sha256sum | cut -c1-16)
    out="$LAB_CACHE/kselftest/$key"
    if [ -f "$out/.complete" ]; then
        log "cached ${kind^^} selftests: $out"
        echo "$out"
        exit 0
    fi
    mkdir -p "$LAB_CACHE/kselftest"
    staging=$(mktemp -d "$LAB_CACHE/kselftest/staging.XXXXXX")
}

# The tree's own VFIO selftests, for lab/run --kernel-selftests.
build_vfio_selftests() {
    local suite="$tree/tools/testing/selftests/vfio"
    if [ ! -f "$suite/Makefile" ]; then
        echo "kernel tree $tree has no VFIO selftests (no tools/testing/selftests/vfio)" >&2
        exit 3
    fi
    local compiler out staging extra program
    selftests_cached vfio "$(sha256sum <"$here/kselftest-compat.h")"
    # Static: the guest has busybox and no C library.
    extra="-static"
    # Debian's 7.2.13 calls calloc_assert() in lib/vfio_pci_device.c, and
    # nothing in the tree defines it: the lab supplies it (lab/kselftest-compat.h)
    # only for a tree that uses it without defining it.
    if grep -rqw calloc_assert "$suite" &&
        ! grep -rqE '(define[[:space:]]+calloc_assert|[*][[:space:]]*calloc_assert[[:space:]]*[(][a-z])' "$tree/tools"; then
        # A copy beside the build: make splits EXTRA_CFLAGS at spaces, and
        # the checkout's path may have some.
        cp "$here/kselftest-compat.h" "$staging/kselftest-compat.h"
        extra+=" -include $staging/kselftest-compat.h"
        echo "calloc_assert: used but not defined in this tree; lab/kselftest-compat.h supplies it" >>"$staging/build.log"
    fi
    log "building $suite (static${extra#-static})"
    # OUTPUT= keeps every object out of the tree.
    if ! make -C "$suite" -j"$jobs" OUTPUT="$staging/build" KHDR_INCLUDES="-isystem $headers/usr/include" \
        EXTRA_CFLAGS="$extra" >>"$staging/build.log" 2>&1; then
        tail -n 20 "$staging/build.log" >&2
        echo "kernel: the VFIO selftests of $tree did not build (log: $staging/build.log)" >&2
        exit 1
    fi
    mkdir -p "$staging/bin"
    for program in $(make -s -C "$suite" OUTPUT="$staging/build" KHDR_INCLUDES="-isystem $headers/usr/include" \
        EXTRA_CFLAGS="$extra" -f Makefile -f - <<<'print-programs: ; @echo $(TEST_GEN_PROGS)' print-programs 2>/dev/null); do
        [ -x "$program" ] || { echo "kernel: $program was not built" >&2; exit 1; }
        cp "$program" "$staging/bin/"
    done
    [ -n "$(ls -A "$staging/bin")" ] || { echo "kernel: no VFIO selftest programs found in $suite" >&2; exit 1; }
    printf '%s\n' "$identity" "$compiler" "$extra" >"$staging/identity"
    rm -rf "$staging/build" "$out"
    touch "$staging/.complete"
    mv "$staging" "$out"
    echo "$out"
    exit 0
}
[ "$vfio_selftests" = 0 ] || build_vfio_selftests

# The tree's KVM selftests that vfiolab runs (see --help). Their Makefile
# names each program by its path under tools/testing/selftests/kvm, which
# moved (x86_64/ became x86/): the path is read from it, not assumed.
build_kvm_selftests() {
    local suite="$tree/tools/testing/selftests/kvm"
    local compiler out staging program path targets=() wanted=(irq_test debug_regs)
    local makefiles=("$suite"/Makefile*)
    declare -A paths=()
    for program in "${wanted[@]}"; do
        path=$(cat "${makefiles[@]}" 2>/dev/null |
            awk -v p="$program" '$1 ~ /^TEST_GEN_PROGS_(x86|x86_64|COMMON)$/ && $2 == "+=" &&
                ($3 == p || $3 ~ ("/" p "$")) { print $3; exit }')
        [ -z "$path" ] || paths[$program]=$path
    done
    if [ ${#paths[@]} = 0 ]; then
        echo "kernel tree $tree has none of the KVM selftests ${wanted[*]}" >&2
        exit 3
    fi
    selftests_cached kvm "${wanted[*]}"
    mkdir -p "$staging/bin"
    : >"$staging/absent"
    for program in "${wanted[@]}"; do
        if [ -n "${paths[$program]:-}" ]; then
            targets+=("$staging/build/${paths[$program]}")
        else
            echo "$program this kernel tree has no KVM selftest $program (tools/testing/selftests/kvm)" >>"$staging/absent"
        fi
    done
    log "building ${targets[*]#"$staging/build/"} of $suite (static)"
    # Only the named programs (and the library they link), out of tree.
    if ! make -C "$suite" -j"$jobs" OUTPUT="$staging/build" KHDR_INCLUDES="-isystem $headers/usr/include" \
        EXTRA_CFLAGS="-static" "${targets[@]}" >>"$staging/build.log" 2>&1; then
        tail -n 20 "$staging/build.log" >&2
        echo "kernel: the KVM selftests of $tree did not build (log: $staging/build.log)" >&2
        exit 1
    fi
    for program in "${!paths[@]}"; do
        [ -x "$staging/build/${paths[$program]}" ] || { echo "kernel: ${paths[$program]} was not built" >&2; exit 1; }
        cp "$staging/build/${paths[$program]}" "$staging/bin/$program"
    done
    printf '%s\n' "$identity" "$compiler" "${paths[@]}" >"$staging/identity"
    rm -rf "$staging/build" "$out"
    touch "$staging/.complete"
    mv "$staging" "$out"
    echo "$out"
    exit 0
}
[ "$kvm_selftests" = 0 ] || build_kvm_selftests

if [ "$headers_only" = 1 ]; then
    echo "$headers"
    exit 0
fi

fragment_hash=$(cat "${fragments[@]}" | sha256sum | cut -c1-16)
compiler=$(gcc --version | head -n1)
key=$(printf '%s\n' "kernel" "$identity" "$fragment_hash" "$compiler" "$LAB_KERNEL_RECIPE" |
    sha256sum | cut -c1-16)
out="$LAB_CACHE/kernel/$key"

if [ -f "$out/.complete" ]; then
    # Artifacts from before the shared header copy had headers of their own.
    [ -L "$out/usr" ] || { rm -rf "$out/usr"; ln -s "$headers/usr" "$out/usr"; }
    log "cached: $out"
    echo "$out"
    exit 0
fi

rm -rf "$out"
mkdir -p "$out"
printf '%s\n' "$identity" "fragments: ${fragments[*]} ($fragment_hash)" "compiler: $compiler" >"$out/identity"

build="$LAB_CACHE/build/$(printf '%s\n' "$tree" "$fragment_hash" | sha256sum | cut -c1-16)"
mkdir -p "$build"
log "configuring in $build (tinyconfig + ${fragments[*]})"
start=$(date +%s)
make -s -C "$tree" O="$build" ARCH=x86_64 tinyconfig >&2
"$tree/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "${fragments[@]}" >/dev/null
make -s -C "$tree" O="$build" ARCH=x86_64 olddefconfig >&2

# merge_config.sh drops silently what a dependency blocks: check each option.
# An option that this tree's Kconfig does not define at all (one a newer
# kernel removed, say) is skipped with a note; one it defines but that did
# not survive is an error.
lost=()
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) grep -qxF "$line" "$build/.config" || lost+=("$line") ;;
    esac
done < <(cat "${fragments[@]}")
missing=0
if [ ${#lost[@]} -gt 0 ]; then
    # One pass over every Kconfig file for all the lost names together.
    names=$(printf '%s\n' "${lost[@]}" | sed 's/^CONFIG_//; s/=.*//' | sort -u | paste -sd'|')
    defined=$(find "$tree" -path "$tree/.git" -prune -o -type f -name 'Kconfig*' -print0 |
        xargs -0 grep -hoE "^[[:space:]]*(menu)?config[[:space:]]+($names)([[:space:]]|\$)" |
        awk '{print $2}' | sort -u || true)
    for line in "${lost[@]}"; do
        name=${line%%=*}
        if ! grep -qxF "${name#CONFIG_}" <<<"$defined"; then
            echo "kernel: $name is not defined by this tree's Kconfig; skipped" >&2
            continue
        fi
        got=$(grep -E "^(# )?$name[= ]" "$build/.config" || echo "$name absent")
        echo "kernel: asked for '$line', got '$got'" >&2
        missing=1
    done
fi
[ "$missing" = 0 ] || die "kernel: config options above did not survive olddefconfig (a dependency is missing)"

log "building bzImage with -j$jobs"
make -s -C "$tree" O="$build" ARCH=x86_64 -j"$jobs" bzImage >&2
ln -s "$headers/usr" "$out/usr"
cp "$build/arch/x86/boot/bzImage" "$out/bzImage"
cp "$build/.config" "$out/config"
echo "build seconds: $(( $(date +%s) - start ))" >>"$out/identity"
touch "$out/.complete"
log "built in $(( $(date +%s) - start )) s: $out"
echo "$out"
