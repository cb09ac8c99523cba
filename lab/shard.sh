#!/usr/bin/env bash
# Split a lab plan over machines (lab/run --vms): each entry goes to one
# machine, and each machine's plan keeps the entries' order.
#
#   lab/shard.sh PLAN WEIGHTS DIR...
#
# WEIGHTS holds "NAME SECONDS" lines, the programs' times in earlier runs
# (lab/run keeps them per QEMU and IOMMU); a program it lacks counts as the
# median of those it has, or 1 s without any. The longest programs are
# placed first, each on the machine with the least time so far (LPT):
# first the +iommu-fault-log programs, which run one after another on a
# machine (their time alone), then the rest by each machine's whole time.
# Writes DIR/plan for each DIR, and prints a line per machine: its entries
# and estimated seconds.
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: lab/shard.sh PLAN WEIGHTS DIR..." >&2; exit 2; }
plan=$1
weights=$2
shift 2
[ -f "$weights" ] || weights=/dev/null
split=$(mktemp)
trap 'rm -f "$split"' EXIT

awk -v machines=$# '
    function median(   n, i, j, t, v) {
        n = 0
        for (i in known) v[++n] = known[i]
        if (n == 0) return 1
        for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
        return v[int((n + 1) / 2)]
    }
    FILENAME == ARGV[1] { if (NF >= 2 && $2 ~ /^[0-9.]+$/) known[$1] = $2 + 0; next }
    /^[[:space:]]*(#|$)/ { next }
    { n++; line[n] = $0; name[n] = $1; fault[n] = ($0 ~ /(^|[[:space:]])\+iommu-fault-log([[:space:]]|$)/) }
    END {
        fallback = median()
        for (i = 1; i <= n; i++) weight[i] = (name[i] in known) ? known[name[i]] : fallback
        for (m = 1; m <= machines; m++) { load[m] = 0; chain[m] = 0 }
        # Phase 1 the fault programs (by chain), phase 2 the rest (by load).
        for (phase = 1; phase <= 2; phase++) {
            for (;;) {
                best = 0
                for (i = 1; i <= n; i++)
                    if (!(i in where) && fault[i] == (phase == 1) && (best == 0 || weight[i] > weight[best])) best = i
                if (best == 0) break
                target = 1
                for (m = 2; m <= machines; m++) {
                    if (phase == 1 && chain[m] < chain[target]) target = m
                    if (phase == 2 && load[m] < load[target]) target = m
                }
                where[best] = target
                load[target] += weight[best]
                if (phase == 1) chain[target] += weight[best]
            }
        }
        for (i = 1; i <= n; i++) print where[i] "\t" line[i]
        for (m = 1; m <= machines; m++) printf "#\t%d\t%.0f\n", m, load[m]
    }
' "$weights" "$plan" >"$split"
status=0
m=0
for dir in "$@"; do
    m=$((m + 1))
    awk -F'\t' -v m=$m '$1 == m { sub(/^[^\t]*\t/, ""); print }' "$split" >"$dir/plan" || status=1
    awk -F'\t' -v m=$m -v dir="$dir" '$1 == "#" && $2 == m { est = $3 } $1 == m { n++ }
        END { printf "lab: machine %d (%s): %d entries, about %d s of program time\n", m, dir, n, est }' "$split" >&2
done
exit "$status"
