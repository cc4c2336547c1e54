#!/usr/bin/env python3
"""What checking a credential costs a request: POST /query, and the cheap
GET /documents?limit=1 where the check is a larger share, on the embedded
default with RAG_AGENT_AUTH=none and with RAG_AGENT_AUTH=api_key, in one
run, on the same data directory (a few Rust book pages), one client at a
time. Reports p50/p99 of each and the difference of the medians, with the
CPU model.

    cargo build -p rag-agent            # or --release; say which in the notes
    python3 benches/auth_overhead.py --bin target/debug/rag-agent
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from embedded import QUESTIONS, book_pages, percentile, request, upload  # noqa: E402


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def serve(binary, data_dir, auth, extra_env=None):
    env = dict(os.environ, RUST_LOG="warn", RAG_AGENT_AUTH=auth, **(extra_env or {}))
    server = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    base = server.stdout.readline().strip().removeprefix("rag-agent listening on ")
    while request("GET", f"{base}/health")["status"] == "starting":
        time.sleep(0.05)
    return server, base


def ask(base, headers, rounds):
    latencies = []
    for i in range(rounds):
        body = json.dumps({"query": QUESTIONS[i % len(QUESTIONS)]}).encode()
        started = time.perf_counter()
        request("POST", f"{base}/query", body, {"content-type": "application/json", **headers})
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def listing(base, headers, rounds):
    latencies = []
    for _ in range(rounds):
        started = time.perf_counter()
        request("GET", f"{base}/documents?limit=1", None, headers)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/debug/rag-agent")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        key = json.loads(subprocess.run(
            [args.bin, "keys", "create", "--tenant", "default", "--role", "reader", "--json", "--data-dir", data],
            check=True, capture_output=True, text=True,
        ).stdout)["key"]
        server, base = serve(args.bin, data, "none")
        for page in book_pages()[: args.pages]:
            upload(base, page)
        while any(
            request("GET", f"{base}/documents?status={s}&limit=1000")["items"]
            for s in ("PENDING", "PROCESSING")
        ):
            time.sleep(0.2)
        results = {}
        ask(base, {}, 30)  # warm up
        results["query none"] = ask(base, {}, args.rounds)
        results["list none"] = listing(base, {}, args.rounds * 5)
        server.terminate()
        server.wait()
        server, base = serve(args.bin, data, "api_key")
        headers = {"authorization": f"Bearer {key}"}
        ask(base, headers, 30)
        results["query api_key"] = ask(base, headers, args.rounds)
        results["list api_key"] = listing(base, headers, args.rounds * 5)
        server.terminate()
        server.wait()
    report = {"cpu": cpu_model(), "rounds": args.rounds}
    for name, values in results.items():
        report[name] = {"p50_ms": round(percentile(values, 50), 3), "p99_ms": round(percentile(values, 99), 3)}
    for what in ("query", "list"):
        report[f"{what} p50 difference ms"] = round(
            report[f"{what} api_key"]["p50_ms"] - report[f"{what} none"]["p50_ms"], 3
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
