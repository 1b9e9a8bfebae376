"""The ASGI app of `dlcli serve` (FastAPI): the Open Inference Protocol and TensorFlow Serving
routes, the upload route that answers what `dlcli predict --json` prints, and the page at `/`.

Every answer that is not a success is one JSON object, `{"error": "..."}`, with its status:
400 for a request that does not fit (naming the expected signature), 404 for an unknown model
or route, 413 for a body over `--max-body` or an image over the pixel limit, 500 for NaN or
Inf outputs (naming the model) and for bugs (whose traceback goes to the server's log only),
503 while the server drains. Inference runs on a small thread pool shared by all models.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dlcli.errors import InputError, InputTooLargeError
from dlcli.inference.inputs import MemoryInput
from dlcli.serve import open_inference, tf_serving
from dlcli.serve.served_model import ServedModel
from dlcli.serve.tensors import RequestError, parse_json

STATIC = resources.files("dlcli.serve") / "static"
MAX_FILES = 64  # files in one upload
logger = logging.getLogger("dlcli.serve")
T = TypeVar("T")


@dataclass
class ServerState:
    """What the routes share: the models by name, the inference pool, whether draining."""

    models: dict[str, ServedModel]
    pool: ThreadPoolExecutor
    max_body: int
    draining: bool = False
    counts: dict[int, int] = field(default_factory=dict)  # responses by status

    def model(self, name: str) -> ServedModel:
        found = self.models.get(name)
        if found is None:
            raise RequestError(
                404, f"unknown model `{name}`; this server serves {', '.join(self.models)}"
            )
        return found

    @property
    def ready(self) -> bool:
        return not self.draining and all(model.ready for model in self.models.values())

    async def run(self, work: Callable[[], T]) -> T:
        """`work` on the inference pool; the event loop goes on serving meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, work)


class BodyTooLarge(Exception):
    """A request body went over `--max-body` while it was read."""


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is refused (413) by its Content-Length before
    it is read, or as soon as the bytes read exceed it (a chunked body)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await _send_error(send, 413 if length.isdigit() else 400, self._message(length))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self._message(str(seen).encode()))
            return message

        await self.app(scope, counted, send)

    def _message(self, length: bytes) -> str:
        if not length.isdigit():
            return "malformed Content-Length header"
        return (
            f"the request body ({int(length):,} bytes) is over the limit of {self.limit:,} "
            "bytes (--max-body)"
        )


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def json_response(content: Any, status: int = 200) -> Response:
    """A JSON answer (compact; NaN and Infinity cannot occur: outputs are checked before)."""
    body = json.dumps(content, separators=(",", ":"), allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def create_app(
    models: list[ServedModel],
    *,
    threads: int = 2,
    max_body: int = 4 * 1024**2,
    allow_origins: list[str] | None = None,
) -> FastAPI:
    """The ASGI app serving `models` (opened and warmed up already).

    Args:
        models: The models to serve, each under its name.
        threads: Threads of the inference pool (each onnxruntime session is shared by them).
        max_body: The largest request body accepted, in bytes (larger: 413).
        allow_origins: Origins whose pages may call the server (CORS); none by default.

    Returns:
        The app; `app.state.serving` is its `ServerState`.

    Example:

    ```python
    app = create_app(open_models(["mnist"], names=[], runs_dir=Path("runs"), ...))
    uvicorn.run(app, host="127.0.0.1", port=8000)
    ```
    """
    state = ServerState(
        models={model.name: model for model in models},
        pool=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference"),
        max_body=max_body,
    )
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serving = state
    _add_error_handlers(app)
    _add_open_inference_routes(app, state)
    _add_tf_serving_routes(app, state)
    _add_page_routes(app, state)
    if allow_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimit, limit=max_body)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def request_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestError)
        return error_response(error.status, str(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            return error_response(404, f"no such route: {request.method} {request.url.path}")
        if error.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on {request.url.path}")
        return error_response(error.status_code, str(error.detail))

    async def too_large(request: Request, error: Exception) -> Response:
        return error_response(413, str(error))

    async def bug(request: Request, error: Exception) -> Response:
        logger.exception("error in %s %s", request.method, request.url.path)
        return error_response(
            500, "internal error in dlcli serve; the server's log has the details"
        )

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(Exception, bug)


async def _json_body(request: Request) -> Any:
    return parse_json(await request.body())


def _guarded(work: Callable[[], T]) -> Callable[[], T]:
    """`work` with a user's input errors as 400 (413 when over a size limit)."""

    def guarded() -> T:
        try:
            return work()
        except InputTooLargeError as error:
            raise RequestError(413, str(error)) from None
        except InputError as error:
            raise RequestError(400, str(error)) from None

    return guarded


def _add_open_inference_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/v2")
    async def server_metadata() -> Response:
        return json_response(open_inference.server_metadata())

    @app.get("/v2/health/live")
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return json_response({"ready": state.ready}, 200 if state.ready else 503)

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str) -> Response:
        return json_response(open_inference.model_metadata(state.model(name)))

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        ready = state.model(name).ready and not state.draining
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        model = state.model(name)
        request_id, arrays, requested = open_inference.infer_request(
            await _json_body(request), model
        )
        scores = await state.run(_guarded(lambda: model.infer(arrays)))
        return json_response(open_inference.infer_response(model, request_id, scores, requested))


def _add_tf_serving_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/v1/models/{name}")
    async def model_status(name: str) -> Response:
        return json_response(tf_serving.status(state.model(name)))

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> Response:
        model = state.model(name)
        arrays, columnar = tf_serving.predict_request(await _json_body(request), model)
        scores = await state.run(_guarded(lambda: model.infer(arrays)))
        return json_response(tf_serving.predict_response(model, scores, columnar))

    @app.post("/v1/models/{name}/classify-files")
    async def classify_files(
        name: str, request: Request, top_k: int = 3, raw: bool = False
    ) -> Response:
        model = state.model(name)
        if top_k < 1:
            raise RequestError(400, f"top_k must be a positive integer; received {top_k}")
        inputs = await _uploads(request, state.max_body)
        result = await state.run(
            _guarded(lambda: model.predictor.predict(inputs, top_k=top_k, raw=raw))
        )
        answer = result.to_dict()
        for item in answer["predictions"]:
            values = item.get("value", []) + [top["probability"] for top in item.get("top_k", [])]
            if not all(math.isfinite(value) for value in values):
                raise RequestError(
                    500, f"model {model.name} gave NaN or Inf outputs for {item['input']}"
                )
        return json_response(answer)


async def _uploads(request: Request, max_body: int) -> list[MemoryInput]:
    """The files of a multipart/form-data upload, in order, held in memory."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError(400, "send the files as multipart/form-data (curl -F file=@7.png URL)")
    from starlette.datastructures import UploadFile

    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES, max_part_size=max_body)
    except HTTPException as error:  # Starlette's own: too many files, a malformed body
        raise RequestError(400, f"malformed upload: {error.detail}") from None
    inputs = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            inputs.append(MemoryInput(value.filename or key, await value.read()))
    await form.close()
    if not inputs:
        raise RequestError(400, "the upload holds no files (curl -F file=@7.png URL)")
    return inputs


def _add_page_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/")
    async def page() -> Response:
        return FileResponse(str(STATIC / "index.html"))

    @app.get("/models")
    async def models() -> Response:
        return json_response({"models": [model.page_info() for model in state.models.values()]})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
