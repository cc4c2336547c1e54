#!/usr/bin/env python3
"""Peak memory and time of the server under the largest hostile uploads.

Starts `rag-agent serve` on a fresh data directory, uploads each case once
(50 MB default body limit, so 49 MiB inputs), and prints the status, the
error code, the seconds the answer took and the server's peak resident
memory (VmHWM) after it, as JSON lines. The server's PID must be the same
at the end.

    cargo build --release -p rag-agent
    python3 benches/hostile.py --binary target/release/rag-agent
    python3 benches/hostile.py --binary target/release/rag-agent --max-chunks 1000000

Cases: a 49 MiB text with no sentence ends (the chunker's worst case), the
same words as 49 MiB of HTML paragraphs, the 1 GiB flate bomb PDF
(tests/fixtures/flate_bomb.pdf), HTML nested 100,000 deep, and a PDF with
arrays nested 100,000 deep.
"""
import argparse
import json
import os
import random
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def upload(base, name, data, ctype, fields=None):
    boundary = "hostileboundary"
    body = b""
    for key, value in (fields or {}).items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{base}/documents/upload", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            status, payload = response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        status, payload = e.code, json.loads(e.read())
    return status, payload, time.monotonic() - started


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target/release/rag-agent"))
    parser.add_argument(
        "--max-chunks", type=int,
        help="RAG_AGENT_MAX_CHUNKS_PER_DOCUMENT for the server; with it the 49 MiB inputs are accepted "
        "(answers come once parsed and split, without waiting for indexing)",
    )
    parser.add_argument("--size-mib", type=int, default=49, help="size of the text and HTML inputs")
    parser.add_argument("--no-wait", action="store_true", help="answer once parsed and split; indexing goes on, and the peak is read again 30 s later")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.max_chunks:
        env["RAG_AGENT_MAX_CHUNKS_PER_DOCUMENT"] = str(args.max_chunks)
    random.seed(14)
    words = ["".join(random.choice("abcdefghij") for _ in range(6)) for _ in range(5000)]
    size = args.size_mib << 20
    breakless = " ".join(random.choice(words) for _ in range(size // 7 + 1)).encode()[:size]
    paragraphs = b"".join(b"<p>" + breakless[i:i + 1000] + b"</p>" for i in range(0, size, 1007))[:size]
    cases = [
        ("breakless.txt", breakless, "text/plain"),
        ("paragraphs.html", b"<html><body>" + paragraphs, "text/html"),
        ("flate_bomb.pdf", (ROOT / "tests/fixtures/flate_bomb.pdf").read_bytes(), "application/pdf"),
        ("deep.html", b"<body>" + b"<div>" * 100_000, "text/html"),
        ("deep.pdf", b"%PDF-1.4\n1 0 obj << /Annots " + b"[" * 100_000 + b" >> endobj\n%%EOF", "application/pdf"),
    ]
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [args.binary, "serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir", data],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        try:
            base = server.stdout.readline().strip().removeprefix("rag-agent listening on ")
            while json.loads(urllib.request.urlopen(f"{base}/health").read())["status"] == "starting":
                time.sleep(0.1)
            print(json.dumps({"case": "idle", "peak_rss_mib": round(peak_rss_mib(server.pid), 1)}))
            for name, data_bytes, ctype in cases:
                wait = "false" if args.max_chunks or args.no_wait else "true"
                status, payload, seconds = upload(base, name, data_bytes, ctype, {"wait": wait})
                print(json.dumps({
                    "case": name, "bytes": len(data_bytes), "status": status,
                    "code": payload.get("error", {}).get("code") or payload["document"]["status"],
                    "seconds": round(seconds, 2), "peak_rss_mib": round(peak_rss_mib(server.pid), 1),
                }), flush=True)
            if args.max_chunks or args.no_wait:
                time.sleep(30)
                print(json.dumps({"case": "after 30 s of indexing", "peak_rss_mib": round(peak_rss_mib(server.pid), 1)}))
            assert server.poll() is None, "the server exited"
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
