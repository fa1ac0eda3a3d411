#!/usr/bin/env bash
# The long crash test: the real binary under SMTP and IM2000 load is killed
# with SIGKILL at random moments and restarted on the same data directory
# KILLS times (default 100), then checked: every 250 filed exactly once,
# every 201 notified to the other domain's agent exactly once, no job left
# due or running, no panic in the log. The same test runs 8 kills in the
# suite (tests/it/crash.rs).
#
#   bench/crash_loop.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${1:-100}
scripts/setup
start=$(date +%s)
IMGATE_CRASH_KILLS=$KILLS cargo test --quiet --test it crash::kill_9_under_load_loses_nothing_acknowledged \
  -- --exact --nocapture 2>&1 | grep -E "kills:|test result|panicked|assert"
echo "crash loop: $KILLS kills in $(( $(date +%s) - start )) s"
