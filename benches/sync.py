#!/usr/bin/env python3
"""Sync throughput on the embedded default, in one run on one machine: the
Cargo book's directory (every .html page) ingested four ways, each into a
fresh server, then synced again unchanged:

1. `rag-agent ingest DIR`: the HTTP upload path (a form per file, each
   waited for), the baseline.
2. `rag-agent sync DIR`: the client-side sync (files hashed, compared with
   the server's documents, uploaded), first run and unchanged re-run.
3. `rag-agent sync file://DIR`: an ingestion job on the server (the
   directory under RAG_AGENT_SYNC_ROOTS), first run and unchanged re-run.

Run from the repository root after a release build:

    cargo build --release -p rag-agent
    python3 benches/sync.py

Prints a JSON report; docs/BENCHMARKS.md records the numbers.
"""

import glob
import json
import os
import subprocess
import tempfile
import time
import urllib.request

BINARY = os.path.abspath("target/release/rag-agent")


def cargo_book():
    sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    return os.path.join(sysroot, "share/doc/rust/html/cargo")


def start(data_dir, env):
    process = subprocess.Popen(
        [BINARY, "serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn", **env},
        text=True,
    )
    url = process.stdout.readline().strip().removeprefix("rag-agent listening on ")
    while True:
        with urllib.request.urlopen(f"{url}/health") as response:
            if json.load(response)["status"] != "starting":
                return process, url
        time.sleep(0.05)


def chunks(url):
    total, cursor = 0, None
    while True:
        query = "limit=1000" + (f"&cursor={cursor}" if cursor else "")
        with urllib.request.urlopen(f"{url}/documents?{query}") as response:
            page = json.load(response)
        total += sum(d["chunk_count"] for d in page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total


def timed(url, *args):
    started = time.perf_counter()
    done = subprocess.run(
        [BINARY, *args, "--json"],
        env={**os.environ, "RAG_AGENT_URL": url},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{args}: exit {done.returncode}\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def main():
    root = cargo_book()
    pages = len(glob.glob(os.path.join(root, "**/*.html"), recursive=True))
    report = {"pages": pages, "runs": []}
    for way, first, again in [
        ("ingest (HTTP upload path)", ["ingest", root, "--include", "*.html"], None),
        ("sync DIR (client side)", ["sync", root, "--include", "**/*.html", "--include", "*.html"], True),
        ("sync file:// (ingestion job)", ["sync", f"file://{root}", "--include", "**/*.html", "--include", "*.html"], True),
    ]:
        with tempfile.TemporaryDirectory() as data:
            process, url = start(data, {"RAG_AGENT_SYNC_ROOTS": os.path.dirname(root)})
            try:
                seconds, _ = timed(url, *first)
                n = chunks(url)
                run = {
                    "way": way,
                    "seconds": round(seconds, 2),
                    "chunks": n,
                    "pages_per_second": round(pages / seconds, 2),
                    "chunks_per_second": round(n / seconds, 1),
                }
                if again:
                    seconds, result = timed(url, *first)
                    counts = result["counts"]
                    run["unchanged_rerun_seconds"] = round(seconds, 2)
                    run["unchanged_rerun_counts"] = counts
                report["runs"].append(run)
            finally:
                process.terminate()
                process.wait()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
