"""`dlcli serve` as a user runs it: a subprocess on a free port, reached over HTTP.

The tiny models (`tiny_models`: `bars`, 8x8 images of a bar at the top, middle or bottom;
`answer`, rows of columns a and b, yes or no) are served together. Both protocols and the
upload route must answer what `dlcli predict --json` prints for the same inputs (the same
classes, probabilities within 1e-5); every hostile request must get its status and one JSON
error line, never a traceback; the server must stay ready through a burst of them, and drain
a request in flight on SIGTERM, then exit 0.
"""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .helpers import TinyModels, bar_image, dlcli_command, run_cli

MAX_BODY = 64 * 1024


def start_server(
    arguments: list[str], env: dict[str, str], cwd: Path
) -> tuple[subprocess.Popen[str], str]:
    """`dlcli serve ARGUMENTS --port 0`, and its base URL once /v2/health/ready says 200."""
    process = subprocess.Popen(
        [*dlcli_command(), "serve", *arguments, "--port", "0"],
        env=env,
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        found = re.search(r"Page: (http://127\.0\.0\.1:\d+)/", line)
        if found:
            base = found[1]
            break
        if not line and process.poll() is not None:
            pytest.fail(f"dlcli serve exited {process.returncode}: {''.join(lines)}")
    else:
        process.kill()
        pytest.fail(f"dlcli serve did not start: {''.join(lines)}")
    threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
    assert call("GET", f"{base}/v2/health/ready") == (200, {"ready": True})
    return process, base


# Straight to the server on 127.0.0.1: urllib's default opener keeps the proxies of the first
# process-wide request, which another test may have made through a refusing proxy.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(
    method: str, url: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    """One request: its status and its JSON body."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"content-type": content_type} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with DIRECT.open(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body of `files` (name -> content) and its content type."""
    boundary = "dlcli-test-boundary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in files.items()
    )
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tiny_models: TinyModels, user_env: dict[str, str]) -> Any:
    """The three tiny models served by one `dlcli serve` for the whole module."""
    process, base = start_server(
        [*map(str, (tiny_models.bars, tiny_models.answer, tiny_models.line))]
        + ["--max-body", str(MAX_BODY)],
        user_env,
        tiny_models.folder,
    )
    yield base
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def predict_json(
    arguments: list[str], files: dict[str, bytes], env: dict[str, str], folder: Path
) -> dict[str, Any]:
    """`dlcli predict --json ARGUMENTS` on `files` written into `folder`."""
    for name, content in files.items():
        (folder / name).write_bytes(content)
    result = run_cli(["predict", "--json", *arguments, *files], env, folder)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_label(top_k: list[dict[str, Any]]) -> dict[str, float]:
    return {item["label"]: item["probability"] for item in top_k}


def test_protocols_and_uploads_answer_as_predict_json(
    server: str, tiny_models: TinyModels, user_env: dict[str, str], tmp_path: Path
) -> None:
    """OIP infer, TF Serving predict (both formats) and the upload route against `dlcli predict
    --json` on the same images, arrays and CSV rows: same classes, probabilities within 1e-5."""
    rng = np.random.default_rng(7)
    images = {f"{row}.png": png(bar_image(row, rng)) for row in (1, 3, 5)}
    pixels = rng.integers(0, 256, size=(2, 8, 8, 1)).astype(np.uint8)
    npy = io.BytesIO()
    np.save(npy, pixels)
    csv = b"a,b\n0.5,0.25\n-1.0,0.5\n"
    bars = ["--model", str(tiny_models.bars), "--top-k", "3"]
    answer = ["--model", str(tiny_models.answer), "--top-k", "2"]
    expected_images = predict_json(bars, images, user_env, tmp_path)
    expected_arrays = predict_json(bars, {"pixels.npy": npy.getvalue()}, user_env, tmp_path)
    expected_rows = predict_json(answer, {"rows.csv": csv}, user_env, tmp_path)

    # the upload route: exactly what predict --json prints, for images and for a CSV file
    body, kind = multipart(images)
    status, uploaded = call("POST", f"{server}/v1/models/bars/classify-files", body, kind)
    assert status == 200, uploaded
    assert uploaded["task"] == expected_images["task"] == "multiclass"
    assert uploaded["errors"] == []
    for got, want in zip(uploaded["predictions"], expected_images["predictions"], strict=True):
        assert got["input"] == want["input"]
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in want["top_k"]]
        for label, probability in by_label(want["top_k"]).items():
            assert by_label(got["top_k"])[label] == pytest.approx(probability, abs=1e-5)
    body, kind = multipart({"rows.csv": csv})
    status, uploaded = call("POST", f"{server}/v1/models/answer/classify-files?top_k=2", body, kind)
    assert status == 200, uploaded
    assert [p["row"] for p in uploaded["predictions"]] == [0, 1]
    for got, want in zip(uploaded["predictions"], expected_rows["predictions"], strict=True):
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in want["top_k"]]
        for label, probability in by_label(want["top_k"]).items():
            assert by_label(got["top_k"])[label] == pytest.approx(probability, abs=1e-5)

    # the tensor protocols: probabilities by class name, the label the most probable class
    status, metadata = call("GET", f"{server}/v2/models/bars")
    assert status == 200
    assert metadata["inputs"] == [{"name": "input", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    classes = ["bottom", "middle", "top"]
    oip = {
        "id": "r1",
        "inputs": [
            {
                "name": "input",
                "shape": [2, 8, 8, 1],
                "datatype": "UINT8",
                "data": pixels.ravel().tolist(),
            }
        ],
    }
    status, inferred = call("POST", f"{server}/v2/models/bars/infer", oip)
    assert status == 200, inferred
    assert inferred["model_name"] == "bars" and inferred["id"] == "r1"
    probabilities, labels = inferred["outputs"]
    assert probabilities["shape"] == [2, 3] and probabilities["datatype"] == "FP32"
    assert labels == {"name": "label", "shape": [2], "datatype": "BYTES", "data": labels["data"]}
    rows = np.array(probabilities["data"]).reshape(2, 3)
    status, row_format = call(
        "POST", f"{server}/v1/models/bars:predict", {"instances": pixels.tolist()}
    )
    assert status == 200, row_format
    status, columnar = call("POST", f"{server}/v1/models/bars:predict", {"inputs": pixels.tolist()})
    assert status == 200, columnar
    for n, want in enumerate(expected_arrays["predictions"]):
        expected = by_label(want["top_k"])
        assert labels["data"][n] == want["top_k"][0]["label"]
        assert row_format["predictions"][n]["label"] == want["top_k"][0]["label"]
        assert columnar["outputs"]["label"][n] == want["top_k"][0]["label"]
        for column, name in enumerate(classes):
            assert rows[n, column] == pytest.approx(expected[name], abs=1e-5)
            assert row_format["predictions"][n]["probabilities"][column] == pytest.approx(
                expected[name], abs=1e-5
            )
            assert columnar["outputs"]["probabilities"][n][column] == pytest.approx(
                expected[name], abs=1e-5
            )
    answer_rows = {"instances": [[0.5, 0.25], [-1.0, 0.5]]}
    status, answered = call("POST", f"{server}/v1/models/answer:predict", answer_rows)
    assert status == 200, answered
    for got, want in zip(answered["predictions"], expected_rows["predictions"], strict=True):
        assert got["label"] == want["top_k"][0]["label"]
        assert dict(zip(["no", "yes"], got["probabilities"], strict=True)) == pytest.approx(
            by_label(want["top_k"]), abs=1e-5
        )
    assert call("GET", f"{server}/v1/models/bars")[1]["model_version_status"][0]["state"] == (
        "AVAILABLE"
    )
    assert call("GET", f"{server}/v2") == (
        200,
        {"name": "dlcli", "version": "0.1.0", "extensions": []},
    )
    assert call("GET", f"{server}/v2/health/live") == (200, {"live": True})
    assert call("GET", f"{server}/v2/models/answer/ready") == (
        200,
        {"name": "answer", "ready": True},
    )


def bomb_png() -> bytes:
    """A PNG of 8000x6000 one-bit pixels: 48 million pixels in a few kilobytes."""
    from PIL import Image

    return png(Image.new("1", (8000, 6000)))


SIGNATURE = "the model takes `input` UINT8 [-1, 8, 8, 1]"
HOSTILE = [  # method, route, body, content type -> status, the error's text
    (
        "POST",
        "/v2/models/bars/infer",
        b"x" * (MAX_BODY + 1),
        "application/json",
        413,
        "the request body (65,537 bytes) is over the limit of 65,536 bytes (--max-body)",
    ),
    (
        "POST",
        "/v1/models/bars/classify-files",
        "BOMB",
        "",
        413,
        "bomb.png: the image is over the 40,000,000-pixel limit (decompression bomb?)",
    ),
    (
        "POST",
        "/v1/models/bars/classify-files",
        "NOT-IMAGE",
        "",
        400,
        "notes.png: not an image (cannot identify image file)",
    ),
    (
        "POST",
        "/v1/models/bars/classify-files",
        b"{}",
        "application/json",
        400,
        "send the files as multipart/form-data (curl -F file=@7.png URL)",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        {
            "inputs": [
                {"name": "input", "shape": [1, 8, 7, 1], "datatype": "UINT8", "data": [0] * 56}
            ]
        },
        "application/json",
        400,
        f"input `input`: shape [1, 8, 7, 1] does not fit; {SIGNATURE}",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        {
            "inputs": [
                {"name": "input", "shape": [1, 8, 8, 1], "datatype": "BYTES", "data": ["a"] * 64}
            ]
        },
        "application/json",
        400,
        f"input `input`: BYTES values are not taken ({SIGNATURE}; images as files go to "
        "/v1/models/NAME/classify-files)",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        {
            "inputs": [
                {"name": "input", "shape": [1, 8, 8, 1], "datatype": "UINT8", "data": [300] * 64}
            ]
        },
        "application/json",
        400,
        f"input `input`: its data are not UINT8 numbers ({SIGNATURE})",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        {
            "inputs": [
                {"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP64", "data": [1e300] * 64}
            ]
        },
        "application/json",
        400,
        f"input `input`: its values do not fit UINT8 ({SIGNATURE})",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        {"inputs": []},
        "application/json",
        400,
        f"missing input `input`; {SIGNATURE}",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        {"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [0]}]},
        "application/json",
        400,
        f"unknown input `pixels`; {SIGNATURE}",
    ),
    (
        "POST",
        "/v2/models/nope/infer",
        {"inputs": []},
        "application/json",
        404,
        "unknown model `nope`; this server serves bars, answer, line",
    ),
    (
        "GET",
        "/v2/models/nope",
        None,
        "",
        404,
        "unknown model `nope`; this server serves bars, answer, line",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        b'{"inputs": [',
        "application/json",
        400,
        "malformed JSON: Expecting value: line 1 column 13 (char 12)",
    ),
    (
        "POST",
        "/v2/models/bars/infer",
        b'{"inputs": NaN}',
        "application/json",
        400,
        "malformed JSON: NaN is not JSON",
    ),
    (
        "POST",
        "/v1/models/bars:predict",
        {"instances": [[0]], "inputs": [[0]]},
        "application/json",
        400,
        'the body must be a JSON object with either "instances" or "inputs", not both',
    ),
    (
        "POST",
        "/v1/models/line:predict",
        {"instances": [[3e38, -3e38, 3e38]]},  # beyond float32: Inf
        "application/json",
        500,
        "model line gave NaN or Inf outputs for this input; check the input's values (e.g. far "
        "outside the training data's range)",
    ),
    ("GET", "/v2/models/bars/infer", None, "", 405, "GET is not allowed on /v2/models/bars/infer"),
    ("GET", "/nothing/here", None, "", 404, "no such route: GET /nothing/here"),
]


@pytest.mark.parametrize(("method", "route", "body", "kind", "status", "error"), HOSTILE)
def test_hostile_requests_get_one_json_error(
    server: str, method: str, route: str, body: Any, kind: str, status: int, error: str
) -> None:
    """Each hostile request: its status and exactly one JSON error line, no traceback."""
    if body == "BOMB":
        body, kind = multipart({"bomb.png": bomb_png()})
    elif body == "NOT-IMAGE":
        body, kind = multipart({"notes.png": b"these are not pixels"})
    got_status, answer = call(method, f"{server}{route}", body, kind)
    assert (got_status, answer) == (status, {"error": error})


def test_ready_through_a_hostile_burst_and_under_load(server: str) -> None:
    """16 clients send 400 requests, a third of them hostile: every answer is the right
    status, the server stays ready, and good requests keep a bounded latency."""
    good = {
        "inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "UINT8", "data": [9] * 64}]
    }
    bodies = [
        (good, 200),
        (b'{"inputs": [', 400),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 8, 8], "datatype": "UINT8", "data": [1] * 64}
                ]
            },
            400,
        ),
    ]
    statuses: list[tuple[int, int]] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        for index in range(25):
            body, expected = bodies[(number + index) % 3]
            started = time.perf_counter()
            status, _ = call("POST", f"{server}/v2/models/bars/infer", body)
            with lock:
                statuses.append((status, expected))
                if expected == 200:
                    latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 400
    assert all(status == expected for status, expected in statuses)
    assert call("GET", f"{server}/v2/health/ready") == (200, {"ready": True})
    assert np.percentile(latencies, 99) < 2.0  # seconds; benchmarks/ measures it properly


def test_sigterm_drains_the_request_in_flight(
    tiny_models: TinyModels, user_env: dict[str, str]
) -> None:
    """A request half sent when SIGTERM arrives is still answered; then the server exits 0."""
    process, base = start_server([str(tiny_models.answer)], user_env, tiny_models.folder)
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps({"instances": [[0.5, 0.5]]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        head = (
            f"POST /v1/models/answer:predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        connection.sendall(head + body[:5])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        connection.sendall(body[5:])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"][0]["label"] == "yes"
    assert process.wait(timeout=60) == 0


def test_mistakes_before_the_server_starts(
    tiny_models: TinyModels, user_env: dict[str, str], tmp_path: Path
) -> None:
    """A missing model and a taken port are one line each, with their exit codes."""
    result = run_cli(["serve", "nothing"], user_env, tmp_path)
    assert result.returncode == 6
    assert result.stderr.strip() == (
        "Error: nothing: no such model file or run folder, and no finished run of that name in "
        "runs/ (runs/nothing-N/model.keras)"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        arguments = ["serve", str(tiny_models.answer), "--port", str(port)]
        result = run_cli(arguments, user_env, tmp_path)
    assert result.returncode == 15
    assert result.stderr.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port}: the port is taken by another process; "
        "choose another with --port"
    )
    assert result.seconds < 10
