#!/usr/bin/env bash
# Mutation testing of the core: bash scripts/mutants.sh [--unit] [FILE...]
#
# Runs cargo-mutants on FILEs (default: the routing, health, usage, parsing,
# failover and client-limit logic below) and prints caught / missed / viable.
# A missed mutant is a behaviour no test pins: write the test, or mark the
# mutant as equivalent with #[mutants::skip] or in .cargo/mutants.toml,
# with the reason. Not part of .ci/run: the whole suite per mutant takes
# tens of minutes on two cores. Run it after changing core logic, on the
# files you changed.
#
# --unit judges by the unit tests alone (cargo test --lib): a few times
# faster, and a lower bound on what the whole suite catches.
set -euo pipefail
cd "$(dirname "$0")/.."

unit=0
files=()
for a in "$@"; do
  case "$a" in
    --unit) unit=1 ;;
    *) files+=("$a") ;;
  esac
done
if ((${#files[@]} == 0)); then
  files=(
    src/routing/select.rs src/routing/health.rs src/routing/table.rs
    src/usage/cell.rs src/store/window.rs src/payload/scan.rs
    src/relay/sse.rs src/upstream/failover.rs src/clients.rs
  )
fi

command -v cargo-mutants >/dev/null 2>&1 || cargo install --locked cargo-mutants
# mold links the test binaries several times faster, where it is installed.
if command -v mold >/dev/null 2>&1; then
  export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold"
fi
# No debug info: smaller objects, faster incremental builds per mutant.
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0

args=(--no-shuffle -j 2 -o target/mutants)
for f in "${files[@]}"; do args+=(-f "$f"); done
if ((unit)); then args+=(--cargo-test-arg=--lib); fi

mkdir -p target
status=0
cargo mutants "${args[@]}" || status=$?
out=target/mutants/mutants.out
# Lines in a result file; grep -c prints 0 (and fails) on an empty one.
count() {
  if [ -f "$out/$1.txt" ]; then grep -c . "$out/$1.txt" || true; else echo 0; fi
}
caught=$(count caught)
missed=$(count missed)
timeout=$(count timeout)
viable=$((caught + missed + timeout))
echo
echo "caught $caught, missed $missed, timeout $timeout, viable $viable (unviable $(count unviable))"
if ((viable > 0)); then
  echo "caught: $(((caught + timeout) * 100 / viable)) %"
fi
if ((missed > 0)); then
  echo "missed:"
  sed 's/^/  /' "$out/missed.txt"
fi
# cargo-mutants exits 2 when mutants were missed: that is the report, not a failure.
((status == 0 || status == 2)) || exit "$status"
