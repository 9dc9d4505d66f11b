#!/usr/bin/env bash
# Peak memory of a command, two ways: GNU time's "Maximum resident set size" (the largest single process of the
# tree: what `/usr/bin/time -v` reports) and the machine's memory in use (MemTotal - MemAvailable) at its peak,
# above what was in use when the command started, sampled every 0.5 s: the sum over every process at once
# (`make bench-cpu` runs one worker process per loaded target). Both in MB (10^6 bytes).
#   bench/peak_memory.sh make bench-cpu
set -euo pipefail
used_kb() { awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {print t - a}' /proc/meminfo; }
start=$(used_kb)
peak_file=$(mktemp)
echo "$start" > "$peak_file"
( while sleep 0.5; do now=$(used_kb); [ "$now" -gt "$(cat "$peak_file")" ] && echo "$now" > "$peak_file"; done ) &
watcher=$!
log=$(mktemp)
status=0
/usr/bin/time -v -o "$log" "$@" || status=$?
kill "$watcher" 2>/dev/null || true
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$log")
wall=$(awk -F'): ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
echo "peak_memory: largest process (GNU time max RSS) $((rss_kb * 1024 / 1000000)) MB;" \
     "machine memory in use above the start, at its peak $((($(cat "$peak_file") - start) * 1024 / 1000000)) MB;" \
     "wall ${wall}; exit ${status}"
rm -f "$peak_file" "$log"
exit "$status"
