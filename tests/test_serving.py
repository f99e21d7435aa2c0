"""keras_prompt.serving: the TF Serving export, its signatures and the client.

One tiny model is exported once per module. The export is then loaded in a
fresh Python process that cannot import keras, keras-hub or keras-prompt (an
import hook refuses them) and that gets TF Text's SentencePiece kernels from
the op library alone, as the stock model server links them. That process loads
it twice, the way TF Serving's C++ loader does (restore op and init op into a
session, then `Session::Run` on the SignatureDefs' tensor names) and with
TF2's `tf.saved_model.load`, runs every request of this module through both,
the malformed ones included, and reports back.
"""

import fcntl
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, make_tiny_backbone, make_tokenizer

from keras_prompt import PromptTunedT5, save_prompt_file
from keras_prompt.serving import (
    PromptBank,
    client,
    export_saved_model,
    saved_model_ops,
)
from keras_prompt.serving import export as serving_export
from keras_prompt.serving import graph as serving_graph

PROMPT_LENGTH, HIDDEN = client.EXAMPLE_PROMPT_SHAPE
MAX_INPUT, MAX_DECODE = 24, 6
LONG = "sst2 sentence: " + "a long and winding review of a film that goes on " * 6
TEXTS = [
    LONG,
    "",
    "rte sentence1: The cat sat on the mat. sentence2: A cat is sitting.",
]
#: Three different prompts (bank rows 0, 1, 4), one per task.
MIXED_TASKS = ["sst2", "rte", "gen"]
CANDIDATES = [["negative", "positive"], ["entailment", "not_entailment"], ["yes", "no"]]
SENTENCEPIECE_OPS = {"SentencepieceOp", "SentencepieceTokenizeOp",
                     "SentencepieceDetokenizeOp"}


# ----------------------------------------------------------------------
# The export and the fresh serving process.
# ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(spiece_path):
    tokenizer = make_tokenizer(spiece_path)
    import keras_hub

    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=MAX_INPUT,
        decoder_sequence_length=MAX_DECODE,
    )
    return PromptTunedT5(
        make_tiny_backbone(), preprocessor, prompt_length=PROMPT_LENGTH
    )


@pytest.fixture(scope="module")
def bank_prompts():
    rng = np.random.default_rng(7)
    return [rng.normal(0, 0.5, (PROMPT_LENGTH, HIDDEN)).astype("float32")
            for _ in range(5)]


@pytest.fixture(scope="module")
def exported(model, bank_prompts, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    files = {}
    for i, prompt in enumerate(bank_prompts):
        files[i] = save_prompt_file(root / "prompts" / f"p{i}", prompt,
                                    {"task": "x"})
    bank = PromptBank.from_files(
        {"sst2": files[0], "rte": [files[1], files[2], files[3]], "gen": files[4]}
    )
    previous = os.umask(0o022)  # what test_export_is_readable_by_other_users expects
    try:
        path = export_saved_model(
            model, root / "models" / "t5_prompts", version=1, prompt_bank=bank,
            max_input_length=MAX_INPUT, max_decode_length=MAX_DECODE,
        )
    finally:
        os.umask(previous)
    return path


def _typed(value, dtype):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return {"dtype": dtype, "value": value}


def _strings(value):
    return _typed(value, "string")


def _floats(value):
    value = np.asarray(value, "float32")
    return {"dtype": "float32", "value": value.tolist(), "shape": list(value.shape)}


def _calls(bank_prompts):
    """Every request the serving process runs, in order: (id, signature, inputs)."""
    p = bank_prompts
    mixed_prompts = np.stack([p[0], p[1], p[4]])
    calls = [
        ("sd_mixed", "serving_default",
         {"text": _strings(TEXTS), "prompt": _floats(mixed_prompts)}),
        ("classify_mixed", "classify",
         {"text": _strings(TEXTS), "prompt": _floats(mixed_prompts),
          "candidates": _strings(CANDIDATES)}),
        ("classify_shared", "classify",
         {"text": _strings(TEXTS), "prompt": _floats(mixed_prompts),
          "candidates": _strings(CANDIDATES[0])}),
        ("by_task_mixed", "by_task",
         {"text": _strings(TEXTS), "task": _strings(MIXED_TASKS)}),
        ("ensemble_mixed", "ensemble",
         {"text": _strings(TEXTS), "task": _strings(["sst2", "rte", "rte"])}),
        ("truncated_a", "serving_default",
         {"text": _strings([LONG]), "prompt": _floats(p[0][None])}),
        ("truncated_b", "serving_default",
         {"text": _strings([LONG + " and then some more words at its end"]),
          "prompt": _floats(p[0][None])}),
        ("tfex_task", "serve_tf_examples",
         {"examples": _typed(
             [_b64(e) for e in client.serialize_examples(TEXTS, MIXED_TASKS)],
             "b64")}),
        ("tfex_default", "serve_tf_examples",
         {"examples": _typed(
             [_b64(e) for e in client.serialize_examples(TEXTS)], "b64")}),
    ]
    for i, text in enumerate(TEXTS):
        calls += [
            (f"sd_alone_{i}", "serving_default",
             {"text": _strings([text]), "prompt": _floats(mixed_prompts[i:i + 1])}),
            (f"classify_alone_{i}", "classify",
             {"text": _strings([text]), "prompt": _floats(mixed_prompts[i:i + 1]),
              "candidates": _strings([CANDIDATES[i]])}),
            (f"by_task_alone_{i}", "by_task",
             {"text": _strings([text]), "task": _strings([MIXED_TASKS[i]])}),
            (f"ensemble_alone_{i}", "ensemble",
             {"text": _strings([text]),
              "task": _strings([["sst2", "rte", "rte"][i]])}),
        ]
    good = ("good", "serving_default",
            {"text": _strings(TEXTS[1:]), "prompt": _floats(mixed_prompts[1:])})
    calls.append(good)
    for name, signature, inputs, _ in _bad_requests(p):
        calls.append((f"bad_{name}", signature, inputs))
        calls.append((f"good_after_{name}", *good[1:]))
    for name, body in client.example_requests().items():
        decoded = client.rest_request_tensors(body)
        inputs = {}
        for key, value in decoded.items():
            if value.dtype == object:
                inputs[key] = _typed(
                    np.vectorize(_b64, otypes=[object])(value).tolist(), "b64")
            else:
                inputs[key] = _floats(value)
        calls.append((f"example_{name}", body["signature_name"], inputs))
    return calls


def _b64(value: bytes) -> str:
    import base64

    return base64.b64encode(value).decode("ascii")


def _bad_requests(p):
    """(name, signature, inputs, expected message regex) of refused requests."""
    one = _strings(TEXTS[:1])
    two = _strings(TEXTS[:2])
    nan = p[0].copy()
    nan[1, 2] = np.nan
    inf = p[0].copy()
    inf[0, 0] = np.inf
    return [
        ("prompt_length", "serving_default",
         {"text": one, "prompt": _floats(p[0][None, :3])},
         r"prompt length\] \[3\] \[does not match prompt_length 4"),
        ("prompt_width", "serving_default",
         {"text": one, "prompt": _floats(p[0][None, :, :8])},
         r"prompt width\] \[8\] \[does not match hidden size 16"),
        ("prompt_rank", "serving_default",
         {"text": one, "prompt": _floats(p[0])},
         r"`prompt` must be float32 \[batch, prompt_length=4, hidden_dim=16\]"),
        ("text_rank", "serving_default",
         {"text": _strings([TEXTS[:1]]), "prompt": _floats(p[0][None])},
         r"`text` must be a 1-D string tensor"),
        ("text_scalar", "by_task",
         {"text": _strings(TEXTS[0]), "task": _strings(["sst2"])},
         r"`text` must be a 1-D string tensor"),
        ("prompt_nan", "serving_default",
         {"text": one, "prompt": _floats(nan[None])}, r"NaN or Inf"),
        ("prompt_inf", "classify",
         {"text": one, "prompt": _floats(inf[None]),
          "candidates": _strings(["a", "b"])}, r"NaN or Inf"),
        ("batch_sizes", "serving_default",
         {"text": two, "prompt": _floats(p[0][None])},
         r"`text` and `prompt` batch sizes differ"),
        ("empty_batch", "serving_default",
         {"text": _strings([]), "prompt": _floats(np.zeros((0, 4, 16)))},
         r"`text` is empty"),
        ("unknown_task", "by_task",
         {"text": two, "task": _strings(["sst2", "mnli"])},
         r"Unknown task\(s\):\] \[mnli\].*sst2 rte gen"),
        ("task_batch", "by_task",
         {"text": two, "task": _strings(["sst2"])},
         r"`task` and `text` batch sizes differ"),
        ("ensemble_unlabelled", "ensemble",
         {"text": one, "task": _strings(["gen"])},
         r"needs tasks with verbalizers.*\[gen\]"),
        ("candidates_empty", "classify",
         {"text": one, "prompt": _floats(p[0][None]), "candidates": _strings([])},
         r"`candidates` is empty"),
        ("candidates_rank", "classify",
         {"text": one, "prompt": _floats(p[0][None]),
          "candidates": _strings([[["a"]]])},
         r"`candidates` must be strings \[C\]"),
        ("candidates_blank", "classify",
         {"text": one, "prompt": _floats(p[0][None]),
          "candidates": _strings(["positive", " "])},
         r"`candidates` holds an empty candidate \(no tokens\)"),
        ("candidates_too_long", "classify",
         {"text": one, "prompt": _floats(p[0][None]),
          "candidates": _strings([LONG[:60], LONG[:90]])},
         r"`candidates` holds a candidate of\] \[\d+\] \[tokens; at most 5 fit "
         r"max_decode_length 6"),
        ("candidates_batch", "classify",
         {"text": one, "prompt": _floats(p[0][None]),
          "candidates": _strings([["a", "b"], ["c", "d"]])},
         r"`candidates` \[batch, C\] and `text` batch sizes differ"),
        ("example_garbage", "serve_tf_examples",
         {"examples": _typed([_b64(b"not a tf.Example")], "b64")},
         r"[Cc]ould not parse example"),
        ("example_no_text", "serve_tf_examples",
         {"examples": _typed([_b64(tf.train.Example().SerializeToString())], "b64")},
         r"text.*is required"),
    ]


WORKER = r'''
import base64, importlib.abc, importlib.util, json, os, sys

BLOCKED = ("keras", "keras_hub", "keras_nlp", "keras_prompt", "tf_keras")


class Blocked(ModuleNotFoundError, ValueError):
    """Refused import (ValueError too: TF probes `keras` with find_spec)."""


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise Blocked(f"{name} may not be imported here", name=name)
        return None


sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

# TF Text's kernels without its Python package (which imports Keras).
ops_dir = os.path.join(
    importlib.util.find_spec("tensorflow_text").submodule_search_locations[0],
    "python", "ops")
tf.load_op_library(os.path.join(ops_dir, "_sentencepiece_tokenizer.so"))

export_dir, calls_path, out_path = sys.argv[1:4]
calls = json.load(open(calls_path))


def array(spec):
    dtype, value = spec["dtype"], spec["value"]
    if dtype == "b64":
        return np.vectorize(base64.b64decode, otypes=[object])(
            np.asarray(value, dtype=object))
    if dtype == "string":
        return np.vectorize(lambda v: v.encode("utf-8"), otypes=[object])(
            np.asarray(value, dtype=object))
    return np.asarray(value, np.float32).reshape(spec["shape"])


def plain(value):
    value = np.asarray(value)
    if value.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8", "backslashreplace"),
                            otypes=[object])(value).tolist()
    return value.tolist()


warmup = []
path = os.path.join(export_dir, "assets.extra", "tf_serving_warmup_requests")
for record in tf.data.TFRecordDataset(path):
    request = prediction_log_pb2.PredictionLog.FromString(
        record.numpy()).predict_log.request
    warmup.append((request.model_spec.signature_name,
                   {k: tf.make_ndarray(v) for k, v in request.inputs.items()}))


def run_all(call):
    results = {}
    jobs = [(i, s, {k: array(v) for k, v in x.items()}) for i, s, x in calls]
    jobs += [(f"warmup_{s}", s, x) for s, x in warmup]
    for call_id, signature, inputs in jobs:
        try:
            outputs = call(signature, inputs)
            results[call_id] = {"outputs": {k: plain(v) for k, v in outputs.items()}}
        except Exception as e:
            results[call_id] = {"error": type(e).__name__, "message": str(e)}
    return results


# 1. The way TF Serving loads it: restore op + init op into a session, then
#    Session::Run with the SignatureDefs' tensor names.
session = tf.compat.v1.Session(graph=tf.Graph())
meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)


def session_call(signature, inputs):
    sig = meta.signature_def[signature]
    feeds = {sig.inputs[k].name: v for k, v in inputs.items()}
    return session.run({k: v.name for k, v in sig.outputs.items()}, feeds)


session_results = run_all(session_call)
signature_defs = {
    name: {"inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs)}
    for name, sig in meta.signature_def.items() if not name.startswith("__")
}

# 2. TF2's object-based loader.
loaded = tf.saved_model.load(export_dir)


def tf2_call(signature, inputs):
    fn = loaded.signatures[signature]
    return {k: v.numpy() for k, v in fn(
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}


json.dump({
    "results": session_results,
    "tf2_results": run_all(tf2_call),
    "signatures": signature_defs,
    "loaded_modules": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
}, open(out_path, "w"))
'''


@pytest.fixture(scope="module")
def served(exported, bank_prompts, tmp_path_factory):
    work = tmp_path_factory.mktemp("worker")
    (work / "worker.py").write_text(WORKER)
    (work / "calls.json").write_text(json.dumps(_calls(bank_prompts)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    process = subprocess.run(
        [sys.executable, str(work / "worker.py"), str(exported),
         str(work / "calls.json"), str(work / "out.json")],
        capture_output=True, text=True, env=env, cwd=work, timeout=600,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    return json.loads((work / "out.json").read_text())


def _ok(served, call_id):
    result = served["results"][call_id]
    assert "outputs" in result, f"{call_id}: {result}"
    return result["outputs"]


# ----------------------------------------------------------------------
# The artifact.
# ----------------------------------------------------------------------
def test_layout_metadata_and_warmup(exported):
    assert exported.name == "1" and exported.parent.name == "t5_prompts"
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".tmp")]
    assert (exported / "saved_model.pb").is_file()
    assert (exported / "variables" / "variables.index").is_file()
    metadata = json.loads((exported / "assets.extra" / "prompt_bank.json").read_text())
    assert metadata["prompt_shape"] == [PROMPT_LENGTH, HIDDEN]
    assert metadata["max_input_length"] == MAX_INPUT
    assert metadata["default_task"] == "sst2"
    assert metadata["tasks"]["rte"]["num_prompts"] == 3
    assert metadata["tasks"]["rte"]["prompt_indices"] == [1, 2, 3]
    assert metadata["tasks"]["sst2"]["verbalizers"] == ["negative", "positive"]
    assert metadata["tasks"]["gen"]["verbalizers"] == []
    assert set(metadata["signatures"]) == set(client.SIGNATURE_INPUTS)
    warmup = exported / "assets.extra" / "tf_serving_warmup_requests"
    assert sum(1 for _ in tf.data.TFRecordDataset(str(warmup))) == 5


def test_graph_holds_only_core_tf_and_tf_text_ops(exported):
    ops = saved_model_ops(exported)
    assert SENTENCEPIECE_OPS <= ops and "While" in ops
    assert not [op for op in ops if op.startswith("Xla")]
    assert {op for op in ops if not hasattr(tf.raw_ops, op)} == SENTENCEPIECE_OPS


def test_tf2_loader_gives_the_same_results_as_the_session_loader(served):
    assert served["tf2_results"].keys() == served["results"].keys()
    for call_id, result in served["results"].items():
        other = served["tf2_results"][call_id]
        if "error" in result:
            assert other.get("error") == result["error"], call_id
            continue
        for key, value in result["outputs"].items():
            if isinstance(value, list) and value and isinstance(value[0], str):
                assert other["outputs"][key] == value, (call_id, key)
            else:
                np.testing.assert_allclose(
                    other["outputs"][key], value, atol=1e-5, err_msg=call_id
                )


def test_loads_without_keras_and_serves_every_signature(served):
    assert served["loaded_modules"] == []
    expected = {
        name: {"inputs": sorted(client.SIGNATURE_INPUTS[name]),
               "outputs": sorted(client.SIGNATURE_OUTPUTS[name])}
        for name in client.SIGNATURE_INPUTS
    }
    assert served["signatures"] == expected
    for name in client.SIGNATURE_INPUTS:
        assert f"warmup_{name}" in served["results"], served["results"].keys()
        _ok(served, f"warmup_{name}")


def test_saved_model_cli_lists_the_signatures(exported):
    cli = Path(sys.executable).with_name("saved_model_cli")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(exported), "--all"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name, inputs in client.SIGNATURE_INPUTS.items():
        assert f"signature_def['{name}']" in shown.stdout
        for input_name in inputs:
            assert f"inputs['{input_name}']" in shown.stdout
    assert "outputs['output_text']" in shown.stdout
    assert "outputs['prompt_labels']" in shown.stdout


# ----------------------------------------------------------------------
# Parity with the Keras model.
# ----------------------------------------------------------------------
def _reference_greedy(model, text, prompt):
    """Uncached greedy decoding with the Keras model (argmax over the vocab)."""
    tokenizer = model.preprocessor.tokenizer
    tokens = [int(i) for i in np.asarray(tokenizer(text))][: MAX_INPUT - 1]
    ids = np.array([tokens + [tokenizer.end_token_id]], "int32")
    mask = np.ones_like(ids, "int32")
    encoded, encoded_mask = model.encode(ids, mask, prompt[None])
    decoded, score = [0], 0.0
    for _ in range(MAX_DECODE):
        hidden = model.decode(
            np.array([decoded], "int32"), np.ones((1, len(decoded)), "int32"),
            encoded, encoded_mask,
        )
        logits = np.asarray(model.logits(hidden))[0, -1].astype("float64")
        top = logits.max()
        log_probs = logits - (top + np.log(np.exp(logits - top).sum()))
        choice = int(np.argmax(log_probs[:32000]))
        score += log_probs[choice]
        decoded.append(choice)
        if choice == 1:
            break
    pieces = decoded[1:-1] if decoded[-1] == 1 else decoded[1:]
    text = model.preprocessor.tokenizer.detokenize([pieces])
    return np.asarray(text).reshape(-1)[0], score


def _as_text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
def test_generation_matches_uncached_keras_greedy_decoding(served, model, bank_prompts):
    out = _ok(served, "sd_mixed")
    prompts = [bank_prompts[0], bank_prompts[1], bank_prompts[4]]
    for i, text in enumerate(TEXTS):
        expected_text, expected_score = _reference_greedy(model, text, prompts[i])
        assert out["output_text"][i] == _as_text(expected_text)
        assert out["output_score"][i] == pytest.approx(expected_score, abs=1e-4)
    assert all(s < 0 for s in out["output_score"])


def test_classify_matches_model_score(served, model, bank_prompts):
    prompts = np.stack([bank_prompts[0], bank_prompts[1], bank_prompts[4]])
    out = _ok(served, "classify_mixed")
    expected = model.score(TEXTS, CANDIDATES, prompts=prompts)
    np.testing.assert_allclose(out["scores"], expected, atol=1e-4)
    assert out["label"] == expected.argmax(-1).tolist()
    assert out["label_text"] == [c[k] for c, k in zip(CANDIDATES, out["label"])]
    shared = _ok(served, "classify_shared")
    np.testing.assert_allclose(
        shared["scores"], model.score(TEXTS, CANDIDATES[0], prompts=prompts), atol=1e-4
    )


def test_by_task_uses_the_bank_prompt_and_verbalizers(served, model, bank_prompts):
    out = _ok(served, "by_task_mixed")
    same = _ok(served, "sd_mixed")
    assert out["output_text"] == same["output_text"]  # prompts 0, 1, 4 as above
    np.testing.assert_allclose(out["output_score"], same["output_score"], atol=1e-5)
    sst2 = model.predict_label(TEXTS[:1], ["negative", "positive"],
                               prompts=bank_prompts[0][None])
    rte = model.predict_label(TEXTS[1:2], ["entailment", "not_entailment"],
                              prompts=bank_prompts[1][None])
    assert out["label"] == [int(sst2[0]), int(rte[0]), -1]
    assert out["label_text"][0] == ["negative", "positive"][sst2[0]]
    assert out["label_text"][2] == ""


def test_ensemble_is_a_majority_vote_over_the_task_prompts(served, model, bank_prompts):
    out = _ok(served, "ensemble_mixed")
    assert out["num_prompts"] == [1, 3, 3]
    verbalizers = ["entailment", "not_entailment"]
    for i in (1, 2):
        per_prompt = [
            int(model.predict_label([TEXTS[i]], verbalizers, prompts=p[None])[0])
            for p in bank_prompts[1:4]
        ]
        assert out["prompt_labels"][i] == per_prompt
        votes = np.bincount(per_prompt, minlength=2)
        assert out["votes"][i] == votes.tolist()
        assert out["label"][i] == int(votes.argmax())  # 3 voters: no ties
        assert out["label_text"][i] == verbalizers[out["label"][i]]
    assert out["prompt_labels"][0][1:] == [-1, -1]


@pytest.mark.parametrize(
    "scores,expected",
    [([[-1.0, -5.0], [-4.0, -2.5]], 0), ([[-3.0, -3.5], [-6.0, -1.0]], 1)],
)
def test_ensemble_tie_goes_to_the_best_mean_score(scores, expected):
    scores = tf.constant(scores)
    labels = tf.argmax(scores, axis=-1, output_type=tf.int32)
    label, votes, count = serving_graph.majority_vote(
        scores, labels, tf.constant([0, 0]), 1, 2
    )
    assert votes.numpy().tolist() == [[1, 1]] and count.numpy().tolist() == [2]
    assert int(label[0]) == expected


# ----------------------------------------------------------------------
# Mixed batches, truncation, tf.Example input.
# ----------------------------------------------------------------------
@pytest.mark.parametrize("signature", ["sd", "classify", "by_task", "ensemble"])
def test_mixed_batch_equals_each_example_alone(served, signature):
    mixed = _ok(served, f"{signature}_mixed")
    for i in range(len(TEXTS)):
        alone = _ok(served, f"{signature}_alone_{i}")
        for key, values in mixed.items():
            got, want = values[i], alone[key][0]
            if isinstance(want, float) or (
                isinstance(want, list) and want and isinstance(want[0], float)
            ):
                np.testing.assert_allclose(got, want, atol=1e-5, err_msg=key)
            else:
                assert got == want, (signature, key, i)


def test_over_long_text_is_truncated_and_empty_text_is_served(served):
    a, b = _ok(served, "truncated_a"), _ok(served, "truncated_b")
    assert a["output_text"] == b["output_text"]
    np.testing.assert_allclose(a["output_score"], b["output_score"], atol=1e-6)
    assert math.isfinite(_ok(served, "sd_alone_1")["output_score"][0])  # ""


def test_serve_tf_examples_matches_by_task(served):
    by_task = _ok(served, "by_task_mixed")
    assert _ok(served, "tfex_task") == by_task
    default = _ok(served, "tfex_default")  # no task feature: the default, sst2
    assert default["label"][0] == by_task["label"][0]
    assert default["output_text"][0] == by_task["output_text"][0]


# ----------------------------------------------------------------------
# Bad requests.
# ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,regex", [(b[0], b[3]) for b in _bad_requests([np.zeros((4, 16))] * 5)],
    ids=[b[0] for b in _bad_requests([np.zeros((4, 16))] * 5)],
)
def test_bad_request_is_refused_and_the_server_survives(served, name, regex):
    import re

    result = served["results"][f"bad_{name}"]
    assert result.get("error") == "InvalidArgumentError", result
    assert re.search(regex, result["message"]), result["message"][-1500:]
    assert _ok(served, f"good_after_{name}") == _ok(served, "good")


# ----------------------------------------------------------------------
# export_saved_model arguments, PromptBank.
# ----------------------------------------------------------------------
def test_existing_version_is_refused_and_next_version_is_picked(exported, model):
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(model, exported.parent, version=1)
    (exported.parent / "7").mkdir()
    try:
        assert serving_export._next_version(exported.parent) == 8
    finally:
        (exported.parent / "7").rmdir()


def test_export_refuses_a_bank_of_the_wrong_shape(model, tmp_path):
    bank = PromptBank.from_arrays({"sst2": np.zeros((5, HIDDEN), "float32")})
    with pytest.raises(ValueError, match="prompt_length 4"):
        export_saved_model(model, tmp_path, prompt_bank=bank)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="default_task"):
        export_saved_model(model, tmp_path, default_task="nope")


def test_default_bank_is_the_model_prompt(model):
    bank = serving_export._resolve_bank(model, None)
    assert bank.tasks == ["default"] and bank.verbalizers["default"] == ()
    np.testing.assert_array_equal(bank.prompts["default"][0], model.get_prompt())


def test_prompt_bank_from_files(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 8)).astype("float32")
    save_prompt_file(tmp_path / "a", a, {"verbalizers": ["no", "yes"]})
    save_prompt_file(tmp_path / "b", b, {"verbalizers": ["no", "yes"]})
    bank = PromptBank.from_files(
        {"boolq_custom": [tmp_path / "a.npy", tmp_path / "b"], "sst2": b}
    )
    assert bank.tasks == ["boolq_custom", "sst2"]
    assert bank.verbalizers == {"boolq_custom": ("no", "yes"),
                                "sst2": ("negative", "positive")}
    stacked, indices = bank.stacked()
    assert stacked.shape == (3, 3, 8) and indices == {"boolq_custom": [0, 1],
                                                     "sst2": [2]}
    np.testing.assert_array_equal(stacked[1], b)
    assert bank.metadata()["boolq_custom"]["sources"][0].endswith("a.npy")

    ensemble = PromptBank.from_arrays({"rte": np.stack([a, b])})
    assert len(ensemble.prompts["rte"]) == 2  # [K, P, H] is K prompts
    assert ensemble.verbalizers["rte"] == ("entailment", "not_entailment")

    save_prompt_file(tmp_path / "c", a, {"verbalizers": ["false", "true"]})
    with pytest.raises(ValueError, match="disagree"):
        PromptBank.from_files({"t": [tmp_path / "a", tmp_path / "c"]})
    with pytest.raises(ValueError, match="share one"):
        PromptBank.from_arrays({"x": a, "y": np.zeros((4, 8))})
    with pytest.raises(ValueError, match="finite"):
        PromptBank.from_arrays({"x": np.full((3, 8), np.nan)})
    with pytest.raises(ValueError, match="at least one task"):
        PromptBank({})
    with pytest.raises(ValueError, match="distinct"):
        PromptBank.from_arrays({"x": a}, verbalizers={"x": ["a", "a"]})
    with pytest.raises(ValueError, match="must be a list of strings; got 'neg'"):
        PromptBank.from_arrays({"x": a}, verbalizers={"x": "neg"})


def test_export_refuses_prompts_of_another_backbone(model, tmp_path):
    prompt = np.zeros((PROMPT_LENGTH, HIDDEN), "float32")
    other = {"fingerprint": "0123456789abcdef", "hidden_dim": HIDDEN}
    save_prompt_file(tmp_path / "p", prompt, {"backbone": other})
    with pytest.raises(ValueError, match=r"'backbone.fingerprint' is 0123456789"):
        export_saved_model(model, tmp_path / "base", prompt_bank={"x": tmp_path / "p"})
    assert not (tmp_path / "base").exists()


def test_a_failed_export_leaves_nothing(model, tmp_path):
    base = tmp_path / "models" / "t5"
    with pytest.raises(ValueError, match="`version` must be an integer >= 0"):
        export_saved_model(model, base, version=-1)
    assert not (tmp_path / "models").exists()
    too_long = PromptBank.from_arrays(
        {"x": np.zeros((PROMPT_LENGTH, HIDDEN))}, {"x": ["yes", LONG]}
    )
    with pytest.raises(ValueError, match=r"Verbalizer .* of task 'x' has \d+ tokens"):
        export_saved_model(
            model, base, prompt_bank=too_long, max_decode_length=MAX_DECODE
        )
    assert not (tmp_path / "models").exists()


def test_export_is_readable_by_other_users(exported):
    """What a plain mkdir / open() gives under umask 022 (not mkdtemp's
    0700): a model server running as another user can read the export."""
    for entry in [exported, *exported.rglob("*")]:
        mode = stat.S_IMODE(entry.stat().st_mode)
        assert mode == (0o755 if entry.is_dir() else 0o644), (entry, oct(mode))


def test_a_killed_exports_leftovers_are_removed(model, tmp_path):
    base = tmp_path / "models" / "t5"
    # Left by a killed export (nobody holds it), and another export's work in
    # progress (locked).
    stale = base / ".tmp-1-0123456789ab"
    (stale / "variables").mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half written")
    live = base / ".tmp-2-ba9876543210"
    live.mkdir()
    held = os.open(live, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        path = export_saved_model(
            model, base, version=None, max_input_length=MAX_INPUT,
            max_decode_length=MAX_DECODE, warmup=False,
        )
    finally:
        os.close(held)
    assert path == base / "1"
    assert sorted(p.name for p in base.iterdir()) == [live.name, "1"]


def test_core_tf_dynamic_update_slice_matches_xla():
    from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(2, 5, 3, 4)).astype("float32")
    update = rng.normal(size=(2, 2, 3, 4)).astype("float32")
    for start in ([0, 0, 0, 0], [0, 2, 0, 0], [0, 4, 0, 0]):  # the last clamps
        ours = serving_graph.dynamic_update_slice(inputs, update, start)
        theirs = dynamic_update_slice(inputs, update, start)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


# ----------------------------------------------------------------------
# Client and the export/ folder.
# ----------------------------------------------------------------------
EXPORT_DIR = REPO_ROOT / "export"


def test_committed_request_bodies_are_what_the_client_builds():
    built = client.example_requests()
    committed = sorted(p.name for p in (EXPORT_DIR / "requests").glob("*.json"))
    assert committed == sorted(built)
    for name, body in built.items():
        on_disk = json.loads((EXPORT_DIR / "requests" / name).read_text())
        assert on_disk == json.loads(json.dumps(body)), name


def test_committed_request_bodies_run_against_the_export(served):
    for name in client.example_requests():
        out = _ok(served, f"example_{name}")
        assert len(next(iter(out.values()))) == len(client.EXAMPLE_TEXTS)


@pytest.mark.parametrize("signature", list(client.SIGNATURE_INPUTS))
def test_grpc_and_rest_requests_round_trip(signature):
    kwargs = {
        "text": list(client.EXAMPLE_TEXTS),
        "prompt": np.stack([client.example_prompt(0), client.example_prompt(1)]),
        "candidates": ["negative", "positive"],
        "task": ["sst2", "rte"],
    }
    wanted = {k: v for k, v in kwargs.items()
              if k in client.SIGNATURE_INPUTS[signature] or signature ==
              "serve_tf_examples" and k in ("text", "task")}
    tensors = client.build_inputs(signature, **wanted)
    assert sorted(tensors) == sorted(client.SIGNATURE_INPUTS[signature])
    request = client.predict_request("t5_prompts", signature, version=2, **wanted)
    assert request.model_spec.name == "t5_prompts"
    assert request.model_spec.signature_name == signature
    assert request.model_spec.version.value == 2
    from_grpc = client.request_tensors(request)
    from_rest = client.rest_request_tensors(client.rest_body(signature, **wanted))
    for name, value in tensors.items():
        assert from_grpc[name].dtype == value.dtype
        np.testing.assert_array_equal(from_grpc[name], value)
        np.testing.assert_array_equal(from_rest[name], value)
    if signature == "classify":
        assert tensors["candidates"].shape == (2, 2)  # tiled for batching
    if signature == "serve_tf_examples":
        parsed = tf.io.parse_example(
            from_grpc["examples"],
            {"text": tf.io.FixedLenFeature([], tf.string),
             "task": tf.io.FixedLenFeature([], tf.string)},
        )
        assert parsed["task"].numpy().tolist() == [b"sst2", b"rte"]
        assert parsed["text"].numpy()[0].decode() == client.EXAMPLE_TEXTS[0]


def test_client_helpers():
    assert client.rest_url("m") == "http://localhost:8501/v1/models/m:predict"
    assert client.rest_url("m", "h", 9, version=3).endswith("/m/versions/3:predict")
    canary = client.rest_url("m", version_label="canary")
    assert canary.endswith("/labels/canary:predict")
    request = client.predict_request("m", "by_task", version_label="stable",
                                     text="x", task="sst2")
    assert request.model_spec.version_label == "stable"
    assert client.request_tensors(request)["task"].tolist() == [b"sst2"]
    parsed = client.parse_rest_response(
        {"outputs": {"label": [1, 0], "label_text": ["a", "b"]}})
    assert parsed["label"].tolist() == [1, 0]
    with pytest.raises(RuntimeError, match="refused"):
        client.parse_rest_response({"error": "bad"})
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    ones = tf.make_tensor_proto(np.ones((2, 3), "float32"))
    response.outputs["scores"].CopyFrom(ones)
    assert client.parse_predict_response(response)["scores"].shape == (2, 3)
    with pytest.raises(ValueError, match="Unknown signature"):
        client.build_inputs("predict", text=["x"])
    with pytest.raises(ValueError, match="needs `prompt`"):
        client.build_inputs("serving_default", text=["x"])


def test_models_config_and_batching_parameters_parse():
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message_factory,
        text_format,
        wrappers_pb2,
    )
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(
        (EXPORT_DIR / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig(),
    )
    models = config.model_config_list.config
    assert len(models) == 1 and models[0].model_platform == "tensorflow"
    assert len(models[0].model_version_policy.specific.versions) >= 2
    assert set(models[0].version_labels.values()) <= set(
        models[0].model_version_policy.specific.versions)

    # BatchingParameters (tensorflow_serving/servables/tensorflow/
    # session_bundle_config.proto) is not in the pip package: rebuild it.
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="batching.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    fields = [("max_batch_size", ".google.protobuf.Int64Value"),
              ("batch_timeout_micros", ".google.protobuf.Int64Value"),
              ("max_enqueued_batches", ".google.protobuf.Int64Value"),
              ("num_batch_threads", ".google.protobuf.Int64Value"),
              ("thread_pool_name", ".google.protobuf.StringValue")]
    for number, (name, type_name) in enumerate(fields, start=1):
        message.field.add(name=name, number=number, type_name=type_name,
                          type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                          label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6,
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7,
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool.Add(proto)
    cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
    params = text_format.Parse(
        (EXPORT_DIR / "batching_parameters.txt").read_text(), cls())
    assert params.max_batch_size.value >= 32
    assert list(params.allowed_batch_sizes)[-1] == params.max_batch_size.value
