"""Client helpers: TF Serving REST bodies and gRPC `PredictRequest`s.

The export's signatures take plain tensors, but getting a request exactly
right by hand (columnar JSON, `{"b64": ...}` for serialized protos, one
`[batch, prompt_length, hidden_dim]` prompt per example, string tensors in
`TensorProto`s) is fiddly; these functions build both wire formats from the
same Python values, so a request that works over REST works over gRPC.

Nothing here needs the model: only `numpy`, `tensorflow` (for `TensorProto`
and `tf.train.Example`) and `tensorflow-serving-api` (request protos).

REST bodies use TF Serving's columnar format (`{"signature_name": ...,
"inputs": {...}}`), which, unlike the row format, also carries inputs that
are not batch-major (a shared `candidates` list). Responses come back as
`{"outputs": {...}}`; `parse_rest_response` turns them into numpy arrays.

Example:

```python
from keras_prompt.serving import client

body = client.rest_body("by_task", text=["sst2 sentence: a gem"], task=["sst2"])
outputs = client.predict_rest(body, client.rest_url("t5_prompts"))
request = client.predict_request("t5_prompts", "by_task", text=["..."], task=["sst2"])
outputs = client.predict_grpc(request, "localhost:8500")
```
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

#: Signature name -> its input names, in order.
SIGNATURE_INPUTS: dict[str, tuple[str, ...]] = {
    "serving_default": ("text", "prompt"),
    "classify": ("text", "prompt", "candidates"),
    "by_task": ("text", "task"),
    "ensemble": ("text", "task"),
    "serve_tf_examples": ("examples",),
}

#: Signature name -> its output names.
SIGNATURE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "serving_default": ("output_text", "output_score"),
    "classify": ("scores", "label", "label_text"),
    "by_task": ("output_text", "output_score", "label", "label_text"),
    "ensemble": ("label", "label_text", "prompt_labels", "votes", "num_prompts"),
    "serve_tf_examples": ("output_text", "output_score", "label", "label_text"),
}

_STRING_INPUTS = ("text", "task", "candidates", "examples")


def _strings(values: str | bytes | Sequence[Any], name: str) -> np.ndarray:
    """A numpy object array of `bytes` (UTF-8), the form `TensorProto` wants."""
    if isinstance(values, (str, bytes)):
        values = [values]
    array = np.asarray(values, dtype=object)
    if array.size == 0:
        raise ValueError(f"`{name}` must hold at least one string.")

    def encode(value):
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        raise TypeError(f"`{name}` must hold strings; got {type(value).__name__}.")

    return np.vectorize(encode, otypes=[object])(array)


def serialize_examples(
    text: str | Sequence[str], task: str | Sequence[str] | None = None
) -> list[bytes]:
    """Serialized `tf.Example`s with a `text` and (optionally) `task` feature.

    This is the TFX / TFMA convention for `serve_tf_examples`: one bytes
    feature per field. Without `task` the export's default task is used.
    """
    import tensorflow as tf

    texts = [text] if isinstance(text, str) else list(text)
    tasks = None
    if task is not None:
        tasks = [task] * len(texts) if isinstance(task, str) else list(task)
        if len(tasks) != len(texts):
            raise ValueError(
                f"`task` has {len(tasks)} entries for {len(texts)} texts."
            )
    serialized = []
    for i, value in enumerate(texts):
        feature = {
            "text": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[value.encode("utf-8")])
            )
        }
        if tasks is not None:
            feature["task"] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[tasks[i].encode("utf-8")])
            )
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        serialized.append(example.SerializeToString(deterministic=True))
    return serialized


def build_inputs(
    signature: str,
    *,
    text: str | Sequence[str] | None = None,
    prompt: Any = None,
    candidates: Sequence[str] | Sequence[Sequence[str]] | None = None,
    task: str | Sequence[str] | None = None,
    examples: Sequence[bytes] | None = None,
    tile_candidates: bool = True,
) -> dict[str, np.ndarray]:
    """The numpy input tensors of one request to `signature`.

    Args:
        signature: one of `SIGNATURE_INPUTS`.
        text: the T5 input strings (`[B]`); a single string is a batch of 1.
        prompt: `[B, prompt_length, hidden_dim]` floats (`serving_default`,
            `classify`); a single `[P, H]` prompt is used for every text.
        candidates: `classify`'s label strings, `[C]` shared or `[B, C]`.
        task: task names (`by_task`, `ensemble`, optional for
            `serve_tf_examples`); one string is used for every text.
        examples: already serialized `tf.Example`s for `serve_tf_examples`
            (else they are built from `text` and `task`).
        tile_candidates: send shared candidates as `[B, C]` (default). TF
            Serving's server-side batching concatenates every input along its
            first axis, which is only right for batch-major inputs.
    """
    if signature not in SIGNATURE_INPUTS:
        raise ValueError(
            f"Unknown signature {signature!r}; expected one of "
            f"{list(SIGNATURE_INPUTS)}."
        )
    if signature == "serve_tf_examples":
        if examples is None:
            if text is None:
                raise ValueError("`serve_tf_examples` needs `text` or `examples`.")
            examples = serialize_examples(text, task)
        return {"examples": _strings(list(examples), "examples")}
    if text is None:
        raise ValueError(f"`{signature}` needs `text`.")
    texts = _strings(text, "text")
    if texts.ndim != 1:
        raise ValueError(f"`text` must be a list of strings; got shape {texts.shape}.")
    batch = texts.shape[0]
    inputs: dict[str, np.ndarray] = {"text": texts}
    if "prompt" in SIGNATURE_INPUTS[signature]:
        if prompt is None:
            raise ValueError(f"`{signature}` needs `prompt`.")
        prompts = np.asarray(prompt, dtype=np.float32)
        if prompts.ndim == 2:
            prompts = np.broadcast_to(prompts, (batch, *prompts.shape)).copy()
        inputs["prompt"] = prompts
    if "candidates" in SIGNATURE_INPUTS[signature]:
        if candidates is None:
            raise ValueError("`classify` needs `candidates`.")
        labels = _strings(list(candidates), "candidates")
        if labels.ndim == 1 and tile_candidates:
            labels = np.tile(labels[None, :], (batch, 1))
        inputs["candidates"] = labels
    if "task" in SIGNATURE_INPUTS[signature]:
        if task is None:
            raise ValueError(f"`{signature}` needs `task`.")
        tasks = _strings([task] * batch if isinstance(task, str) else task, "task")
        inputs["task"] = tasks
    return inputs


def _to_json(name: str, array: np.ndarray) -> Any:
    if array.dtype == object:
        if name == "examples":
            return [{"b64": base64.b64encode(v).decode("ascii")} for v in array]
        return np.vectorize(lambda v: v.decode("utf-8"), otypes=[object])(
            array
        ).tolist()
    return array.tolist()


def rest_body(signature: str, **inputs: Any) -> dict[str, Any]:
    """The JSON body of a REST `:predict` call (columnar `inputs` format).

    Takes the same keyword arguments as `build_inputs`. Serialized
    `tf.Example`s are sent as `{"b64": ...}` objects, as TF Serving requires
    for binary strings.
    """
    tensors = build_inputs(signature, **inputs)
    return {
        "signature_name": signature,
        "inputs": {name: _to_json(name, value) for name, value in tensors.items()},
    }


def predict_request(
    model_name: str,
    signature: str,
    *,
    version: int | None = None,
    version_label: str | None = None,
    **inputs: Any,
):
    """A gRPC `tensorflow.serving.PredictRequest` for `signature`.

    Takes the same keyword arguments as `build_inputs`; `version` or
    `version_label` pins a model version (default: the server's latest).
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    if version is not None and version_label is not None:
        raise ValueError("Give `version` or `version_label`, not both.")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    if version_label is not None:
        request.model_spec.version_label = version_label
    for name, value in build_inputs(signature, **inputs).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def request_tensors(request) -> dict[str, np.ndarray]:
    """The numpy tensors a `PredictRequest` carries (what the server feeds)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}


def rest_request_tensors(body: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Decodes a columnar REST body the way TF Serving does, into numpy arrays.

    Useful to check a JSON body against the export without a server: strings
    become `bytes`, `{"b64": ...}` objects are decoded, numbers become float32
    (every numeric input of the export is float32).
    """

    def decode(value):
        if isinstance(value, dict):
            return base64.b64decode(value["b64"])
        if isinstance(value, str):
            return value.encode("utf-8")
        return value

    tensors = {}
    for name, value in body["inputs"].items():
        if name in _STRING_INPUTS:
            array = np.asarray(value, dtype=object)
            tensors[name] = np.vectorize(decode, otypes=[object])(array)
        else:
            tensors[name] = np.asarray(value, dtype=np.float32)
    return tensors


def parse_rest_response(body: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`{"outputs": {...}}` (or row-format `predictions`) as numpy arrays."""
    if "error" in body:
        raise RuntimeError(f"TF Serving refused the request: {body['error']}")
    if "outputs" in body:
        outputs = body["outputs"]
        if not isinstance(outputs, dict):
            return {"output": np.asarray(outputs)}
        return {name: np.asarray(value) for name, value in outputs.items()}
    rows = body["predictions"]
    if rows and isinstance(rows[0], dict):
        return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}
    return {"output": np.asarray(rows)}


def parse_predict_response(response) -> dict[str, np.ndarray]:
    """A gRPC `PredictResponse` as numpy arrays (strings stay `bytes`)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def rest_url(
    model_name: str,
    host: str = "localhost",
    port: int = 8501,
    *,
    version: int | None = None,
    version_label: str | None = None,
) -> str:
    """`http://host:port/v1/models/<name>[/versions/N|/labels/L]:predict`."""
    if version is not None and version_label is not None:
        raise ValueError("Give `version` or `version_label`, not both.")
    url = f"http://{host}:{port}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{int(version)}"
    elif version_label is not None:
        url += f"/labels/{version_label}"
    return url + ":predict"


def predict_rest(
    body: Mapping[str, Any], url: str, timeout: float = 30.0
) -> dict[str, np.ndarray]:
    """POSTs a body built by `rest_body` and parses the reply.

    TF Serving answers a refused request with HTTP 400 and a JSON `error`,
    which is raised here as `RuntimeError` with the server's message.
    """
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            payload = json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        payload = json.loads(e.read().decode("utf-8") or "{}")
        if "error" not in payload:
            raise
    return parse_rest_response(payload)


def predict_grpc(request, target: str = "localhost:8500", timeout: float = 30.0):
    """Sends a `PredictRequest` over gRPC; returns the outputs as numpy."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return parse_predict_response(stub.Predict(request, timeout))


# ----------------------------------------------------------------------
# The example request bodies committed under export/requests/.
# ----------------------------------------------------------------------
#: Prompt shape of the example bodies: the unit-test model's
#: (prompt_length=4, hidden_dim=16). A real export wants its own
#: (prompt_length, hidden_dim), e.g. (100, 768) for T5 1.1 base.
EXAMPLE_PROMPT_SHAPE: tuple[int, int] = (4, 16)

EXAMPLE_TEXTS: tuple[str, ...] = (
    "sst2 sentence: a gripping, funny and humane film",
    "rte sentence1: The cat sat on the mat. sentence2: A cat is sitting.",
)


def example_prompt(offset: int = 0) -> np.ndarray:
    """A deterministic example prompt whose values are exact in JSON (k/8)."""
    length, width = EXAMPLE_PROMPT_SHAPE
    values = (np.arange(length * width) * 3 + offset) % 17 - 8
    return (values / 8.0).reshape(length, width).astype(np.float32)


def example_requests() -> dict[str, dict[str, Any]]:
    """File name -> REST body of the example requests in `export/requests/`."""
    prompts = np.stack([example_prompt(0), example_prompt(5)])
    texts = list(EXAMPLE_TEXTS)
    return {
        "serving_default.json": rest_body(
            "serving_default", text=texts, prompt=prompts
        ),
        "classify.json": rest_body(
            "classify",
            text=texts,
            prompt=prompts,
            candidates=[["negative", "positive"], ["entailment", "not_entailment"]],
        ),
        "by_task.json": rest_body("by_task", text=texts, task=["sst2", "rte"]),
        "ensemble.json": rest_body("ensemble", text=texts, task=["sst2", "rte"]),
        "serve_tf_examples.json": rest_body(
            "serve_tf_examples", text=texts, task=["sst2", "rte"]
        ),
    }


def format_json(body: Mapping[str, Any]) -> str:
    """Indented JSON with each innermost list of numbers on one line."""
    text = json.dumps(body, indent=1)
    return re.sub(
        r"\[\s+([-0-9.eE+,\s]+?)\s+\]",
        lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
        text,
    )


def write_example_requests(directory: str | Path) -> list[Path]:
    """Writes `example_requests()` as JSON files; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, body in example_requests().items():
        path = directory / name
        path.write_text(format_json(body) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m keras_prompt.serving.client write-examples export/requests`."""
    parser = argparse.ArgumentParser(prog="python -m keras_prompt.serving.client")
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write-examples", help=write_example_requests.__doc__)
    write.add_argument("directory", nargs="?", default="export/requests")
    args = parser.parse_args(argv)
    for path in write_example_requests(args.directory):
        print(path)


if __name__ == "__main__":
    main()
