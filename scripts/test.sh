#!/usr/bin/env bash
# Runs the whole test suite: the one command README.md gives, and what CI runs.
# Installs what the tests need that the Rust toolchain does not bring:
# redis-server (store tests), chromium + node + playwright-core (dashboard).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if [ ! -d tests/ui/node_modules/playwright-core ]; then
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
fi
# The official SDKs, which judge the router's answers as clients parse them.
if [ ! -d tests/sdk/node_modules/openai ] || [ ! -d tests/sdk/node_modules/@anthropic-ai/sdk ]; then
  (cd tests/sdk && npm ci --no-audit --no-fund --loglevel=error)
fi
export LLM_ROUTER_REQUIRE_BROWSER=1 LLM_ROUTER_REQUIRE_SDK=1

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
