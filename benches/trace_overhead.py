#!/usr/bin/env python3
"""What exporting traces costs a request: POST /query on the embedded
default (hybrid, a few Rust book pages) with traces off and with every
request's spans exported over OTLP/HTTP to the in-repo receiver
(crates/aws-emulator/examples/otlp_receiver.rs), in one run, on the same
data directory, one client at a time, the two servers asked in turns so a
busy moment hits both alike. Reports p50/p99 of each, the difference of the
medians, the spans received, and the CPU model.

    cargo build -p rag-agent -p rag-aws-emulator --examples   # or --release
    python3 benches/trace_overhead.py --bin target/debug/rag-agent \
        --receiver target/debug/examples/otlp_receiver
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from auth_overhead import cpu_model, serve  # noqa: E402
from embedded import QUESTIONS, book_pages, percentile, request, upload  # noqa: E402


def ask(base, i):
    body = json.dumps({"query": QUESTIONS[i % len(QUESTIONS)]}).encode()
    started = time.perf_counter()
    request("POST", f"{base}/query", body, {"content-type": "application/json"})
    return (time.perf_counter() - started) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()

    receiver = subprocess.Popen([args.receiver], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    receiver_url = receiver.stdout.readline().strip().removeprefix("otlp receiver on ")
    with tempfile.TemporaryDirectory() as data_dir:
        server, base = serve(args.bin, data_dir, "none")
        for page in book_pages()[: args.pages]:
            upload(base, page)
        while any(
            request("GET", f"{base}/documents?status={s}&limit=1000")["items"]
            for s in ("PENDING", "PROCESSING")
        ):
            time.sleep(0.2)
        server.terminate()
        server.wait()
        # One server at a time on the data directory: each run is a fresh
        # start on the same index, asked alternately in blocks.
        latencies = {"off": [], "exported": []}
        env = {
            "off": {},
            "exported": {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver_url, "OTEL_BSP_SCHEDULE_DELAY": "200"},
        }
        blocks = 4
        for block in range(blocks):
            for name in ("off", "exported") if block % 2 == 0 else ("exported", "off"):
                server, base = serve(args.bin, data_dir, "none", env[name])
                for i in range(10):  # warm-up
                    ask(base, i)
                for i in range(args.rounds // blocks):
                    latencies[name].append(ask(base, i))
                server.terminate()
                server.wait()
    receiver.stdin.write("\n")
    receiver.stdin.flush()
    received = receiver.stdout.readline().strip()
    receiver.stdin.close()
    receiver.wait()
    print(f"CPU: {cpu_model()}")
    for name, values in latencies.items():
        print(f"/query traces {name:8}: p50 {percentile(values, 50):.2f} ms, p99 {percentile(values, 99):.2f} ms ({len(values)} requests)")
    print(f"difference of medians: {percentile(latencies['exported'], 50) - percentile(latencies['off'], 50):+.2f} ms")
    print(f"receiver: {received}")


if __name__ == "__main__":
    main()
