#!/usr/bin/env python3
"""Question latency while ingestion runs, on the embedded default.

Indexes a base of Rust book pages, then measures POST /query from
`--clients` concurrent clients twice: on the idle index, and while a batch
of `--ingest-pages` further pages is uploaded and indexed in the
background. Reports p50/p90/p99 of each phase and the ingest throughput
(chunks/s) of the background batch, with the CPU model.

    cargo build -p rag-agent            # or --release; say which in the notes
    python3 benches/query_during_ingest.py --bin target/debug/rag-agent

Run it against two binaries in one session to compare before and after.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from embedded import QUESTIONS, book_pages, percentile, request, upload  # noqa: E402


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def busy(base):
    return sum(
        len(request("GET", f"{base}/documents?status={s}&limit=1000")["items"])
        for s in ("PENDING", "PROCESSING")
    )


def ask_until(base, clients, stop, rate=None):
    """Runs `clients` threads asking questions until `stop()` is true: each
    asks again as soon as it has its answer, or, with `rate`, on a fixed
    schedule that together makes `rate` questions a second (an open loop,
    so both builds are measured under the same query load)."""
    latencies, errors = [], []
    lock = threading.Lock()
    interval = clients / rate if rate else 0.0

    def client(n):
        i = n
        next_at = time.perf_counter() + interval * n / clients
        while not stop():
            if interval:
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                next_at += interval
            body = json.dumps({"query": QUESTIONS[i % len(QUESTIONS)]}).encode()
            i += clients
            started = time.perf_counter()
            try:
                request("POST", f"{base}/query", body, {"content-type": "application/json"})
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
            except Exception as e:  # noqa: BLE001 - counted, reported
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def summary(latencies, errors):
    if not latencies:
        return {"requests": 0, "errors": len(errors)}
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/rag-agent")
    ap.add_argument("--model-dir", default=os.path.expanduser("~/.cache/rag-agent/models/all-MiniLM-L6-v2"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--base-pages", type=int, default=30)
    ap.add_argument("--ingest-pages", type=int, default=40)
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, help="questions per second in all (default: as fast as answered)")
    args = ap.parse_args()

    pages = book_pages()
    base_pages = pages[: args.base_pages]
    batch = pages[args.base_pages : args.base_pages + args.ingest_pages]
    data_dir = tempfile.mkdtemp(prefix="rag-qdi-")
    server = subprocess.Popen(
        [args.bin, "serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir", data_dir, "--model-dir", args.model_dir],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    report = {"cpu": cpu_model(), "cpus": os.cpu_count(), "binary": args.bin, "clients": args.clients, "rate": args.rate}
    try:
        base = server.stdout.readline().strip().removeprefix("rag-agent listening on ")
        for page in base_pages:
            upload(base, page)
        while busy(base):
            time.sleep(0.2)

        deadline = time.perf_counter() + args.idle_seconds
        report["idle"] = summary(*ask_until(base, args.clients, lambda: time.perf_counter() > deadline, args.rate))

        before = {d["id"] for d in request("GET", f"{base}/documents?limit=1000")["items"]}
        started = time.perf_counter()
        for page in batch:
            upload(base, page)
        finished = {}

        def ingest_done():
            if "at" in finished:
                return True
            if busy(base) == 0:
                finished["at"] = time.perf_counter()
                return True
            return False

        # Polling for the end of the ingest costs two listings per check;
        # a watcher thread does it so the clients' loop stays cheap.
        watcher_stop = threading.Event()

        def watch():
            while not ingest_done():
                time.sleep(0.25)
            watcher_stop.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        latencies, errors = ask_until(base, args.clients, watcher_stop.is_set, args.rate)
        watcher.join()
        elapsed = finished["at"] - started
        docs = [d for d in request("GET", f"{base}/documents?limit=1000")["items"] if d["id"] not in before]
        chunks = sum(d["chunk_count"] for d in docs)
        report["during_ingest"] = summary(latencies, errors)
        report["ingest"] = {
            "pages": len(batch), "chunks": chunks, "seconds": round(elapsed, 2),
            "chunks_per_s": round(chunks / elapsed, 2),
            "failed": sum(1 for d in docs if d["status"] != "INDEXED"),
        }
    finally:
        server.terminate()
        server.wait()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
