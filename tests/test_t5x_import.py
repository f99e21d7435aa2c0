"""T5X checkpoints: the real test checkpoint in ../shared/assets/t5x-tiny and
tiny checkpoints the tests write in T5X's layout (tensorstore zarr arrays plus
a flax-msgpack `checkpoint` file) from a transformers model's weights; the
imported model's encoder outputs and logits are checked against transformers
on the same arrays."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import msgpack
import numpy as np
import pytest
import tensorstore
import torch
import transformers
from conftest import json_tail, run_cli
from interop_helpers import cli_error, keras_prompt_outputs, transformers_outputs

from keras_prompt import PromptTunedT5
from keras_prompt.checkpoints import T5XCheckpointError
from keras_prompt.checkpoints.relative_position import bucket_mapping
from keras_prompt.checkpoints.t5x import load_t5x_t5, read_t5x_checkpoint

ATOL = 1e-4
TINY = dict(
    vocab_size=32128, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
    dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
)


# ---------------------------------------------------------------------------
# Writing T5X checkpoints (as t5x.checkpoints.Checkpointer.save lays them out)
# ---------------------------------------------------------------------------


def _hf_to_t5x_name(name: str) -> tuple[str, str] | None:
    """transformers T5 name -> (T5X parameter path, how), written here
    independently of keras_prompt.checkpoints.t5x's table."""
    parts = name.split(".")
    if name == "shared.weight":
        return "token_embedder/embedding", "copy"
    if name == "lm_head.weight":
        return "decoder/logits_dense/kernel", "transpose"  # T5 1.1 only
    if name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        return None
    stack = parts[0]
    if parts[1] == "final_layer_norm":
        return f"{stack}/{stack}_norm/scale", "copy"
    block, sub = parts[2], int(parts[4])
    module = parts[5]
    if module == "relative_attention_bias":
        return None  # handled by the caller (block 0's SelfAttention)
    layer = f"{stack}/layers_{block}"
    if module == "layer_norm":
        names = (
            ["pre_attention_layer_norm", "pre_mlp_layer_norm"]
            if stack == "encoder"
            else ["pre_self_attention_layer_norm", "pre_cross_attention_layer_norm",
                  "pre_mlp_layer_norm"]
        )
        return f"{layer}/{names[sub]}/scale", "copy"
    leaf = parts[6]
    if module == "SelfAttention" and leaf == "relative_attention_bias":
        return f"{stack}/relpos_bias/rel_embedding", "transpose"
    projection = {"q": "query", "k": "key", "v": "value", "o": "out"}
    if module == "SelfAttention":
        kind = "attention" if stack == "encoder" else "self_attention"
        return f"{layer}/{kind}/{projection[leaf]}/kernel", "transpose"
    if module == "EncDecAttention":
        kind = "encoder_decoder_attention"
        return f"{layer}/{kind}/{projection[leaf]}/kernel", "transpose"
    if module == "DenseReluDense":
        return f"{layer}/mlp/{leaf}/kernel", "transpose"
    raise AssertionError(name)


def _t5x_params(model) -> dict[str, np.ndarray]:
    params = {}
    for name, value in model.state_dict().items():
        if name == "lm_head.weight" and model.config.scale_decoder_outputs:
            continue  # T5 1.0: logits through the (scaled) shared embedding.
        value = value.detach().numpy()
        if name.endswith("SelfAttention.relative_attention_bias.weight"):
            stack = name.split(".")[0]
            params[f"{stack}/relpos_bias/rel_embedding"] = value.T
            continue
        mapped = _hf_to_t5x_name(name)
        if mapped is None:
            continue
        path, how = mapped
        params[path] = value.T if how == "transpose" else value
    return params


def _nest(flat: dict) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def _pack_array(array: np.ndarray) -> msgpack.ExtType:
    # flax.serialization's _ndarray_to_bytes: ext 1 of (shape, dtype, bytes).
    payload = msgpack.packb(
        (array.shape, array.dtype.name, array.tobytes("C")), use_bin_type=True
    )
    return msgpack.ExtType(1, payload)


def write_t5x_checkpoint(
    directory: Path, params: dict[str, np.ndarray], step: int = 7
) -> Path:
    """A T5X checkpoint_<step> dir: 2-D+ arrays in zarr via tensorstore (gzip,
    as T5X writes them), 1-D ones inline in the msgpack file, like the
    layer-norm scales of ../shared/assets/t5x-tiny."""
    directory.mkdir(parents=True)
    target = {}
    for path, value in params.items():
        value = np.ascontiguousarray(value, dtype=np.float32)
        if value.ndim == 1:
            target[path] = value
            continue
        name = "target." + path.replace("/", ".")
        metadata = {
            "shape": list(value.shape),
            "chunks": list(value.shape),
            "dtype": "<f4",
            "compressor": {"id": "gzip", "level": 1},
        }
        store = tensorstore.open(
            {"driver": "zarr", "kvstore": {"driver": "file",
                                           "path": str(directory / name)},
             "metadata": metadata},
            create=True,
        ).result()
        store.write(value).result()
        target[path] = {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": name},
            "metadata": metadata,
        }

    def encode(tree):
        if isinstance(tree, dict):
            return {key: encode(value) for key, value in tree.items()}
        if isinstance(tree, np.ndarray):
            return _pack_array(tree)
        return tree

    state = {
        "version": 3,
        "optimizer": {
            "target": encode(_nest(target)),
            "state": {"step": _pack_array(np.array(step, np.int32)),
                      "param_states": {}},
        },
    }
    (directory / "checkpoint").write_bytes(msgpack.packb(state, use_bin_type=True))
    return directory


def _transformers_model(flavour: str, seed: int, **overrides):
    gated = flavour == "t5_1.1"
    config = transformers.T5Config(
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=not gated,
        **{**TINY, **overrides},
    )
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(config).eval()
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
        if gated:
            # transformers 5 ties lm_head to the embedding at construction;
            # T5 1.1 checkpoints have their own head.
            head = torch.randn(model.lm_head.weight.shape, generator=generator)
            model.lm_head.weight = torch.nn.Parameter(head)
    return model


def _writable_copy(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    for root, dirs, files in os.walk(destination):
        for name in dirs + files:
            os.chmod(Path(root) / name, 0o755 if name in dirs else 0o644)
    os.chmod(destination, 0o755)
    return destination


# ---------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["t5_1.0", "t5_1.1"])
def test_t5x_import_matches_transformers(flavour, spiece_path, tmp_path):
    model = _transformers_model(flavour, seed={"t5_1.0": 20, "t5_1.1": 21}[flavour])
    params = _t5x_params(model)
    assert ("decoder/logits_dense/kernel" in params) == (flavour == "t5_1.1")
    checkpoint = write_t5x_checkpoint(tmp_path / "run" / "checkpoint_7", params)

    backbone, tokenizer = load_t5x_t5(tmp_path / "run", spiece_path)  # latest step
    assert backbone.tie_embedding_weights == (flavour == "t5_1.0")
    assert tokenizer.vocabulary_size() == 32000
    reference = transformers_outputs(model)
    encoded, logits = keras_prompt_outputs(backbone)
    np.testing.assert_allclose(encoded, reference[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits, reference[1], atol=ATOL, rtol=0)

    # The CLI writes a preset PromptTunedT5 loads.
    preset = tmp_path / "preset"
    result = json_tail(
        run_cli(
            "import-t5x", checkpoint, "--vocab", spiece_path, "--out", preset
        ).stdout
    )
    assert result["preset"] == str(preset) and result["step"] == 7
    prompted = PromptTunedT5.from_preset(preset, prompt_length=2)
    np.testing.assert_array_equal(
        prompted.backbone.token_embedding.embeddings.numpy(),
        params["token_embedder/embedding"],
    )


def test_real_t5x_test_checkpoint(assets_dir, spiece_path):
    """google-research/prompt-tuning's tiny T5 1.1 test checkpoint: 4-wide,
    2+2 layers, 2 heads, 4 relative-position buckets with max_distance 8."""
    root = assets_dir / "t5x-tiny"
    checkpoint = read_t5x_checkpoint(root / "test_t5_1_1_tiny")
    assert checkpoint.step == 3 and checkpoint.directory.name == "checkpoint_3"
    np.testing.assert_array_equal(
        checkpoint.params["token_embedder/embedding"].read(),
        np.load(root / "tiny_embeddings_32128x4.npy"),
    )
    assert checkpoint.params["encoder/relpos_bias/rel_embedding"].shape == (2, 4)

    backbone, _ = load_t5x_t5(
        checkpoint.directory, spiece_path, relative_attention_max_distance=8
    )
    assert backbone.hidden_dim == 4 and backbone.num_layers == 2

    # Reference: transformers with the checkpoint's own bucket settings,
    # its weights mapped from the same arrays by this test's name table.
    config = transformers.T5Config(
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=4, relative_attention_max_distance=8,
        **{**TINY, "d_model": 4, "d_kv": 2, "d_ff": 8},
    )
    model = transformers.T5ForConditionalGeneration(config).eval()
    # transformers 5 ties lm_head to the embedding at construction; this
    # checkpoint has its own head (logits_dense).
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    arrays = {name: t.read() for name, t in checkpoint.params.items()}
    state = {}
    for name in model.state_dict():
        if name.endswith("SelfAttention.relative_attention_bias.weight"):
            state[name] = arrays[f"{name.split('.')[0]}/relpos_bias/rel_embedding"].T
            continue
        mapped = _hf_to_t5x_name(name)
        if mapped is None:
            continue
        path, how = mapped
        state[name] = arrays[path].T if how == "transpose" else arrays[path]
    state["encoder.embed_tokens.weight"] = state["shared.weight"]
    state["decoder.embed_tokens.weight"] = state["shared.weight"]
    missing = model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state.items()},
        strict=False,
    )
    assert not missing.unexpected_keys and not missing.missing_keys
    reference = transformers_outputs(model)
    encoded, logits = keras_prompt_outputs(backbone)
    np.testing.assert_allclose(encoded, reference[0], atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits, reference[1], atol=ATOL, rtol=0)


def test_bucket_mapping_refines_or_refuses():
    np.testing.assert_array_equal(bucket_mapping(32, 128, True)[17:], range(17, 32))
    # 4 buckets: one for "same position" and one for the rest, per direction.
    assert set(bucket_mapping(4, 8, True)[1:16]) == {1}
    assert bucket_mapping(64, 128, True) is None  # finer than keras-hub's
    assert bucket_mapping(32, 256, True) is None  # other log spacing


# ---------------------------------------------------------------------------
# Bad input: one-line errors naming the file
# ---------------------------------------------------------------------------


def test_missing_array_is_refused(assets_dir, spiece_path, tmp_path):
    checkpoint = _writable_copy(
        assets_dir / "t5x-tiny/test_t5_1_1_tiny/checkpoint_3", tmp_path / "ckpt"
    )
    missing = checkpoint / "target.encoder.layers_1.mlp.wo.kernel"
    shutil.rmtree(missing)
    result = run_cli(
        "import-t5x", checkpoint, "--vocab", spiece_path, "--out", tmp_path / "p",
        check=False,
    )
    message = cli_error(result, "import-t5x")
    assert f"{missing} is missing" in message
    assert "encoder/layers_1/mlp/wo/kernel" in message
    assert not (tmp_path / "p").exists()


def test_unknown_layout_and_unmappable_buckets(spiece_path, tmp_path):
    params = _t5x_params(_transformers_model("t5_1.1", seed=22))
    odd = dict(params)
    odd["encoder/layers_0/adapter/kernel"] = np.zeros((16, 4), np.float32)
    write_t5x_checkpoint(tmp_path / "odd", odd)
    with pytest.raises(T5XCheckpointError, match=r"unknown T5X parameter.*adapter"):
        load_t5x_t5(tmp_path / "odd", spiece_path)

    # 64 buckets: finer than keras-hub's 32, so no exact mapping exists.
    wide = _t5x_params(
        _transformers_model("t5_1.1", seed=23, relative_attention_num_buckets=64)
    )
    write_t5x_checkpoint(tmp_path / "wide", wide)
    with pytest.raises(T5XCheckpointError) as error:
        load_t5x_t5(tmp_path / "wide", spiece_path)
    assert "64 relative-position buckets" in str(error.value)
    assert str(tmp_path / "wide" / "checkpoint") in str(error.value)

    no_decoder = {k: v for k, v in params.items() if not k.startswith("decoder/")}
    write_t5x_checkpoint(tmp_path / "encoder_only", no_decoder)
    with pytest.raises(T5XCheckpointError, match="2 encoder layers but 0 decoder"):
        load_t5x_t5(tmp_path / "encoder_only", spiece_path)


def test_not_a_t5x_checkpoint(spiece_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_t5x_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No T5X checkpoint"):
        read_t5x_checkpoint(tmp_path / "empty")
    orbax = tmp_path / "orbax"
    orbax.mkdir()
    (orbax / "manifest.ocdbt").write_bytes(b"")
    with pytest.raises(T5XCheckpointError, match="Orbax checkpoint"):
        read_t5x_checkpoint(orbax)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "checkpoint").write_text(json.dumps({"not": "msgpack"}))
    result = run_cli(
        "import-t5x", garbage, "--vocab", spiece_path, "--out", tmp_path / "p",
        check=False,
    )
    assert "not a T5X msgpack checkpoint file" in cli_error(result, "import-t5x")
