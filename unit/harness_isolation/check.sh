#!/bin/sh
# Runs the faulty tests through the harness and checks what it reported.
#   check.sh PROGRAM
set -u
program=$1
output=$("$program" -T 1 0000:00:04.0)
status=$?
echo "$output"
fail=0
expect() {
    if ! printf '%s\n' "$output" | grep -qE "$1"; then
        echo "check: missing: $1"
        fail=1
    fi
}
expect '^1\.\.9$'
expect '^ok 1 harness_isolation\.passes_before$'
# Without sanitizers the signal kills the test; ASan catches it and exits 1.
expect '^# (killed by signal 11|.*AddressSanitizer)'
expect '^not ok 2 harness_isolation\.crashes$'
expect '^# no result after 1 s; killed$'
expect '^not ok 3 harness_isolation\.hangs # TIMEOUT$'
expect '^# no result after 3 s; killed$'
expect '^not ok 4 harness_isolation\.hangs_with_a_longer_timeout # TIMEOUT$'
expect '^# .*on purpose'
expect '^not ok 5 harness_isolation\.fails$'
expect '^ok 6 harness_isolation\.skips # SKIP no such feature here$'
expect '^ok 7 harness_isolation\.passes_after$'
expect '^ok 8 harness_isolation\.notes_for_the_run$'
expect '^ok 9 harness_isolation\.sees_an_earlier_tests_note$'
expect '^# Totals: pass:4 fail:4 xfail:0 xpass:0 skip:1 error:0$'
[ "$status" = 1 ] || { echo "check: exit status $status, expected 1"; fail=1; }

# Bad selections and timeouts are errors (exit 1 and a message naming the
# word), never a run of nothing that passes.
refused() {
    words=$1
    shift
    message=$("$program" "$@" 0000:00:04.0 2>&1 >/dev/null)
    status=$?
    if [ "$status" != 1 ] || ! printf '%s\n' "$message" | grep -qF -- "$words"; then
        echo "check: '$*' gave exit status $status and '$message'; expected 1 and '$words'"
        fail=1
    fi
}
refused "-t typo matches no test" -t typo
refused "-f nofixture matches no test" -f nofixture
refused "-T wants a positive whole number of seconds, not '-1'" -T -1
refused "-T wants a positive whole number of seconds, not '0'" -T 0
exit $fail
