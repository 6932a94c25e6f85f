#!/usr/bin/env bash
# The benchmark, in one command: bash bench/run.sh [--quick] [--soak 5m]
# (or bash bench/run.sh --chaos 5m: healthy traffic beside a misbehaving provider;
#  bash bench/run.sh --rows: CPU per request by path, translations included)
# Installs what it needs (oha, nginx, redis-server), builds llm-router in
# release mode, runs bench/loadtest.rs on loopback, and writes the table to
# bench/results/latest.md. Then the criterion micro-benchmarks, unless
# --no-micro is given.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts nginx on port 80 after installing it; the benchmark runs its own.
  $SUDO systemctl stop nginx 2>/dev/null || $SUDO service nginx stop 2>/dev/null || true
fi
export PATH="$PATH:/usr/sbin:$HOME/.cargo/bin"
command -v oha >/dev/null 2>&1 || cargo install oha --locked

micro=1
out=bench/results/latest.md
args=()
for a in "$@"; do
  case "$a" in
    --no-micro) micro=0 ;;
    # The chaos row runs alone (5 minutes and more), into its own file.
    --chaos) micro=0; out=bench/results/chaos.md; args+=("$a") ;;
    # CPU per request by path (translations, cache hits, tracing): its own file.
    --rows) micro=0; out=bench/results/rows.md; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked --bin llm-router --example loadtest
mkdir -p bench/results
./target/release/examples/loadtest --out "$out" "${args[@]}"
if [ "$micro" = 1 ]; then
  cargo bench --locked --bench selection --bench relay
fi
