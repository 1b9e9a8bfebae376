"""`dlcli serve`: trained models over HTTP.

- `dlcli.serve.served_model`: the models served, found by run name, opened once, warmed up
- `dlcli.serve.tensors`: request tensors checked against a model's signature; HTTP errors
- `dlcli.serve.open_inference`: the Open Inference Protocol (v2) REST bodies
- `dlcli.serve.tf_serving`: TensorFlow Serving's REST bodies (v1 predict and status)
- `dlcli.serve.app`: the ASGI app: routes, the body limit, errors as JSON, the page
- `dlcli.serve.server`: the listening socket, uvicorn, SIGTERM drained, worker processes
- `dlcli/serve/static/`: the page at `/` (plain HTML, JavaScript and CSS)
"""
