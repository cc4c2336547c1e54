#!/usr/bin/env python3
"""Vector search side by side: rag-agent's exact index (LocalVectorIndex,
through the `vector_speed` example) next to faiss's exact IndexFlatIP and
hnswlib's HNSW graph, on the same unit vectors and queries, top-10, one
query at a time on one thread. Recall@10 is against the exact neighbours
numpy computes.

    cargo build --release -p rag-local --example vector_speed
    /tmp/peers/bin/pip install numpy faiss-cpu==1.15.1 hnswlib==0.8.0 matplotlib
    /tmp/peers/bin/python benches/vectors.py --sizes 100000 1000000 --out docs/bench

Random vectors are Gaussian, normalised: the hard case for graph indexes
(no clusters). Prints JSON and writes vectors.json and vectors.png to --out.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit(rows, dim, rng):
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def exact_truth(base, queries, k=10):
    truth = np.empty((len(queries), k), dtype=np.uint32)
    for start in range(0, len(queries), 64):
        scores = queries[start:start + 64] @ base.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        truth[start:start + 64] = np.take_along_axis(top, order, axis=1)
    return truth


def percentiles(latencies_ms):
    xs = np.array(latencies_ms)
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 99))


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_faiss(base, queries, truth):
    import faiss
    faiss.omp_set_num_threads(1)
    start = time.perf_counter()
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    build = time.perf_counter() - start
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None, :], 10)
        latencies.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    p50, p99 = percentiles(latencies)
    return {"build_seconds": build, "p50_ms": p50, "p99_ms": p99, "recall_at_10": recall(found, truth)}


def bench_hnswlib(base, queries, truth, build_threads):
    import hnswlib
    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=200)
    index.set_num_threads(build_threads)
    index.add_items(base)
    build = time.perf_counter() - start
    index.set_num_threads(1)
    index.set_ef(64)
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        ids, _ = index.knn_query(q, k=10)
        latencies.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    p50, p99 = percentiles(latencies)
    return {"build_seconds": build, "build_threads": build_threads, "M": 16, "ef_construction": 200,
            "ef_search": 64, "p50_ms": p50, "p99_ms": p99, "recall_at_10": recall(found, truth)}


def bench_ours(work, dim):
    binary = os.path.join(ROOT, "target", "release", "examples", "vector_speed")
    out = subprocess.check_output([binary, str(dim), os.path.join(work, "base.f32"),
                                   os.path.join(work, "queries.f32"), os.path.join(work, "truth.u32")], text=True)
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-max", type=int, default=100_000,
                        help="largest size to build hnswlib for (its build is the slow part)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(7)
    rows = []
    for size in args.sizes:
        work = tempfile.mkdtemp(prefix="rag-vectors-")
        base = unit(size, args.dim, rng)
        queries = unit(args.queries, args.dim, rng)
        truth = exact_truth(base, queries)
        base.tofile(os.path.join(work, "base.f32"))
        queries.tofile(os.path.join(work, "queries.f32"))
        truth.tofile(os.path.join(work, "truth.u32"))
        row = {"vectors": size, "dimension": args.dim, "queries": args.queries,
               "rag_agent_exact": bench_ours(work, args.dim),
               "faiss_flat": bench_faiss(base, queries, truth)}
        if size <= args.hnsw_max:
            row["hnswlib"] = bench_hnswlib(base, queries, truth, build_threads=os.cpu_count())
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        for name in ("base.f32", "queries.f32", "truth.u32"):
            os.remove(os.path.join(work, name))
    report = {"cpus": os.cpu_count(), "rows": rows}
    with open(os.path.join(args.out, "vectors.json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(rows, args.out)
    print(json.dumps(report, indent=2))


def plot(rows, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.4), squeeze=False)
    for ax, row in zip(axes[0], rows):
        names = [n for n in ("rag_agent_exact", "faiss_flat", "hnswlib") if n in row]
        labels = {"rag_agent_exact": "rag-agent\nexact", "faiss_flat": "faiss\nflat", "hnswlib": "hnswlib\nHNSW"}
        p50 = [row[n]["p50_ms"] for n in names]
        p99 = [row[n]["p99_ms"] for n in names]
        x = np.arange(len(names))
        ax.bar(x - 0.2, p50, 0.4, label="p50", color="#2458d6")
        ax.bar(x + 0.2, p99, 0.4, label="p99", color="#9db5ef")
        ax.set_xticks(x, [f"{labels[n]}\nrecall {row[n]['recall_at_10']:.2f}" for n in names])
        ax.set_ylabel("ms per top-10 query (1 thread)")
        ax.set_title(f"{row['vectors']:,} x {row['dimension']}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "vectors.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
