#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with libFuzzer, from
# the seeds in fixtures/fuzz/TARGET (new inputs go to a scratch corpus, not
# the repository). A crash, a hang (timeout), running out of memory (oom),
# a leak, or the fuzzer exiting non-zero for any other reason stops the
# script with its input under fuzz/artifacts/TARGET/; turn each into a
# regression test.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz;
# installs cargo-fuzz if missing. `-O` builds with fuzz/Cargo.toml's
# release profile (debug assertions and overflow checks on, as cargo-fuzz
# would, except in mail-parser). The build goes to its own target
# directory, since it instruments every crate (RocksDB's C++ included).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(smtp_session notification_json http_inputs config dsn scenario imap_message imap_commands)
TARGET_DIR=${FUZZ_TARGET_DIR:-/var/cache/imgate/fuzz-target}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
scripts/setup
cargo +nightly fuzz build -O --target-dir "$TARGET_DIR"
for t in "${TARGETS[@]}"; do
  scratch=$(mktemp -d)
  echo "== $t: ${SECONDS_EACH}s"
  set +e
  cargo +nightly fuzz run -O --target-dir "$TARGET_DIR" "$t" "$scratch" "fixtures/fuzz/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=10 >"$scratch.log" 2>&1
  status=$?
  set -e
  grep -E "^#[0-9]+ +DONE|Done [0-9]+ runs|ERROR|panicked|SUMMARY" "$scratch.log" || true
  rm -rf "$scratch"
  found=$(ls "fuzz/artifacts/$t" 2>/dev/null | grep -E '^(crash|timeout|oom|leak)-' || true)
  if [ -n "$found" ] || [ "$status" -ne 0 ]; then
    tail -20 "$scratch.log" >&2
    echo "FAILED in $t (exit $status): ${found:-no artifact} in fuzz/artifacts/$t" >&2
    rm -f "$scratch.log"
    exit 1
  fi
  rm -f "$scratch.log"
done
echo "fuzz: ${#TARGETS[@]} targets, ${SECONDS_EACH}s each, no crash, hang or out-of-memory"
