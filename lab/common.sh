# Shared settings for the lab's shell glue. Sourced, not run.

LAB_CACHE=${VFIOLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfiolab}
LAB_DEBIAN_KERNEL_PACKAGE=${VFIOLAB_KERNEL_PACKAGE:-linux-source-6.12}
# Bump when kernel.sh changes how a kernel is built, to invalidate the cache.
LAB_KERNEL_RECIPE=1
# The same for how kernel.sh builds a tree's VFIO selftests.
LAB_SELFTESTS_RECIPE=1

die() {
    echo "$*" >&2
    exit 1
}

# A UNIX socket's path must fit in sun_path: 107 bytes and a NUL. A folder
# in a checkout or an --out passes that easily, so the lab's sockets live in
# a private folder of their own, made here and removed by the caller.
LAB_SOCKET_PATH_MAX=107

# lab_socket_dir LONGEST_NAME: a new private folder (mode 0700) in $TMPDIR,
# or in /tmp when $TMPDIR is unset or too long, in which LONGEST_NAME still
# fits a socket path. Dies, saying why, when neither will do.
lab_socket_dir() {
    local name=$1 base dir tried=()
    for base in ${TMPDIR:+"$TMPDIR"} /tmp; do
        base=${base%/}
        # mktemp's "vfiolab.XXXXXX", two slashes and the name, counted in bytes.
        if [ $(( $(printf '%s' "$base" | wc -c) + 16 + $(printf '%s' "$name" | wc -c) + 1 )) -gt "$LAB_SOCKET_PATH_MAX" ]; then
            tried+=("'$base' is too long")
            continue
        fi
        if dir=$(mktemp -d "$base/vfiolab.XXXXXX" 2>/dev/null); then
            echo "$dir"
            return 0
        fi
        tried+=("'$base' is not writable")
    done
    die "lab: no folder for the lab's UNIX sockets, whose paths must stay within $LAB_SOCKET_PATH_MAX bytes: $(IFS=';'; echo "${tried[*]}" | sed 's/;/; /g')"
}

# lab_qemu_value TEXT: TEXT as the value of a QEMU option (key=value lists
# such as -chardev and -drive), with each comma doubled: a path with a comma
# would otherwise end the value there.
lab_qemu_value() {
    printf '%s' "${1//,/,,}"
}

# Packages from Debian suites that the machine's apt sources do not list
# (sid for the newest kernel source, bookworm-backports for a newer QEMU),
# looked up and downloaded without changing the system's apt state: each set
# has its own sources file, lists directory and (empty unless asked for)
# dpkg status in $LAB_CACHE/apt/NAME. The mirror and keyring come from the
# machine's own deb822 stanza whose Suites include bookworm.
LAB_APT_SOURCES=${VFIOLAB_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
# Lists younger than this many seconds are used without asking the mirror.
LAB_APT_MAX_AGE=${VFIOLAB_APT_MAX_AGE:-86400}

# lab_apt_stanza SUITE...: a deb822 stanza for SUITE... on the machine's mirror.
lab_apt_stanza() {
    [ -r "$LAB_APT_SOURCES" ] || die "apt: cannot read $LAB_APT_SOURCES"
    awk -v suites="$*" '
        BEGIN { RS = ""; FS = "\n" }
        {
            uris = ""; key = ""; found = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^Suites:/) {
                    n = split(substr($i, 8), list, /[ \t]+/)
                    for (j = 1; j <= n; j++) if (list[j] == "bookworm") found = 1
                } else if ($i ~ /^URIs:/) {
                    uris = substr($i, 6)
                } else if ($i ~ /^Signed-By:/) {
                    key = substr($i, 11)
                }
            }
            if (found && uris != "") {
                sub(/^[ \t]+/, "", uris); sub(/^[ \t]+/, "", key)
                printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n", uris, suites
                if (key != "") printf "Signed-By: %s\n", key
                done = 1
                exit
            }
        }
        END { if (!done) exit 1 }' "$LAB_APT_SOURCES" ||
        die "apt: no stanza with 'Suites: bookworm' in $LAB_APT_SOURCES to derive a source from"
}

# lab_apt NAME apt-get|apt-cache ARGS...: run apt against set NAME.
lab_apt() {
    local dir="$LAB_CACHE/apt/$1" tool=$2
    shift 2
    local options=(-o "Dir::Etc::sourcelist=$dir/sources.sources" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$dir/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
    [ ! -f "$dir/status" ] || options+=(-o "Dir::State::status=$dir/status")
    # apt's download sandbox user cannot enter root's home, where the cache
    # usually is; without this apt warns and downloads as root anyway.
    [ "$(id -u)" != 0 ] || options+=(-o APT::Sandbox::User=root)
    "$tool" "${options[@]}" "$@"
}

# lab_apt_prepare NAME [--with-system] SUITE...: make set NAME (the given
# suites; with --with-system also the machine's own sources and the real dpkg
# status, for installing) and fetch its lists unless they are fresh and the
# sources unchanged. Lists that cannot be refreshed are used with a warning.
lab_apt_prepare() {
    local name=$1 with_system=0
    shift
    [ "${1:-}" != --with-system ] || { with_system=1; shift; }
    local dir="$LAB_CACHE/apt/$name" sources
    mkdir -p "$dir/lists/partial"
    sources=$( { [ "$with_system" = 0 ] || { cat "$LAB_APT_SOURCES"; echo; }; lab_apt_stanza "$@"; } )
    if [ "$with_system" = 0 ]; then
        : >"$dir/status"
    else
        rm -f "$dir/status"
    fi
    if [ -f "$dir/updated" ] && [ "$sources" = "$(cat "$dir/sources.sources" 2>/dev/null)" ] &&
        [ $(( $(date +%s) - $(stat -c %Y "$dir/updated") )) -lt "$LAB_APT_MAX_AGE" ]; then
        return 0
    fi
    printf '%s\n' "$sources" >"$dir/sources.sources"
    echo "apt: fetching package lists for $* (private, in $dir)" >&2
    if lab_apt "$name" apt-get -q --error-on=any update >&2; then
        touch "$dir/updated"
    elif [ -f "$dir/updated" ]; then
        echo "apt: could not refresh the lists of $*; using the ones from $(date -r "$dir/updated")" >&2
    else
        die "apt: could not fetch the package lists of $*"
    fi
}

# lab_apt_cached_deb PACKAGE VERSION: the cached .deb of that version, if any
# (apt-get download writes the epoch's colon as %3a).
lab_apt_cached_deb() {
    local file
    for file in "$LAB_CACHE/debs/${1}_${2/:/%3a}_"*.deb; do
        [ -f "$file" ] && { echo "$file"; return 0; }
    done
    return 1
}

# lab_apt_download NAME PACKAGE=VERSION...: the .deb files, downloaded once
# into $LAB_CACHE/debs; prints their paths.
lab_apt_download() {
    local name=$1 spec tmp wanted=()
    shift
    mkdir -p "$LAB_CACHE/debs"
    for spec in "$@"; do
        lab_apt_cached_deb "${spec%%=*}" "${spec#*=}" >/dev/null || wanted+=("$spec")
    done
    if [ ${#wanted[@]} -gt 0 ]; then
        tmp=$(mktemp -d "$LAB_CACHE/debs/.download.XXXXXX")
        echo "apt: downloading ${wanted[*]}" >&2
        ( cd "$tmp" && lab_apt "$name" apt-get -q download "${wanted[@]}" ) >&2 ||
            { rm -rf "$tmp"; die "apt: downloading ${wanted[*]} failed"; }
        mv "$tmp"/*.deb "$LAB_CACHE/debs/"
        rmdir "$tmp"
    fi
    for spec in "$@"; do
        lab_apt_cached_deb "${spec%%=*}" "${spec#*=}" || die "apt: $spec was not downloaded"
    done
}

# lab_apt_candidate NAME PACKAGE: the version set NAME would install, or nothing.
lab_apt_candidate() {
    lab_apt "$1" apt-cache policy "$2" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# lab_memory_mib SIZE: QEMU's -m SIZE (6G, 6144M, or MiB without a suffix)
# in MiB; fails on anything else.
lab_memory_mib() {
    case $1 in
        *[gG]) [[ ${1%?} =~ ^[1-9][0-9]*$ ]] && echo $(( ${1%?} * 1024 )) ;;
        *[mM]) [[ ${1%?} =~ ^[1-9][0-9]*$ ]] && echo "${1%?}" ;;
        *) [[ $1 =~ ^[1-9][0-9]*$ ]] && echo "$1" ;;
    esac
}

# lab_machines_that_fit MEMORY_MIB CPUS: how many lab machines of that size
# this host runs at once. A busy TCG vCPU is a busy host thread, but a lab
# guest's vCPU idles a good part of the time (edu's copies wait on QEMU's
# 100 ms timer, the fault tests on the IOMMU's fault log): one machine more
# than the cores take (on 2 cores the default lane took 131.5 s over two
# machines, 82.7 s over three; README, "Machines side by side"). At most one
# per MEMORY_MIB plus 1 GiB (QEMU's own) of available memory; at least one.
lab_machines_that_fit() {
    local memory_mib=$1 cpus=$2 available_mib machines by_memory
    available_mib=$(awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo)
    machines=$(( $(nproc) / cpus + 1 ))
    by_memory=$(( available_mib / (memory_mib + 1024) ))
    [ "$by_memory" -ge "$machines" ] || machines=$by_memory
    [ "$machines" -ge 1 ] || machines=1
    echo "$machines"
}
