"""Hugging Face T5 import: numerical parity with transformers, and bad input.

Every flavour is a tiny random checkpoint written by ``transformers`` itself,
so the reference numbers come from the real PyTorch implementation reading the
same files the importer reads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

try:
    import torch
    import transformers
    from safetensors.torch import load_file, save_file
except ImportError as error:  # pragma: no cover - environment problem
    pytest.fail(
        "tests/test_hf_import.py needs torch, transformers and safetensors (the "
        f"test extra): {error}",
        pytrace=False,
    )

import keras
import keras_hub

from keras_prompt.checkpoints import convert_hf_checkpoint, load_hf_t5
from keras_prompt.checkpoints.huggingface import HFCheckpointError

ATOL = 1e-4
TINY = dict(
    vocab_size=32128,  # The real spiece.model has 32000 pieces.
    d_model=16,
    d_kv=8,
    d_ff=32,
    num_layers=2,
    num_heads=2,
    dropout_rate=0.0,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
)
# Encoder batch with right padding in the second row; decoder likewise.
ENCODER_IDS = np.array([[37, 1782, 19, 5, 207, 7, 1], [8, 1782, 1, 0, 0, 0, 0]])
DECODER_IDS = np.array([[0, 37, 1782, 19, 1], [0, 1782, 1, 0, 0]])


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Give every weight (layer norms included) a distinctive random value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "layer_norm" in name:
                parameter.copy_(1.0 + 0.2 * noise)
            elif name == "shared.weight" or "relative_attention_bias" in name:
                parameter.copy_(noise)
            else:
                parameter.copy_(noise * parameter.shape[1] ** -0.5)


def _edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is _DROP:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config, indent=2))


_DROP = object()


def _write_flavour(directory: Path, flavour: str, spiece_path: Path) -> Path:
    """Write a tiny checkpoint laid out like the real ones of each flavour.

    ``t5_1.0``: ReLU FFN, tied head, transformers 4.x config (no
    ``scale_decoder_outputs``), plus the duplicate embedding names and the
    unused cross-attention bias found in old t5-small checkpoints.
    ``t5_1.1``: gated-GELU FFN and a separate ``lm_head.weight`` with
    ``tie_word_embeddings=false``, like google/t5-v1_1-*, the LM-adapted
    checkpoints and google/flan-t5-*.
    ``t5_1.1_v5``: the same model as transformers 5 writes it (config with
    ``scale_decoder_outputs=false``, head stored as ``shared.weight``).
    """
    gated = flavour != "t5_1.0"
    config = transformers.T5Config(
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
        **TINY,
    )
    seed = {"t5_1.0": 10, "t5_1.1": 11, "t5_1.1_v5": 12}[flavour]
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(config).eval()
    _randomize(model, seed)
    model.save_pretrained(directory, safe_serialization=True)
    shutil.copy(spiece_path, directory / "spiece.model")

    weights = directory / "model.safetensors"
    tensors = load_file(weights)
    if flavour == "t5_1.0":
        shared = tensors["shared.weight"]
        tensors["encoder.embed_tokens.weight"] = shared.clone()
        tensors["decoder.embed_tokens.weight"] = shared.clone()
        tensors[
            "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"
        ] = torch.randn(32, TINY["num_heads"])
        save_file(tensors, weights, metadata={"format": "pt"})
        _edit_config(directory, scale_decoder_outputs=_DROP)
    elif flavour == "t5_1.1":
        generator = torch.Generator().manual_seed(seed + 100)
        tensors["lm_head.weight"] = torch.randn(
            tensors["shared.weight"].shape, generator=generator
        )
        save_file(tensors, weights, metadata={"format": "pt"})
        _edit_config(directory, tie_word_embeddings=False, scale_decoder_outputs=_DROP)
    return directory


def _hf_outputs(directory: Path, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Encoder output and logits computed by transformers from ``directory``."""
    model = transformers.T5ForConditionalGeneration.from_pretrained(
        directory, **kwargs
    ).eval()
    with torch.no_grad():
        output = model(
            input_ids=torch.tensor(ENCODER_IDS),
            attention_mask=torch.tensor(ENCODER_IDS != 0).long(),
            decoder_input_ids=torch.tensor(DECODER_IDS),
            decoder_attention_mask=torch.tensor(_decoder_mask()).long(),
        )
    return output.encoder_last_hidden_state.numpy(), output.logits.numpy()


def _decoder_mask() -> np.ndarray:
    mask = DECODER_IDS != 0
    mask[:, 0] = True  # The start token is the pad id.
    return mask


def _keras_outputs(backbone) -> tuple[np.ndarray, np.ndarray]:
    inputs = {
        "encoder_token_ids": ENCODER_IDS,
        "encoder_padding_mask": (ENCODER_IDS != 0).astype("int32"),
        "decoder_token_ids": DECODER_IDS,
        "decoder_padding_mask": _decoder_mask().astype("int32"),
    }
    encoder = backbone(inputs)["encoder_sequence_output"]
    lm = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
    logits = lm(inputs)
    return keras.ops.convert_to_numpy(encoder), keras.ops.convert_to_numpy(logits)


def _assert_parity(backbone, reference: tuple[np.ndarray, np.ndarray]) -> None:
    encoder, logits = _keras_outputs(backbone)
    np.testing.assert_allclose(encoder, reference[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits, reference[1], atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, spiece_path):
    """Each flavour's checkpoint directory and transformers' outputs for it."""
    root = tmp_path_factory.mktemp("hf")
    result = {}
    for flavour in ("t5_1.0", "t5_1.1", "t5_1.1_v5"):
        directory = _write_flavour(root / flavour, flavour, spiece_path)
        result[flavour] = (directory, _hf_outputs(directory))
    return result


@pytest.fixture
def broken(checkpoints, tmp_path):
    """A writable copy of the T5 1.1 checkpoint, to damage in one way."""
    return Path(shutil.copytree(checkpoints["t5_1.1"][0], tmp_path / "ckpt"))


# ---------------------------------------------------------------------------
# Parity with transformers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["t5_1.0", "t5_1.1", "t5_1.1_v5"])
def test_safetensors_import_matches_transformers(checkpoints, flavour):
    directory, reference = checkpoints[flavour]
    backbone, tokenizer = load_hf_t5(directory)

    assert backbone.tie_embedding_weights == (flavour == "t5_1.0")
    assert backbone.use_gated_activation == (flavour != "t5_1.0")
    assert isinstance(tokenizer, keras_hub.models.T5Tokenizer)
    assert tokenizer.vocabulary_size() == 32000
    _assert_parity(backbone, reference)


def test_logits_differ_without_tanh_gelu(checkpoints):
    """The exact-erf GELU is measurably wrong, so parity really checks it."""
    directory, reference = checkpoints["t5_1.1"]
    backbone, _ = load_hf_t5(directory)
    config = backbone.get_config()
    config["activation"] = "gelu"
    exact = keras_hub.models.T5Backbone.from_config(config)
    exact.set_weights(backbone.get_weights())
    _, logits = _keras_outputs(exact)
    assert np.abs(logits - reference[1]).max() > 10 * ATOL


def test_sharded_safetensors_import(checkpoints, tmp_path):
    source, reference = checkpoints["t5_1.1_v5"]
    model = transformers.T5ForConditionalGeneration.from_pretrained(source)
    directory = tmp_path / "sharded"
    model.save_pretrained(directory, safe_serialization=True, max_shard_size="1MB")
    shutil.copy(source / "spiece.model", directory)
    assert (directory / "model.safetensors.index.json").is_file()
    assert not (directory / "model.safetensors").exists()

    backbone, _ = load_hf_t5(directory)
    _assert_parity(backbone, reference)


def test_bfloat16_checkpoint(checkpoints, tmp_path):
    """bfloat16 storage (common for large Flan-T5) is widened exactly."""
    source, _ = checkpoints["t5_1.1_v5"]
    model = transformers.T5ForConditionalGeneration.from_pretrained(source)
    directory = tmp_path / "bf16"
    model.to(torch.bfloat16).save_pretrained(directory, safe_serialization=True)
    shutil.copy(source / "spiece.model", directory)
    reference = _hf_outputs(directory, dtype=torch.float32)

    backbone, _ = load_hf_t5(directory)
    assert backbone.token_embedding.embeddings.dtype == "float32"
    _assert_parity(backbone, reference)
    half, _ = load_hf_t5(directory, dtype="bfloat16")
    assert half.token_embedding.embeddings.dtype == "bfloat16"


def test_scaled_logits_with_separate_head(checkpoints, tmp_path):
    """A T5 1.0 config whose lm_head differs from the embedding.

    transformers then keeps both and still scales by d_model**-0.5; keras-hub
    only scales tied models, so the importer folds the scale into the head.
    """
    source, _ = checkpoints["t5_1.0"]
    directory = Path(shutil.copytree(source, tmp_path / "untied"))
    weights = directory / "model.safetensors"
    tensors = load_file(weights)
    generator = torch.Generator().manual_seed(7)
    tensors["lm_head.weight"] = torch.randn(
        tensors["shared.weight"].shape, generator=generator
    )
    save_file(tensors, weights, metadata={"format": "pt"})
    reference = _hf_outputs(directory)

    backbone, _ = load_hf_t5(directory)
    assert not backbone.tie_embedding_weights
    _assert_parity(backbone, reference)


def _tf_name(pt_name: str) -> tuple[str, bool]:
    """PyTorch name -> (TF variable name, whether the value is transposed).

    The inverse of transformers 4.x's ``convert_tf_weight_name_to_pt_weight_name``
    for the variables ``TFT5ForConditionalGeneration`` creates: list items are
    ``block_._{i}``/``layer_._{j}``, Dense weights are ``kernel`` stored
    ``(in, out)``, the relative attention bias is an ``embeddings`` weight.
    """
    if pt_name == "shared.weight":
        # Built under tf.name_scope("shared/shared/") (load_weight_prefix).
        return "shared/shared/embeddings:0", False
    parts = pt_name.split(".")
    scopes = []
    index = 0
    while index < len(parts) - 1:
        if parts[index] in ("block", "layer"):
            scopes.append(f"{parts[index]}_._{parts[index + 1]}")
            index += 2
        else:
            scopes.append(parts[index])
            index += 1
    dense = scopes[-1] in ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo", "lm_head")
    if dense:
        leaf = "kernel"
    elif scopes[-1] == "relative_attention_bias":
        leaf = "embeddings"
    else:
        leaf = "weight"
    return "/".join(["tf_t5for_conditional_generation", *scopes, f"{leaf}:0"]), dense


def _write_tf_model_h5(state_dict: dict, tied: bool, path: Path, legacy: bool) -> None:
    """Write ``state_dict`` as transformers 4.x ``TFT5ForConditionalGeneration``.

    transformers 5 cannot write TF checkpoints, so this reproduces the file
    that 4.x ``save_pretrained`` produced through ``tf.keras``'s
    ``Model.save_weights`` (HDF5, ``keras/saving/legacy/hdf5_format.py``):
    root attributes ``layer_names``/``backend``/``keras_version``, one group per
    top-level layer (``shared``, ``encoder``, ``decoder``, and ``lm_head`` when
    untied) with a ``weight_names`` attribute of full TF variable names
    (``modeling_tf_t5.py``: ``block_._{i}``, ``layer_._{j}``,
    ``SelfAttention``/``EncDecAttention``/``DenseReluDense``, Dense ``kernel``,
    ``relative_attention_bias/embeddings``), each a dataset at that path.
    ``encoder``/``decoder`` also list the shared embedding, which they track as
    ``embed_tokens``; an empty ``top_level_model_weights`` group ends the file.

    ``legacy`` writes the older layout, from before the shared embedding became
    a ``keras.layers.Embedding`` with ``load_weight_prefix="shared"``: it was a
    ``TFSharedEmbeddings`` weight named ``<model>/shared/weight:0``, and the
    stacks reached it through ``TFWrappedEmbeddings``, which Keras did not
    track, so only the ``shared`` group lists it.
    """
    groups = {"shared": [], "encoder": [], "decoder": []}
    if not tied:
        groups["lm_head"] = []
    if legacy:
        name = "tf_t5for_conditional_generation/shared/weight:0"
        groups["shared"].append((name, state_dict["shared.weight"]))
    else:
        embedding = ("shared/shared/embeddings:0", state_dict["shared.weight"])
        for stack in ("shared", "encoder", "decoder"):
            groups[stack].append(embedding)
    for pt_name, value in state_dict.items():
        stack = pt_name.split(".")[0]
        if stack not in groups or stack == "shared" or "embed_tokens" in pt_name:
            continue
        tf_name, transpose = _tf_name(pt_name)
        groups[stack].append((tf_name, value.T if transpose else value))

    def names(items):
        return np.array([name.encode("utf8") for name in items])

    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = names(groups)
        file.attrs["backend"] = b"tensorflow"
        file.attrs["keras_version"] = b"2.15.0"
        for layer in sorted(groups):
            group = file.create_group(layer)
            group.attrs["weight_names"] = names(name for name, _ in groups[layer])
            for name, value in groups[layer]:
                group.create_dataset(name, data=value)
        file.create_group("top_level_model_weights").attrs["weight_names"] = []


@pytest.mark.parametrize(("flavour", "legacy"), [("t5_1.0", True), ("t5_1.1", False)])
def test_tf_model_h5_import_matches_transformers(
    checkpoints, tmp_path, flavour, legacy
):
    source, reference = checkpoints[flavour]
    model = transformers.T5ForConditionalGeneration.from_pretrained(source)
    state_dict = {
        name: value.detach().numpy() for name, value in model.state_dict().items()
    }
    directory = tmp_path / "tf"
    directory.mkdir()
    shutil.copy(source / "config.json", directory)
    shutil.copy(source / "spiece.model", directory)
    tied = flavour == "t5_1.0"
    _write_tf_model_h5(state_dict, tied, directory / "tf_model.h5", legacy)

    backbone, _ = load_hf_t5(directory)
    _assert_parity(backbone, reference)


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------


def test_preset_round_trip(checkpoints, tmp_path):
    directory, reference = checkpoints["t5_1.1"]
    preset = convert_hf_checkpoint(directory, tmp_path / "presets" / "flan_tiny")

    assert preset == tmp_path / "presets" / "flan_tiny"
    assert sorted(p.name for p in preset.parent.iterdir()) == ["flan_tiny"]
    config = json.loads((preset / "config.json").read_text())["config"]
    assert config["activation"]["config"] == "keras_hub>gelu_approximate"

    backbone = keras_hub.models.T5Backbone.from_preset(str(preset))
    tokenizer = keras_hub.models.T5Tokenizer.from_preset(str(preset))
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor.from_preset(str(preset))
    _assert_parity(backbone, reference)
    lm = keras_hub.models.T5Seq2SeqLM.from_preset(str(preset))
    assert isinstance(lm.preprocessor, keras_hub.models.T5Seq2SeqLMPreprocessor)
    _assert_parity(lm.backbone, reference)
    ids = keras.ops.convert_to_numpy(tokenizer("The house is wonderful."))
    assert ids.tolist() == [37, 629, 19, 1627, 5]
    assert preprocessor.tokenizer.vocabulary_size() == 32000

    restored = keras_hub.models.T5Backbone.from_config(backbone.get_config())
    restored.set_weights(backbone.get_weights())
    _assert_parity(restored, reference)


def test_convert_refuses_non_empty_preset_dir(checkpoints, tmp_path):
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_hf_checkpoint(checkpoints["t5_1.0"][0], preset)
    assert [p.name for p in preset.iterdir()] == ["keep.txt"]


def test_failed_conversion_leaves_nothing(checkpoints, tmp_path, monkeypatch):
    def fail(self, preset_dir):
        raise OSError("disk full")

    monkeypatch.setattr(
        keras_hub.models.T5Seq2SeqLMPreprocessor, "save_to_preset", fail
    )
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        convert_hf_checkpoint(checkpoints["t5_1.0"][0], out / "preset")
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------
# Bad input: clear error, nothing written
# ---------------------------------------------------------------------------


def _assert_nothing_written(directory: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    with pytest.raises((HFCheckpointError, OSError)):
        convert_hf_checkpoint(directory, out / "preset")
    assert list(out.iterdir()) == []


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*does not exist"):
        load_hf_t5(missing)
    _assert_nothing_written(missing, tmp_path)


def test_missing_config(broken, tmp_path):
    (broken / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        load_hf_t5(broken)
    _assert_nothing_written(broken, tmp_path)


def test_missing_weights(broken, tmp_path):
    (broken / "model.safetensors").rename(broken / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError) as error:
        load_hf_t5(broken)
    message = str(error.value)
    assert "No weights file" in message and "model.safetensors" in message
    assert "tf_model.h5" in message and "pytorch_model.bin" in message
    _assert_nothing_written(broken, tmp_path)


def test_wrong_model_type(broken, tmp_path):
    _edit_config(broken, model_type="bart")
    with pytest.raises(
        HFCheckpointError, match="'model_type' is 'bart'; expected 't5'"
    ):
        load_hf_t5(broken)
    _assert_nothing_written(broken, tmp_path)


def test_encoder_only_checkpoint(checkpoints, tmp_path):
    directory = tmp_path / "encoder_only"
    config = transformers.T5Config(feed_forward_proj="gated-gelu", **TINY)
    transformers.T5EncoderModel(config).save_pretrained(directory)
    shutil.copy(checkpoints["t5_1.1"][0] / "spiece.model", directory)
    with pytest.raises(HFCheckpointError) as error:
        load_hf_t5(directory)
    message = str(error.value)
    assert "'architectures' is ['T5EncoderModel']" in message
    assert "T5ForConditionalGeneration" in message
    _assert_nothing_written(directory, tmp_path)


def test_encoder_only_weights_without_architectures(checkpoints, tmp_path):
    directory = tmp_path / "encoder_only"
    config = transformers.T5Config(feed_forward_proj="gated-gelu", **TINY)
    transformers.T5EncoderModel(config).save_pretrained(directory)
    shutil.copy(checkpoints["t5_1.1"][0] / "spiece.model", directory)
    _edit_config(directory, architectures=_DROP)
    with pytest.raises(HFCheckpointError, match=r"missing \d+ tensor.*decoder\.block"):
        load_hf_t5(directory)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"feed_forward_proj": "gated-silu"},
            "'feed_forward_proj' is 'gated-silu'; expected one of",
        ),
        (
            {"num_decoder_layers": 3},
            "'num_decoder_layers' is 3 but 'num_layers' is 2",
        ),
        (
            {"relative_attention_num_buckets": 64},
            "'relative_attention_num_buckets' is 64; expected 32",
        ),
        (
            {"relative_attention_max_distance": 256},
            "'relative_attention_max_distance' is 256; expected 128",
        ),
        ({"d_model": "16"}, "'d_model' is '16'; expected a positive integer"),
    ],
)
def test_unsupported_config(broken, tmp_path, changes, expected):
    _edit_config(broken, **changes)
    with pytest.raises(HFCheckpointError) as error:
        load_hf_t5(broken)
    assert expected in str(error.value)
    assert "config.json" in str(error.value)
    _assert_nothing_written(broken, tmp_path)


def test_wrong_tensor_shape(broken, tmp_path):
    weights = broken / "model.safetensors"
    tensors = load_file(weights)
    name = "decoder.block.1.layer.2.DenseReluDense.wo.weight"
    tensors[name] = torch.zeros(16, 24)
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(HFCheckpointError) as error:
        load_hf_t5(broken)
    message = str(error.value)
    assert f"'{name}'" in message
    assert "shape (16, 24); expected (16, 32)" in message
    _assert_nothing_written(broken, tmp_path)


def test_missing_tensors(broken, tmp_path):
    weights = broken / "model.safetensors"
    tensors = load_file(weights)
    del tensors["encoder.block.1.layer.0.SelfAttention.k.weight"]
    del tensors["lm_head.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(HFCheckpointError) as error:
        load_hf_t5(broken)
    message = str(error.value)
    assert "missing 2 tensor(s)" in message
    assert "encoder.block.1.layer.0.SelfAttention.k.weight" in message
    assert "lm_head.weight" in message
    _assert_nothing_written(broken, tmp_path)


def test_unexpected_tensors(broken, tmp_path):
    _edit_config(broken, num_layers=1, num_decoder_layers=1)
    with pytest.raises(HFCheckpointError) as error:
        load_hf_t5(broken)
    message = str(error.value)
    assert "has 23 tensor(s)" in message and "does not use" in message
    assert "decoder.block.1.layer.0.SelfAttention.k.weight" in message
    _assert_nothing_written(broken, tmp_path)


def test_missing_spiece(broken, tmp_path):
    (broken / "spiece.model").unlink()
    with pytest.raises(FileNotFoundError, match=r"spiece\.model not found"):
        load_hf_t5(broken)
    _assert_nothing_written(broken, tmp_path)


def test_spiece_not_sentencepiece(broken, tmp_path):
    (broken / "spiece.model").write_text("this is not a protobuf\n" * 10)
    with pytest.raises(HFCheckpointError) as error:
        load_hf_t5(broken)
    message = str(error.value)
    assert "spiece.model" in message and "not a usable SentencePiece model" in message
    _assert_nothing_written(broken, tmp_path)


def test_other_bucket_settings_mapped_exactly(checkpoints, tmp_path):
    """A config with 8 relative-position buckets and max_distance 16 (as tiny
    test models have): keras-hub's 32 buckets refine them, so the tables are
    re-indexed and the logits match transformers'."""
    config = transformers.T5Config(
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        **TINY,
    )
    torch.manual_seed(30)
    model = transformers.T5ForConditionalGeneration(config).eval()
    _randomize(model, 30)
    directory = tmp_path / "buckets8"
    model.save_pretrained(directory, safe_serialization=True)
    shutil.copy(checkpoints["t5_1.1"][0] / "spiece.model", directory)
    # Long enough that positions reach the log-spaced buckets.
    encoder_ids = np.arange(100, 140)[None, :]
    decoder_ids = np.concatenate([[0], np.arange(200, 223)])[None, :]
    with torch.no_grad():
        reference = model(
            input_ids=torch.tensor(encoder_ids),
            decoder_input_ids=torch.tensor(decoder_ids),
        ).logits.numpy()

    backbone, _ = load_hf_t5(directory)
    lm = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
    logits = lm(
        {
            "encoder_token_ids": encoder_ids,
            "encoder_padding_mask": np.ones_like(encoder_ids),
            "decoder_token_ids": decoder_ids,
            "decoder_padding_mask": np.ones_like(decoder_ids),
        }
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(logits), reference, atol=ATOL, rtol=0
    )

