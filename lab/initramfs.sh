#!/usr/bin/env bash
# Build the lab guest's initramfs: busybox, the init, the run's plan and
# settings, and the given programs with the shared libraries they need.
#
#   lab/initramfs.sh OUTPUT.cpio ENV_FILE PLAN_FILE [PROGRAM | --tree HOST_DIR:GUEST_DIR]...
#
# Programs go to /usr/bin; --tree copies a folder of static programs as it
# is (the kernel's own selftests, whose names are vfiolab's too).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"

[ $# -ge 3 ] || die "usage: lab/initramfs.sh OUTPUT ENV_FILE PLAN_FILE [PROGRAM...]"
output=$(realpath -m "$1")
env_file=$2
plan_file=$3
shift 3

busybox=$(command -v busybox) || die "initramfs: busybox is missing (apt-get install busybox-static)"
# A dynamically linked busybox would need its libraries too; insist on static.
if ldd "$busybox" >/dev/null 2>&1; then
    die "initramfs: $busybox is dynamically linked; install busybox-static"
fi

root=$(mktemp -d)
chmod 0755 "$root"  # the guest's / must be traversable by non-root users
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,tmp,root,lab,etc}
cp "$busybox" "$root/bin/busybox"
install -m 0755 "$here/guest/init" "$root/init"
cp "$env_file" "$root/lab/env"
cp "$plan_file" "$root/lab/plan"
printf "%s\n" "root:x:0:0:root:/root:/bin/sh" "nobody:x:65534:65534:nobody:/:/bin/sh" >"$root/etc/passwd"
printf "%s\n" "root:x:0:" "nogroup:x:65534:" >"$root/etc/group"

copy_with_libraries() {
    local program=$1
    # Without debug info (the host keeps the full binaries for gdb): a tenth
    # of the size, so the archive packs and the guest unpacks it in a
    # fraction of the time. Symbols stay, for backtraces.
    if ! strip --strip-debug -o "$root/usr/bin/${program##*/}" "$program" 2>/dev/null; then
        cp "$program" "$root/usr/bin/"  # a script
    fi
    # ldd prints "name => /path (addr)" and "/lib64/ld-linux... (addr)"; a
    # script or static program has none. A path may hold spaces (a vfiolab
    # installed under a checkout such as "/builds/my project/...").
    local line lib libc_dir="" libs=()
    while IFS= read -r line; do
        case $line in
            *" => /"*) lib=${line#* => } ;;
            *[[:space:]]/*|/*) lib=/${line#*/} ;;
            *) continue ;;
        esac
        lib=${lib% (0x*}
        libs+=("$lib")
        case ${lib##*/} in libc.so.[0-9]*) libc_dir=${lib%/*} ;; esac
    done < <(ldd "$program" 2>/dev/null || true)
    for lib in ${libs[@]+"${libs[@]}"}; do
        [ -f "$lib" ] || continue
        mkdir -p "$root$(dirname "$lib")"
        [ -f "$root$lib" ] || cp -L "$lib" "$root$lib"
        # One found through a RUNPATH (a test built against a vfiolab
        # installed under some prefix) may lie where the guest mounts over,
        # such as /tmp: it goes beside the C library too, where the guest's
        # loader looks anyway.
        case $lib in
            /lib/*|/lib64/*|/usr/lib/*) ;;
            *) [ -z "$libc_dir" ] || [ -f "$root$libc_dir/${lib##*/}" ] ||
                   { mkdir -p "$root$libc_dir"; cp -L "$lib" "$root$libc_dir/"; } ;;
        esac
    done
}

while [ $# -gt 0 ]; do
    if [ "$1" = --tree ]; then
        [ $# -ge 2 ] && [[ "$2" == *:/* ]] || die "initramfs: --tree wants HOST_DIR:GUEST_DIR"
        [ -d "${2%%:*}" ] || die "initramfs: '${2%%:*}' is not a folder"
        mkdir -p "$root${2#*:}"
        cp -R "${2%%:*}/." "$root${2#*:}/"
        shift 2
        continue
    fi
    [ -x "$1" ] || die "initramfs: '$1' is not an executable file"
    copy_with_libraries "$1"
    shift
done

# Uncompressed: the guest kernel copies it, where under TCG inflating even
# a small gzip archive costs more than QEMU reading the larger file.
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$output"
