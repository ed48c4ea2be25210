"""The floor: a raw ASGI server that parses JSON, calls ONNX Runtime and answers.

No routing, validation, metrics or batching. `python benchmarks/minimal_server.py MODEL PORT`.
"""

import os
import sys
from typing import cast

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnxruntime
import orjson
import uvicorn


def build_app(model_path: str):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    # As the gateway does: the output named once, not listed by session.run on every call.
    output_names = [session.get_outputs()[0].name]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        rows = np.asarray(orjson.loads(body)["instances"], dtype=np.float32)
        (logits,) = session.run(output_names, {input_name: rows})
        labels = cast(np.ndarray, logits).argmax(axis=1).tolist()
        payload = orjson.dumps({"predictions": labels})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


if __name__ == "__main__":
    uvicorn.run(
        build_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
    )
