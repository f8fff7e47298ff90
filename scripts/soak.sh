#!/usr/bin/env bash
# Soak check (issue 18): a loopback testnet with storage under a steady
# mixed load (messages, reply-block answers, chunk and slot puts, gets,
# slot polls) for DURATION, one node kill -9ed and restarted every
# RESTART_EVERY (default 5m). Fails unless every acknowledged put is
# fetched back and held by its K replicas, and every node's memory is
# flat after warm-up; prints a table of figures (also written to
# $SOAK_REPORT when set).
#
#   scripts/soak.sh 4m 60s     # what CI runs (about 6 minutes in all)
#   scripts/soak.sh 30m        # the closing note's run
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 DURATION [RESTART_EVERY]   (durations like 240s, 30m, 1h)" >&2
    exit 2
fi
valid() { [[ "$1" =~ ^[0-9]+[smh]?$ ]]; }
for d in "$@"; do
    valid "$d" || { echo "$0: '$d' is not a duration like 240s, 30m or 1h" >&2; exit 2; }
done

# Reuse a persistent target directory when the machine has one, as
# .ci/run does.
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /work/target ] && [ -w /work/target ]; then
    export CARGO_TARGET_DIR=/work/target
fi

export SOAK_DURATION="$1"
export SOAK_RESTART_EVERY="${2:-5m}"
exec cargo test -p mtos-tests --test soak -- --ignored --nocapture --test-threads 1
