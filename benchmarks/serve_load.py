"""`dlcli serve` under load, against the server users write first (benchmarks/naive_server.py).

    python benchmarks/serve_load.py MODEL [--requests 2000] [--clients 16] [--output PATH]

MODEL is the MNIST MLP (`dlcli train configs/mnist.yaml`: runs/mnist-1/model.keras, with its
verified model.onnx). In one run, on 127.0.0.1 only, with a bounded number of requests and a
time limit on each phase:

1. the naive server (FastAPI + `keras.saving.load_model` + `model.predict` per request) and
   `dlcli serve` each get `--requests` Open Inference Protocol requests of one 28x28 MNIST
   tensor from `--clients` concurrent keep-alive clients: throughput and latency percentiles;
2. `dlcli serve` gets 500 PNG uploads of a 200x200 photo of a digit (the MNIST framing of
   `dlcli predict`) from the same clients, then from 4: latency percentiles;
3. `dlcli serve`'s resident memory after the first 1,000 requests and after 10,000 (a third
   of them hostile: malformed JSON, wrong shapes, unknown models), and whether it is still
   ready.

The load generator is threads of `http.client` connections, each sending its next request
when the last is answered. Prints a table and writes JSON (default
benchmarks/results-serve.json).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
_SCRIPT = Path(PYTHON).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [PYTHON, "-m", "dlcli"]
PHASE_SECONDS = 600  # no phase runs longer, whatever the server does
TARGETS = {"throughput_ratio": 10.0, "p99_ms": 50.0, "upload_p99_ms": 100.0, "rss_growth": 0.10}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server on port {port} was not ready within {seconds} s")


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found
    return int(found[1]) / 1024


def load(
    port: int, requests: list[tuple[str, bytes, str]], clients: int
) -> tuple[dict[str, Any], list[int]]:
    """Send `requests` (path, body, content type) from `clients` keep-alive connections; the
    throughput and latency percentiles of the 200 answers, and every status."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    queue = iter(enumerate(requests))
    deadline = time.monotonic() + PHASE_SECONDS

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            _, (path, body, kind) = item
            started = time.perf_counter()
            connection.request("POST", path, body, {"content-type": kind})
            response = connection.getresponse()
            response.read()
            seconds = time.perf_counter() - started
            with lock:
                statuses.append(response.status)
                if response.status == 200:
                    latencies.append(seconds)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    milliseconds = np.array(latencies) * 1000
    figures = {
        "requests": len(statuses),
        "ok": len(latencies),
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(statuses) / wall, 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 2) if latencies else None,
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 2) if latencies else None,
        "max_ms": round(float(milliseconds.max()), 2) if latencies else None,
    }
    return figures, statuses


def oip_body(rng: np.random.Generator) -> bytes:
    pixels = rng.integers(0, 256, size=(1, 28, 28))
    tensor = {"name": "input", "shape": [1, 28, 28], "datatype": "UINT8"}
    return json.dumps({"inputs": [tensor | {"data": pixels.ravel().tolist()}]}).encode()


def photo_png() -> bytes:
    """A 200x200 RGB photo-like picture of a 7: grey paper lit unevenly, noise, dark ink."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:200, 0:200]
    paper = 150 + 60 * columns / 200 + 20 * rows / 200 + rng.normal(0, 6, (200, 200))
    image = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).convert("RGB")
    pen = ImageDraw.Draw(image)
    pen.line([(55, 50), (150, 50), (95, 165)], fill=(30, 30, 40), width=14, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = "dlcli-bench"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results-serve.json")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    path = "/v2/models/mnist/infer"
    tensors = [(path, oip_body(rng), "application/json") for _ in range(arguments.requests)]
    results: dict[str, Any] = {"requests": arguments.requests, "clients": arguments.clients}

    port = free_port()
    print(f"naive server: {arguments.requests} requests ...", flush=True)
    naive = subprocess.Popen(
        [PYTHON, str(REPO / "benchmarks" / "naive_server.py"), str(arguments.model), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, naive)
        load(port, tensors[:20], 2)  # its first predict call builds the function
        results["naive"], _ = load(port, tensors, arguments.clients)
    finally:
        stop(naive)

    port = free_port()
    print(f"dlcli serve: {arguments.requests} requests, uploads, 10,000 more ...", flush=True)
    command = [*DLCLI, "serve", str(arguments.model), "--name", "mnist", "--port", str(port)]
    served = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, served)
        results["dlcli"], _ = load(port, tensors, arguments.clients)
        body, kind = multipart("photo.png", photo_png())
        uploads = [("/v1/models/mnist/classify-files", body, kind)] * 500
        results["upload_png_200x200"], _ = load(port, uploads, arguments.clients)
        results["upload_png_200x200_4_clients"], _ = load(port, uploads, 4)
        results["memory"] = memory(port, served.pid, arguments.clients, rng)
    finally:
        results["exit_code_after_sigterm"] = stop(served)
    results["throughput_ratio"] = round(
        results["dlcli"]["throughput_rps"] / results["naive"]["throughput_rps"], 1
    )
    results["targets"] = {
        "throughput dlcli/naive": [
            results["throughput_ratio"],
            f">= {TARGETS['throughput_ratio']}",
        ],
        "p99 ms": [results["dlcli"]["p99_ms"], f"< {TARGETS['p99_ms']}"],
        "upload p99 ms": [results["upload_png_200x200"]["p99_ms"], f"< {TARGETS['upload_p99_ms']}"],
        "RSS growth 1k -> 10k": [results["memory"]["growth"], f"<= {TARGETS['rss_growth']}"],
    }
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def memory(port: int, pid: int, clients: int, rng: np.random.Generator) -> dict[str, Any]:
    """RSS after 1,000 and after 10,000 requests, a third of them hostile."""
    path = "/v2/models/mnist/infer"
    kinds = [
        (path, oip_body(rng), "application/json"),
        (path, b'{"inputs": [', "application/json"),
        (path, oip_body(rng).replace(b"[1, 28, 28]", b"[1, 28, 27]"), "application/json"),
        ("/v2/models/nope/infer", oip_body(rng), "application/json"),
    ]
    mixed = [kinds[(n // 3) % 3 + 1] if n % 3 == 0 else kinds[0] for n in range(10_000)]
    _, first = load(port, mixed[:1000], clients)
    after_1k = rss_mib(pid)
    _, rest = load(port, mixed[1000:], clients)
    after_10k = rss_mib(pid)
    statuses = first + rest
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/v2/health/ready")
    return {
        "rss_after_1000_mib": round(after_1k, 1),
        "rss_after_10000_mib": round(after_10k, 1),
        "growth": round(after_10k / after_1k - 1, 4),
        "statuses": {str(code): statuses.count(code) for code in sorted(set(statuses))},
        "ready_after": connection.getresponse().status == 200,
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{results['requests']} OIP requests of one 28x28 tensor, {results['clients']} clients")
    print(f"  {'':30}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name in ("naive", "dlcli", "upload_png_200x200", "upload_png_200x200_4_clients"):
        row = results[name]
        print(
            f"  {name:30}{row['throughput_rps']:8.1f}{row['p50_ms']:9.2f}{row['p99_ms']:9.2f}"
            f"{row['max_ms']:9.2f}"
        )
    memory = results["memory"]
    print(
        f"  RSS {memory['rss_after_1000_mib']} MiB after 1,000 requests, "
        f"{memory['rss_after_10000_mib']} MiB after 10,000 ({memory['growth']:+.1%}); "
        f"statuses {memory['statuses']}; ready after: {memory['ready_after']}; "
        f"exit code after SIGTERM {results['exit_code_after_sigterm']}"
    )
    for name, (value, target) in results["targets"].items():
        operator, bound = target.split()
        passed = (
            value >= float(bound)
            if operator == ">="
            else (value <= float(bound) if operator == "<=" else value < float(bound))
        )
        print(f"  {'PASS' if passed else 'FAIL'}  {name}: {value} (target {target})")


if __name__ == "__main__":
    main()
