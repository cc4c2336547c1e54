#!/usr/bin/env python3
"""Lambda cold start, side by side: exec of the handler process to the
response of its first invocation (an API Gateway REST event for GET
/health), under a Lambda Runtime API served by this script on 127.0.0.1.

- rag-agent: the release binary started with no arguments, as `bootstrap`
  is on provided.al2023, on the AWS backend set (DynamoDB, S3, S3 Vectors,
  Bedrock) with every endpoint pointed at a local moto server.
- the peer: benches/peer_lambda.py (FastAPI + boto3 clients + a
  strands-agents Agent behind Mangum) run by awslambdaric, Amazon's Runtime
  Interface Client for Python.

Both answer /health with one DynamoDB GetItem of the document counter, so
both do the same AWS work. What is not measured: Lambda's own sandbox and
download time, which are the same for both and not reproducible here.

Run from the repository root:

    cargo build --release -p rag-agent
    /tmp/peers/bin/pip install boto3 fastapi strands-agents==1.62.0 \\
        mangum==0.22.0 awslambdaric==4.2.2 matplotlib
    /tmp/peers/bin/python benches/lambda_cold_start.py \\
        --moto-python ~/.cache/rag-agent/test-venv/bin/python --out docs/bench
"""

import argparse
import json
import os
import platform
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHES = os.path.join(ROOT, "benches")
EVENT = os.path.join(ROOT, "crates", "lambda", "tests", "fixtures", "v1_health.json")
PREFIX = "/2018-06-01/runtime"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RuntimeApi:
    """Serves one cold start: hands out one event and reports the response.
    A fresh server per start, because a killed process's pending
    `invocation/next` would otherwise take the next process's event."""

    def __init__(self):
        self.events = queue.Queue()
        self.results = queue.Queue()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self.reply(404)
                # A process waits here for its next event; the benchmark
                # kills it after the first, so later calls just hang.
                request_id, event = api.events.get()
                self.reply(200, event, [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                ])

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                when = time.perf_counter()
                if self.path.endswith("/response"):
                    api.results.put(("response", when, body))
                elif self.path.endswith("/error"):
                    api.results.put(("error", when, body))
                else:
                    return self.reply(404)
                self.reply(202, b"{}", [("Content-Type", "application/json")])

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a killed process drops its pending connection

        self.server = Server(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def invoke_cold(command, env, cwd=None, timeout=60.0):
    """Seconds from exec to the response of the process's first invocation."""
    with open(EVENT, "rb") as f:
        event = f.read()
    api = RuntimeApi()
    api.events.put((str(uuid.uuid4()), event))
    start = time.perf_counter()
    process = subprocess.Popen(command, env={**env, "AWS_LAMBDA_RUNTIME_API": api.address}, cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        kind, when, body = api.results.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        raise RuntimeError(f"no response within {timeout}s: {process.communicate()[1][-2000:]!r}")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        api.close()
    if kind != "response":
        raise RuntimeError(f"{command[0]} reported an error: {body[:500]!r}")
    status = json.loads(body).get("statusCode")
    if status != 200:
        raise RuntimeError(f"{command[0]} answered {status}: {body[:500]!r}")
    return when - start


def start_moto(python):
    port = free_port()
    process = subprocess.Popen([python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto did not start")


def create_resources(url, names):
    import boto3

    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    session.client("s3", endpoint_url=url).create_bucket(Bucket=names["bucket"])
    string = lambda name: {"AttributeName": name, "AttributeType": "S"}
    session.client("dynamodb", endpoint_url=url).create_table(
        TableName=names["table"], BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[string("PK"), string("SK"), string("GSI1PK"), string("GSI1SK")],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "GSI1",
            "KeySchema": [{"AttributeName": "GSI1PK", "KeyType": "HASH"},
                          {"AttributeName": "GSI1SK", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }])
    vectors = session.client("s3vectors", endpoint_url=url)
    vectors.create_vector_bucket(vectorBucketName=names["vector_bucket"])
    vectors.create_index(vectorBucketName=names["vector_bucket"], indexName=names["index"],
                         dataType="float32", dimension=1024, distanceMetric="cosine")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moto-python", default=os.path.expanduser("~/.cache/rag-agent/test-venv/bin/python"))
    parser.add_argument("--peer-python", default=sys.executable,
                        help="Python with fastapi, boto3, strands-agents, mangum, awslambdaric")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "rag-agent"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    args = parser.parse_args()

    moto, url = start_moto(args.moto_python)
    try:
        suffix = uuid.uuid4().hex[:8]
        names = {"bucket": f"docs-{suffix}", "table": f"rag-{suffix}",
                 "vector_bucket": f"vectors-{suffix}", "index": "chunks"}
        create_resources(url, names)
        common = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "DYNAMODB_TABLE_NAME": names["table"],
            "AWS_ENDPOINT_URL_DYNAMODB": url,
        }
        ours_env = {
            **common,
            "RUST_LOG": "warn",
            "METADATA_BACKEND": "dynamodb",
            "DOCUMENT_BACKEND": "s3",
            "VECTOR_BACKEND": "s3vectors",
            "EMBEDDING_PROVIDER": "bedrock",
            "LLM_PROVIDER": "bedrock",
            "S3_BUCKET_NAME": names["bucket"],
            "S3_VECTOR_BUCKET_NAME": names["vector_bucket"],
            "S3_VECTOR_INDEX_NAME": names["index"],
            "AWS_ENDPOINT_URL_S3": url,
            "AWS_ENDPOINT_URL_S3VECTORS": url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
            "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME": url,
        }
        peer_env = {**common, "LAMBDA_TASK_ROOT": BENCHES, "PYTHONPATH": BENCHES,
                    "PYTHONDONTWRITEBYTECODE": "1"}
        ours_command = [args.binary]
        peer_command = [args.peer_python, "-m", "awslambdaric", "peer_lambda.handler"]
        # Interleaved, after one uncounted start each, so both see the same
        # page cache and machine load.
        invoke_cold(ours_command, ours_env)
        invoke_cold(peer_command, peer_env, cwd=BENCHES)
        ours, peer = [], []
        for _ in range(args.runs):
            ours.append(invoke_cold(ours_command, ours_env))
            peer.append(invoke_cold(peer_command, peer_env, cwd=BENCHES))
    finally:
        moto.kill()
        moto.wait()

    median = lambda xs: sorted(xs)[len(xs) // 2]
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "commit": subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip(),
        "runs": args.runs,
        "ours_ms": [round(x * 1000, 1) for x in ours],
        "peer_ms": [round(x * 1000, 1) for x in peer],
        "ours_median_ms": round(median(ours) * 1000, 1),
        "peer_median_ms": round(median(peer) * 1000, 1),
        "ratio": median(peer) / median(ours),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "lambda_cold_start.json"), "w") as f:
        json.dump(report, f, indent=2)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(["rag-agent\n(bootstrap)", "FastAPI + Mangum\n+ boto3 + strands"],
           [report["ours_median_ms"], report["peer_median_ms"]], color=["#2458d6", "#999999"])
    ax.set_ylabel("ms, exec to first response (median)")
    ax.set_title(f"Lambda handler cold start: {report['ratio']:.1f}x faster")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "lambda_cold_start.png"), dpi=110)
    plt.close(fig)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
