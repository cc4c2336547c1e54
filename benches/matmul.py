#!/usr/bin/env python3
"""The encoder's matrix products side by side: candle (the `gemm` crate,
through the `matmul_speed` example) against PyTorch (MKL), on the shapes
one MiniLM layer multiplies for a micro-batch of 8 texts of 230 tokens, at
1 and 2 threads. These products are about 70% of our embedding time, so
their speed bounds how far embedding can get ahead of sentence-transformers.

    cargo build --release -p rag-local --example matmul_speed
    /tmp/peers/bin/python benches/matmul.py --torch-python /tmp/st/bin/python --out docs/bench

Writes matmul.json and matmul.png to --out.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TORCH = r"""
import json, sys, time, torch
threads, shapes = int(sys.argv[1]), json.loads(sys.argv[2])
torch.set_num_threads(threads)
def filled(*shape):
    n = 1
    for s in shape: n *= s
    return ((torch.arange(n, dtype=torch.int64) * 7919 % 1000).float() * 1e-3 - 0.5).reshape(*shape)
for s in shapes:
    b, m, k, n = s["batch"], s["m"], s["k"], s["n"]
    if b == 1:
        lhs, rhs = filled(m, k), filled(k, n)
    elif s["name"] == "scores":
        lhs, rhs = filled(b, m, k), filled(b, n, k).transpose(1, 2)
    else:
        lhs, rhs = filled(b, m, k), filled(b, k, n)
    start = time.perf_counter(); lhs @ rhs
    repeats = max(1, min(10000, int(0.2 / max(time.perf_counter() - start, 1e-6))))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats): lhs @ rhs
        best = min(best, (time.perf_counter() - start) / repeats)
    print(json.dumps({"name": s["name"], "gflops": round(2.0 * b * m * k * n / best / 1e9, 2)}))
"""


def lines(output):
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch-python", required=True, help="an interpreter with torch installed")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    args = parser.parse_args()
    binary = os.path.join(ROOT, "target", "release", "examples", "matmul_speed")
    rows = []
    for threads in args.threads:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        ours = lines(subprocess.check_output([binary], env=env, text=True))
        theirs = {r["name"]: r["gflops"] for r in lines(subprocess.check_output(
            [args.torch_python, "-c", TORCH, str(threads), json.dumps(ours)], text=True))}
        for shape in ours:
            row = dict(shape, threads=threads, torch_gflops=theirs[shape["name"]])
            row["candle_gflops"] = row.pop("gflops")
            row["ratio"] = round(row["candle_gflops"] / row["torch_gflops"], 3)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "matmul.json"), "w") as f:
        json.dump({"cpus": os.cpu_count(), "rows": rows}, f, indent=2)
    plot(rows, args.threads, os.path.join(args.out, "matmul.png"))


def plot(rows, threads, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(threads), figsize=(5.5 * len(threads), 3.6), squeeze=False)
    for ax, count in zip(axes[0], threads):
        mine = [r for r in rows if r["threads"] == count]
        xs = range(len(mine))
        ax.bar([x - 0.2 for x in xs], [r["candle_gflops"] for r in mine], 0.4, label="candle (gemm)", color="#2458d6")
        ax.bar([x + 0.2 for x in xs], [r["torch_gflops"] for r in mine], 0.4, label="PyTorch (MKL)", color="#d66a24")
        ax.set_xticks(list(xs), [r["name"] for r in mine], rotation=20)
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{count} thread{'s' if count > 1 else ''}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
