#!/bin/sh
# vfio_setup_test: vfio-setup against a real device and the real kernel. The
# device must start on its own kernel driver (or be held by vfio-setup, which
# the first case undoes). Each case checks the driver binding afterwards.
#
#   vfio_setup_test.sh DEVICE_BDF [--conflict BDF] [--sriov PF_BDF]
#
# --conflict names a device whose IOMMU group also holds a device on a host
# driver: binding it alone must be refused. --sriov names an SR-IOV PF for
# the VF cases (VFs made by run --vfs and put back, also after SIGKILL);
# the PF is left bound to vfio-pci by vfio-setup afterwards. KTAP on stdout;
# exit 0 pass, 1 fail, 4 skip.
set -u

device=${VFIO_SELFTESTS_BDF:-}
conflict=""
sriov_pf=""
while [ $# -gt 0 ]; do
    case $1 in
        --conflict) conflict=${2:-}; shift 2 ;;
        --sriov) sriov_pf=${2:-}; shift 2 ;;
        *) device=$1; shift ;;
    esac
done
if [ -z "$device" ]; then
    echo "KTAP version 1"
    echo "1..0 # SKIP usage: vfio_setup_test.sh DEVICE_BDF [--conflict BDF] [--sriov PF_BDF]"
    exit 4
fi

number=0
failed=0
skipped=0
driver_of() { basename "$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null)" 2>/dev/null || true; }
state_dir=${VFIO_SETUP_STATE_DIR:-/run/vfiolab/vfio-setup}
log=$(mktemp)
cmd_pid_file=$(mktemp)

ok() { number=$((number + 1)); echo "ok $number $1"; }
not_ok() {
    number=$((number + 1))
    failed=$((failed + 1))
    echo "# $2"
    sed 's/^/# output: /' "$log"
    echo "not ok $number $1"
}
skip() { number=$((number + 1)); skipped=$((skipped + 1)); echo "ok $number $1 # SKIP $2"; }
wait_for_driver() {  # BDF DRIVER: up to 10 s
    for _ in $(seq 100); do
        [ "$(driver_of "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# `vfio-setup run ARGS... -- CMD` in the background as $tool, CMD a sleep
# that writes its own PID to $cmd_pid_file first (its $0; the BDF is
# appended as $1). Its PID, not `pidof sleep`: other programs in the guest
# may be running a sleep of their own.
start_sleeping_cmd() {  # RUN_ARG...
    : >"$cmd_pid_file"
    vfio-setup run "$@" -- sh -c 'echo $$ >"$0"; exec sleep 60' "$cmd_pid_file" >"$log" 2>&1 &
    tool=$!
}
# The CMD started last is running, as its sleep (past the exec).
cmd_sleeping() {
    cmd_pid=$(cat "$cmd_pid_file" 2>/dev/null)
    [ -n "$cmd_pid" ] && [ "$(cat "/proc/$cmd_pid/comm" 2>/dev/null)" = sleep ]
}
# The device is bound and the tool's CMD has started: only then is a signal
# one that arrives while CMD runs.
wait_for_cmd() {  # BDF
    wait_for_driver "$1" vfio-pci || return 1
    for _ in $(seq 100); do
        cmd_sleeping && return 0
        sleep 0.1
    done
    return 1
}

# SIGKILL for the tool started in the background as $tool; the orphaned CMD
# keeps running after its parent is gone, so it goes too.
sigkill_tool() {
    kill -KILL "$tool"
    wait "$tool" 2>/dev/null
    cmd_sleeping && kill "$cmd_pid" 2>/dev/null
}

echo "KTAP version 1"
echo "1..16"

# Where the device started, before the lab (or anyone) bound it.
vfio-setup restore "$device" >"$log" 2>&1
host_driver=$(driver_of "$device")
echo "# $device starts on '${host_driver:-no driver}'"
if [ -n "$host_driver" ] && [ "$host_driver" != vfio-pci ]; then
    ok "starts_on_host_driver"
else
    not_ok "starts_on_host_driver" "$device is on '${host_driver:-no driver}', not a host driver"
fi

# run: bound while CMD runs, with the BDF in the environment and appended;
# CMD's exit status comes back; restored afterwards.
vfio-setup run -d "$device" -- sh -c \
    'test "$(basename "$(readlink /sys/bus/pci/devices/$1/driver)")" = vfio-pci && test "$VFIO_SELFTESTS_BDF" = "$1" && exit 7' \
    sh >"$log" 2>&1
status=$?
after=$(driver_of "$device")
if [ "$status" = 7 ] && [ "$after" = "$host_driver" ]; then
    ok "run_binds_runs_and_restores"
else
    not_ok "run_binds_runs_and_restores" "exit $status (want 7 from CMD), driver after '$after' (want '$host_driver')"
fi

# A signal to the tool while CMD runs: restored, CMD's death by that signal
# reported as 128+N.
signal_case() {  # NAME SIGNAL EXPECTED_STATUS
    start_sleeping_cmd -d "$device"
    if wait_for_cmd "$device"; then
        kill "-$2" "$tool"
        wait "$tool"
        status=$?
        after=$(driver_of "$device")
        if [ "$status" = "$3" ] && [ "$after" = "$host_driver" ]; then
            ok "$1"
        else
            not_ok "$1" "exit $status (want $3), driver after '$after' (want '$host_driver')"
        fi
    else
        kill -KILL "$tool" 2>/dev/null
        not_ok "$1" "the device never reached vfio-pci"
    fi
}
signal_case run_restores_on_sigint INT 130
signal_case run_restores_on_sigterm TERM 143

# SIGKILL of the tool itself: the state it wrote first lets restore finish
# the job; a second restore has nothing to do.
start_sleeping_cmd -d "$device"
if wait_for_cmd "$device"; then
    sigkill_tool
    held=$(driver_of "$device")
    vfio-setup restore "$device" >"$log" 2>&1
    status=$?
    after=$(driver_of "$device")
    if [ "$held" = vfio-pci ] && [ "$status" = 0 ] && [ "$after" = "$host_driver" ]; then
        ok "restore_after_sigkill"
    else
        not_ok "restore_after_sigkill" "after SIGKILL on '$held'; restore exit $status, driver '$after' (want '$host_driver')"
    fi
else
    kill -KILL "$tool" 2>/dev/null
    not_ok "restore_after_sigkill" "the device never reached vfio-pci"
fi

vfio-setup restore "$device" >"$log" 2>&1
status=$?
after=$(driver_of "$device")
if [ "$status" = 0 ] && grep -q "nothing to restore" "$log" && [ "$after" = "$host_driver" ]; then
    ok "second_restore_is_a_no_op"
else
    not_ok "second_restore_is_a_no_op" "exit $status, driver '$after'"
fi

# Refusals: one clear line, nothing changed.
refused() {  # NAME EXPECTED_TEXT COMMAND...
    name=$1
    expected=$2
    shift 2
    "$@" >"$log" 2>&1
    status=$?
    after=$(driver_of "$device")
    if [ "$status" = 1 ] && grep -q "$expected" "$log" && [ "$after" = "$host_driver" ] &&
        [ ! -e "$state_dir/$device.state" ] && [ ! -e "$state_dir/$conflict.state" ]; then
        echo "# $(head -n1 "$log")"
        ok "$name"
    else
        not_ok "$name" "exit $status (want 1), message must say '$expected', driver '$after' (want '$host_driver')"
    fi
}
refused refuses_malformed_bdf "bad BDF" vfio-setup bind 00:06
refused refuses_absent_device "no PCI device" vfio-setup bind 0000:00:1e.7
refused refuses_non_root "must run as root" su -s /bin/sh nobody -c "vfio-setup bind $device"
refused refuses_vfs_without_sriov "has no SR-IOV" vfio-setup vfs "$device" 1
if [ -n "$conflict" ]; then
    refused refuses_group_with_host_driver "also holds devices on host drivers" vfio-setup bind "$conflict"
else
    skip refuses_group_with_host_driver "no --conflict device given (the lab's default machine has none)"
fi

# A torn or edited state file is reported, and nothing acts on it.
mkdir -p "$state_dir"
printf 'vfio-setup device state v1\nbdf=%s\ndriver=e1000' "$device" >"$state_dir/$device.state"
vfio-setup restore "$device" >"$log" 2>&1
restore_status=$?
vfio-setup bind "$device" >>"$log" 2>&1
bind_status=$?
after=$(driver_of "$device")
if [ "$restore_status" = 1 ] && [ "$bind_status" = 1 ] && grep -q "is corrupt" "$log" && [ "$after" = "$host_driver" ]; then
    echo "# $(head -n1 "$log")"
    ok "corrupt_state_is_reported_not_trusted"
else
    not_ok "corrupt_state_is_reported_not_trusted" "restore exit $restore_status, bind exit $bind_status (want 1, 1), driver '$after'"
fi
rm -f "$state_dir/$device.state"

# hugepages: reserve more, then give back exactly the previous counts.
pool=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ -e "$pool" ]; then
    before=$(cat "$pool")
    want=$((before + 8))
    vfio-setup hugepages --2m "$want" --1g 0 >"$log" 2>&1
    reserve_status=$?
    reserved=$(cat "$pool")
    vfio-setup hugepages --release >>"$log" 2>&1
    release_status=$?
    released=$(cat "$pool")
    if [ "$reserve_status" = 0 ] && [ "$reserved" = "$want" ] && [ "$release_status" = 0 ] && [ "$released" = "$before" ]; then
        echo "# 2 MiB pages: $before -> $reserved -> $released"
        ok "hugepages_reserve_and_release"
    else
        not_ok "hugepages_reserve_and_release" "reserve exit $reserve_status ($reserved, want $want), release exit $release_status ($released, want $before)"
    fi
else
    skip "hugepages_reserve_and_release" "no 2 MiB HugeTLB pool on this kernel"
fi

# SR-IOV: VFs made by run --vfs, and put back by run itself, by restore
# after a SIGKILL, with vfio-pci's enable_sriov as it was.
sriov_cases() {
    numvfs=/sys/bus/pci/devices/$sriov_pf/sriov_numvfs
    enable=/sys/module/vfio_pci/parameters/enable_sriov
    vfio-setup restore "$sriov_pf" >"$log" 2>&1
    pf_driver=$(driver_of "$sriov_pf")
    vfs_before=$(cat "$numvfs")
    enable_before=$(cat "$enable" 2>/dev/null)
    total=$(cat "/sys/bus/pci/devices/$sriov_pf/sriov_totalvfs")
    echo "# PF $sriov_pf on '${pf_driver:-no driver}', $vfs_before of $total VFs, vfio-pci enable_sriov '$enable_before'"

    vfio-setup run -d "$sriov_pf" --vfs 2 -- sh -c '
        vf=$(basename "$(readlink /sys/bus/pci/devices/$1/virtfn1)")
        test "$(cat /sys/bus/pci/devices/$1/sriov_numvfs)" = 2 &&
        test "$(basename "$(readlink /sys/bus/pci/devices/$vf/driver)")" = vfio-pci && exit 7' sh >"$log" 2>&1
    status=$?
    if [ "$status" = 7 ] && [ "$(cat "$numvfs")" = "$vfs_before" ] && [ "$(driver_of "$sriov_pf")" = "$pf_driver" ] &&
        [ "$(cat "$enable" 2>/dev/null)" = "$enable_before" ]; then
        echo "# $(grep -m1 ' VFs: ' "$log")"
        ok "vfs_run_makes_and_removes_vfs"
    else
        not_ok "vfs_run_makes_and_removes_vfs" "exit $status (want 7: 2 VFs, VF 1 on vfio-pci), after: $(cat "$numvfs") VFs (want $vfs_before), driver '$(driver_of "$sriov_pf")', enable_sriov '$(cat "$enable" 2>/dev/null)' (want '$enable_before')"
    fi

    start_sleeping_cmd -d "$sriov_pf" --vfs 3
    made=""
    for _ in $(seq 100); do
        [ "$(cat "$numvfs")" = 3 ] && cmd_sleeping && made=yes && break
        sleep 0.1
    done
    sigkill_tool
    held=$(cat "$numvfs")
    vfio-setup restore "$sriov_pf" >"$log" 2>&1
    status=$?
    if [ -n "$made" ] && [ "$status" = 0 ] && [ "$(cat "$numvfs")" = "$vfs_before" ] &&
        [ "$(driver_of "$sriov_pf")" = "$pf_driver" ] && [ "$(cat "$enable" 2>/dev/null)" = "$enable_before" ]; then
        echo "# $(grep -m1 'VFs' "$log")"
        ok "vfs_restore_after_sigkill"
    else
        not_ok "vfs_restore_after_sigkill" "after SIGKILL with $held VFs (want 3); restore exit $status, $(cat "$numvfs") VFs (want $vfs_before), driver '$(driver_of "$sriov_pf")', enable_sriov '$(cat "$enable" 2>/dev/null)'"
    fi

    vfio-setup vfs "$sriov_pf" $((total + 1)) >"$log" 2>&1
    status=$?
    if [ "$status" = 1 ] && grep -q "offers $total VFs" "$log" && [ "$(cat "$numvfs")" = "$vfs_before" ] &&
        [ ! -e "$state_dir/$sriov_pf.state" ]; then
        echo "# $(head -n1 "$log")"
        ok "vfs_refuses_more_than_total"
    else
        not_ok "vfs_refuses_more_than_total" "exit $status (want 1), message must say 'offers $total VFs'"
    fi
    # Left as the lab had it: held on vfio-pci.
    vfio-setup bind "$sriov_pf" >"$log" 2>&1
}
if [ -n "$sriov_pf" ]; then
    sriov_cases
else
    for name in vfs_run_makes_and_removes_vfs vfs_restore_after_sigkill vfs_refuses_more_than_total; do
        skip "$name" "no --sriov PF given"
    done
fi

rm -f "$log" "$cmd_pid_file"
echo "# Totals: pass:$((number - failed - skipped)) fail:$failed xfail:0 xpass:0 skip:$skipped error:0"
[ "$failed" = 0 ] || exit 1
exit 0
