#!/usr/bin/env python3
"""Vector search side by side: rag-agent's index (LocalVectorIndex through
the `vector_speed` example: its exact scan and its HNSW graph) next to
faiss's exact IndexFlatIP and hnswlib's HNSW graph, on the same unit
vectors and queries, top-10, one query at a time on one thread. Both
graphs use M 16 and ef_construction 100 and are built on one thread;
recall@10 is against the exact neighbours numpy computes.

    cargo build --release -p rag-local --example vector_speed
    /tmp/peers/bin/pip install numpy faiss-cpu==1.15.1 hnswlib==0.8.0 matplotlib
    /tmp/peers/bin/python benches/vectors.py --sizes 100000 1000000 --real /tmp/realvec --out docs/bench

Random vectors are Gaussian, normalised: the hard case for graph indexes
(no clusters, intrinsic dimension 384). Real vectors: `--real DIR` takes
DIR/base.f32 and DIR/queries.f32 as written by the `embed_speed` example,
followed by DIR/more.f32 when it is there (all-MiniLM-L6-v2 embeddings of
the sentences benches/std_doc_sentences.py picks).
Prints JSON and writes NAME.json and NAME.png to --out (--name, default
vectors).
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


def bench_hnswlib(base, queries, truth, efs):
    import hnswlib
    start = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=100)
    index.set_num_threads(1)
    index.add_items(base)
    build = time.perf_counter() - start
    runs = []
    for ef in efs:
        index.set_ef(ef)
        latencies, found = [], []
        for q in queries:
            t = time.perf_counter()
            ids, _ = index.knn_query(q, k=10)
            latencies.append((time.perf_counter() - t) * 1000)
            found.append(ids[0])
        p50, p99 = percentiles(latencies)
        runs.append({"ef_search": ef, "p50_ms": p50, "p99_ms": p99, "recall_at_10": recall(found, truth)})
    return {"build_seconds": build, "build_threads": 1, "M": 16, "ef_construction": 100, "runs": runs}


def bench_ours(work, dim, mode):
    binary = os.path.join(ROOT, "target", "release", "examples", "vector_speed")
    out = subprocess.check_output([binary, str(dim), os.path.join(work, "base.f32"),
                                   os.path.join(work, "queries.f32"), os.path.join(work, "truth.u32"), mode],
                                  text=True)
    return json.loads(out)


def bench_dataset(name, base, queries, efs, graphs, peer_graph):
    work = tempfile.mkdtemp(prefix="rag-vectors-")
    truth = exact_truth(base, queries)
    base.tofile(os.path.join(work, "base.f32"))
    queries.tofile(os.path.join(work, "queries.f32"))
    truth.tofile(os.path.join(work, "truth.u32"))
    mode = "hnsw:" + ",".join(map(str, efs)) if graphs else "exact"
    row = {"data": name, "vectors": len(base), "dimension": base.shape[1], "queries": len(queries),
           "rag_agent": bench_ours(work, base.shape[1], mode),
           "faiss_flat": bench_faiss(base, queries, truth)}
    if peer_graph:
        row["hnswlib"] = bench_hnswlib(base, queries, truth, efs)
    for file in ("base.f32", "queries.f32", "truth.u32"):
        os.remove(os.path.join(work, file))
    print(json.dumps(row), file=sys.stderr)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real", help="a directory with base.f32 and queries.f32 of real embeddings")
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--hnsw-max", type=int, default=100_000,
                        help="largest size to build our graph for (its build is the slow part)")
    parser.add_argument("--hnswlib-max", type=int, help="largest size to build hnswlib's for (default: --hnsw-max)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    parser.add_argument("--name", default="vectors", help="file name (without extension) of the JSON and PNG")
    args = parser.parse_args()
    peer_max = args.hnsw_max if args.hnswlib_max is None else args.hnswlib_max
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(7)
    rows = []
    if args.real:
        parts = [os.path.join(args.real, name) for name in ("base.f32", "more.f32")]
        base = np.concatenate([np.fromfile(part, dtype=np.float32).reshape(-1, args.dim)
                               for part in parts if os.path.exists(part)])
        queries = np.fromfile(os.path.join(args.real, "queries.f32"), dtype=np.float32).reshape(-1, args.dim)
        rows.append(bench_dataset("real", base, queries, args.ef, len(base) <= args.hnsw_max, len(base) <= peer_max))
    for size in args.sizes:
        base = unit(size, args.dim, rng)
        queries = unit(args.queries, args.dim, rng)
        rows.append(bench_dataset("random", base, queries, args.ef, size <= args.hnsw_max, size <= peer_max))
    report = {"cpus": os.cpu_count(), "rows": rows}
    with open(os.path.join(args.out, args.name + ".json"), "w") as f:
        json.dump(report, f, indent=2)
    plot(rows, os.path.join(args.out, args.name + ".png"))
    print(json.dumps(report, indent=2))


def plot(rows, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(4.8 * len(rows), 3.8), squeeze=False)
    for ax, row in zip(axes[0], rows):
        ours = row["rag_agent"]
        ax.scatter([ours["exact"]["recall_at_10"]], [ours["exact"]["p50_ms"]], marker="s",
                   color="#2458d6", label="rag-agent exact")
        ax.scatter([row["faiss_flat"]["recall_at_10"]], [row["faiss_flat"]["p50_ms"]], marker="^",
                   color="#d66a24", label="faiss flat")
        for runs, label, color in ((ours["hnsw"], "rag-agent HNSW", "#2458d6"),
                                   (row.get("hnswlib", {}).get("runs", []), "hnswlib", "#d66a24")):
            if runs:
                ax.plot([r["recall_at_10"] for r in runs], [r["p50_ms"] for r in runs], "o-",
                        color=color, mfc="white", label=f"{label} (ef " + "/".join(str(r["ef_search"]) for r in runs) + ")")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("p50 ms per top-10 query (1 thread)")
        ax.set_title(f"{row['data']}: {row['vectors']:,} x {row['dimension']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
