"""Load test of ``bertkit serve``: requests/s and latency percentiles at several client concurrencies.

    python bench/bench_serve.py MODEL_DIR [--requests 200] [--concurrency 1,4,16] [--workers 1,2] [--data ../shared/data]

Starts ``bertkit serve MODEL_DIR`` as its own process, sends ``--requests`` one-review requests (IMDb
reviews from ``../shared/data``) from N client threads at a time, and prints requests/s, p50 and p99 latency
per concurrency. With more clients waiting, the server runs their reviews as one batch, so requests/s
should grow with concurrency while one request's latency grows less. ``--workers 1,2`` repeats the whole
load for ``bertkit serve --workers N`` at each N, one server after the other, and prints them side by side.
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


def load(url: str, reviews: list[str], concurrency: list[int]) -> list[dict]:
    """requests/s, p50 and p99 latency at each client concurrency, one-review requests."""
    def one(text: str) -> float:
        started = time.perf_counter()
        request = urllib.request.Request(url + "/predict", data=json.dumps({"inputs": [text]}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=300).read()
        return time.perf_counter() - started

    for text in reviews[:4]:  # warm up (several workers: several requests reach them)
        one(text)
    rows = []
    for n in concurrency:
        started = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            latencies = sorted(pool.map(one, reviews))
        seconds = time.perf_counter() - started
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        rows.append({"clients": n, "requests_per_s": len(reviews) / seconds,
                     "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * p99})
    return rows


def serve(model_dir: str, workers: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "bertkit"), "serve", model_dir, "--port", str(port),
                               "--workers", str(workers)],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return server, url
        except OSError:
            time.sleep(0.2)
    server.terminate()
    sys.exit(f"bertkit serve --workers {workers} did not answer /health")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--workers", default="1", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--json")
    args = parser.parse_args()
    reviews = [r["text"] for r in common.read_jsonl(Path(args.data) / "imdb" / "train.jsonl")[: args.requests]]
    concurrency = list(map(int, args.concurrency.split(",")))
    results = {}
    for workers in map(int, args.workers.split(",")):
        server, url = serve(args.model_dir, workers)
        try:
            time.sleep(3 if workers > 1 else 0)  # every worker has loaded its model, not only the first to answer
            results[workers] = load(url, reviews, concurrency)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"{'workers':>8} {'clients':>8} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for workers, rows in results.items():
        for r in rows:
            print(f"{workers:8d} {r['clients']:8d} {r['requests_per_s']:11.1f} {r['p50_ms']:8.0f} {r['p99_ms']:8.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": "serve", "machine": common.machine(),
                                               "settings": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
