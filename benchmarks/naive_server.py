"""The server users write first, as the reference for `dlcli serve`: FastAPI, the model loaded
with `keras.saving.load_model`, and `model.predict` on each request's tensor.

    python benchmarks/naive_server.py MODEL PORT

It takes the Open Inference Protocol body that `dlcli serve` takes (POST
/v2/models/mnist/infer, one input tensor) and answers the probabilities, so that one load
generator (benchmarks/serve_load.py) drives both. It listens on 127.0.0.1 only.
"""

import sys

import keras
import numpy as np
import uvicorn
from fastapi import FastAPI, Request

model = keras.saving.load_model(sys.argv[1])
app = FastAPI()


@app.get("/v2/health/ready")
def ready() -> dict:
    return {"ready": True}


@app.post("/v2/models/mnist/infer")
async def infer(request: Request) -> dict:
    body = await request.json()
    tensor = body["inputs"][0]
    x = np.array(tensor["data"], dtype="float32").reshape(tensor["shape"])
    probabilities = model.predict(x)
    return {
        "model_name": "mnist",
        "outputs": [
            {
                "name": "probabilities",
                "shape": list(probabilities.shape),
                "datatype": "FP32",
                "data": probabilities.ravel().tolist(),
            }
        ],
    }


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]))
