# Shared settings for the lab's shell glue. Sourced, not run.

LAB_CACHE=${VFIOLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfiolab}
LAB_DEBIAN_KERNEL_PACKAGE=${VFIOLAB_KERNEL_PACKAGE:-linux-source-6.12}
# Bump when kernel.sh changes how a kernel is built, to invalidate the cache.
LAB_KERNEL_RECIPE=1

die() {
    echo "$*" >&2
    exit 1
}
