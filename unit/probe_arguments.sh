#!/bin/sh
# vfiolab-probe on bad arguments: each fails (exit 1) with a message naming
# what was wrong, before any device is touched; with no device at all it
# SKIPs (exit 4) in KTAP, as the harness's programs do.
#   probe_arguments.sh PROGRAM
set -u
program=$1
fail=0
refused() {  # refused WORDS ARG...
    words=$1
    shift
    message=$("$program" "$@" 2>&1 >/dev/null)
    status=$?
    if [ "$status" != 1 ] || ! printf '%s\n' "$message" | grep -qF -- "$words"; then
        echo "check: '$*' gave exit status $status and '$message'; expected 1 and '$words'"
        fail=1
    fi
}
refused "unknown option '--bogus'" --bogus 0000:00:04.0
refused "--share wants BDF,BDF, not '0000:00:04.0'" --share 0000:00:04.0
refused "--mode needs a value" 0000:00:04.0 --mode
refused "unknown IOMMU mode 'type1'" --mode type1 0000:00:04.0
refused "bad BDF 'zz:zz'" zz:zz

output=$(env -u VFIO_SELFTESTS_BDF "$program" 2>/dev/null)
status=$?
if [ "$status" != 4 ] || ! printf '%s\n' "$output" | grep -q '^# no device: '; then
    echo "check: no device gave exit status $status and '$output'; expected 4 and '# no device: ...'"
    fail=1
fi
[ "$fail" = 1 ] || echo "check: vfiolab-probe refused every bad argument, and SKIPs without a device"
exit $fail
