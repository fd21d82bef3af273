"""Load test of ``bertkit serve``: requests/s and latency percentiles at several client concurrencies.

    python bench/bench_serve.py MODEL_DIR [--requests 200] [--concurrency 1,4,16] [--data ../shared/data]

Starts ``bertkit serve MODEL_DIR`` as its own process, sends ``--requests`` one-review requests (IMDb
reviews from ``../shared/data``) from N client threads at a time, and prints requests/s, p50 and p99 latency
per concurrency. With more clients waiting, the server runs their reviews as one batch, so requests/s
should grow with concurrency while one request's latency grows less.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    args = parser.parse_args()
    reviews = [r["text"] for r in common.read_jsonl(Path(args.data) / "imdb" / "train.jsonl")[: args.requests]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "bertkit"), "serve", args.model_dir, "--port", str(port)],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)

        def one(text: str) -> float:
            started = time.perf_counter()
            request = urllib.request.Request(url + "/predict", data=json.dumps({"inputs": [text]}).encode(),
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=300).read()
            return time.perf_counter() - started

        one(reviews[0])  # warm up
        print(f"{'clients':>8} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
        for n in map(int, args.concurrency.split(",")):
            started = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                latencies = sorted(pool.map(one, reviews))
            seconds = time.perf_counter() - started
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            print(f"{n:8d} {len(reviews) / seconds:11.1f} {1000 * statistics.median(latencies):8.0f} {1000 * p99:8.0f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
