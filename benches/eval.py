#!/usr/bin/env python3
"""Retrieval and answer quality of the embedded default, for one or more
builds side by side in one run on one machine: each binary gets a fresh
data directory, ingests a book from the local Rust documentation (every
content page, eight uploads in flight), and `rag-agent eval` asks the
question set in every mode. Prints one table row per binary and mode, and
the whole report as JSON on request.

Run from the repository root after a release build (copy the binary you
compare against first, for instance a build of the previous commit):

    cargo build --release -p rag-agent
    python3 benches/eval.py --bin target/release/rag-agent \
        --questions tests/eval/rust-book.jsonl --book book
    python3 benches/eval.py --bin /tmp/before/rag-agent --bin target/release/rag-agent \
        --questions tests/eval/cargo-book.jsonl --book cargo

Extra arguments after `--` go to `rag-agent eval` (for instance `--rerank`).
docs/BENCHMARKS.md records the numbers.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid


def book_pages(book):
    sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    root = os.path.join(sysroot, "share/doc/rust/html", book)
    pages = []
    for dirpath, dirs, names in os.walk(root):
        # The Rust book keeps its old editions in folders of their own.
        dirs[:] = [d for d in dirs if not d.endswith("-edition")]
        for name in sorted(names):
            if not name.endswith(".html") or name in ("print.html", "toc.html", "404.html"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            if len(data) >= 6000 and b'http-equiv="refresh"' not in data:
                pages.append(path)
    return sorted(pages), root


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read() or b"null")


def upload(base, root, path):
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        data = f.read()
    # The page's path under the book is its source, as the question sets
    # name it (`reference/manifest.html`; the Rust book's pages are flat).
    name = os.path.relpath(path, root)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: text/html\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return request(
        "POST",
        f"{base}/documents/upload",
        body,
        {"content-type": f"multipart/form-data; boundary={boundary}"},
    )


def run(binary, pages, root, questions, eval_args, model_dir):
    data_dir = tempfile.mkdtemp(prefix="rag-eval-")
    server = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir", data_dir, "--model-dir", model_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        base = server.stdout.readline().strip().removeprefix("rag-agent listening on ")
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: upload(base, root, p), pages))
        while True:
            busy = sum(
                len(request("GET", f"{base}/documents?status={s}&limit=1000")["items"])
                for s in ("PENDING", "PROCESSING")
            )
            if busy == 0:
                break
            time.sleep(0.2)
        ingest_s = time.perf_counter() - started
        docs = request("GET", f"{base}/documents?limit=1000")["items"]
        out = subprocess.run(
            [binary, "eval", "--url", base, "--questions", questions, "--json", *eval_args],
            capture_output=True,
            text=True,
        )
        report = json.loads(out.stdout)
        report["ingest"] = {
            "documents": len(docs),
            "chunks": sum(d["chunk_count"] for d in docs),
            "seconds": round(ingest_s, 1),
        }
        return report
    finally:
        server.terminate()
        server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", help="a rag-agent binary; repeat to compare")
    ap.add_argument("--questions", default="tests/eval/rust-book.jsonl")
    ap.add_argument("--book", default="book", help="a book under share/doc/rust/html: book, cargo, ...")
    ap.add_argument(
        "--model-dir", default=os.path.expanduser("~/.cache/rag-agent/models/all-MiniLM-L6-v2")
    )
    ap.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args, eval_args = ap.parse_known_args()
    eval_args = [a for a in eval_args if a != "--"]
    binaries = args.bin or ["target/release/rag-agent"]
    pages, root = book_pages(args.book)
    cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip()
    print(f"{len(pages)} pages of {args.book}, {os.cpu_count()} x {cpu}", file=sys.stderr)
    reports = {}
    print("| build | mode | hit@1 | hit@5 | MRR@10 | nDCG@10 | keyword recall | mean ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for binary in binaries:
        report = run(binary, pages, root, args.questions, eval_args, args.model_dir)
        reports[binary] = report
        for mode in report["summary"]:
            cells = [mode.get(k) for k in ("hit_at_1", "hit_at_5", "mrr_at_10", "ndcg_at_10", "keyword_recall")]
            shown = " | ".join("-" if c is None else f"{c:.3f}" for c in cells)
            print(f"| {binary} | {mode['mode']} | {shown} | {mode.get('mean_latency_ms') or 0:.0f} |", flush=True)
        print(f"ingest: {report['ingest']}", file=sys.stderr)
    if args.json:
        print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
