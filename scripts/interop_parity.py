"""Parity figures of keras-prompt's interoperability (docs/interop.md).

Prints, as JSON, the max abs differences between keras-prompt and the other
library on the same weights:

* export-hf: keras-prompt vs transformers (encoder output, logits) for tiny
  T5 1.0 / 1.1 backbones and the embedded checkpoint; weights after the round
  trip export -> import.
* T5X import: the real ../shared/assets/t5x-tiny checkpoint and tiny T5 1.0 /
  1.1 checkpoints written in T5X's layout, vs transformers on the same arrays.
* PEFT: candidate scores of the same prompt in PEFT and keras-prompt, both
  directions.

Reuses the test suite's writers (tests/), so it needs the test extra:

    KERAS_BACKEND=tensorflow python scripts/interop_parity.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from conftest import ASSETS_DIR  # noqa: E402
from interop_helpers import (  # noqa: E402
    keras_prompt_outputs,
    tiny_backbone,
    transformers_outputs,
    write_preset,
)
from test_peft_prompts import CANDIDATES, TEXTS, _peft_scores  # noqa: E402
from test_t5x_import import (  # noqa: E402
    _t5x_params,
    _transformers_model,
    write_t5x_checkpoint,
)

from keras_prompt import PromptTunedT5  # noqa: E402
from keras_prompt.checkpoints import export_hf_checkpoint, load_hf_t5  # noqa: E402
from keras_prompt.checkpoints.t5x import load_t5x_t5  # noqa: E402
from keras_prompt.models.loading import load_backbone  # noqa: E402
from keras_prompt.peft_prompts import load_peft_prompt, save_peft_prompt  # noqa: E402

SPIECE = ASSETS_DIR / "t5" / "spiece.model"


def _diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _against_transformers(backbone, model) -> dict:
    reference = transformers_outputs(model)
    encoded, logits = keras_prompt_outputs(backbone)
    return {
        "encoder": _diff(encoded, reference[0]),
        "logits": _diff(logits, reference[1]),
    }


def export_figures(root: Path) -> dict:
    figures = {}
    for flavour in ("t5_1.0", "t5_1.1"):
        backbone = tiny_backbone(flavour, seed=3)
        original = [w.copy() for w in backbone.get_weights()]
        preset = write_preset(backbone, SPIECE, root / f"{flavour}_preset")
        out = export_hf_checkpoint(preset, root / f"{flavour}_hf")
        model = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
        result = _against_transformers(backbone, model)
        imported, _ = load_hf_t5(out)
        result["round_trip_weights"] = max(
            _diff(a, b) for a, b in zip(original, imported.get_weights())
        )
        figures[flavour] = result
    embedded = REPO / "keras_prompt" / "presets" / "t5_1_1_mini_lm"
    out = export_hf_checkpoint(embedded, root / "embedded_hf")
    model = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
    figures["t5_1_1_mini_lm (embedded)"] = _against_transformers(
        load_backbone(embedded)[0], model
    )
    return figures


def t5x_figures(root: Path) -> dict:
    figures = {}
    for flavour, seed in (("t5_1.0", 20), ("t5_1.1", 21)):
        model = _transformers_model(flavour, seed=seed)
        checkpoint = write_t5x_checkpoint(
            root / f"t5x_{flavour}" / "checkpoint_7", _t5x_params(model)
        )
        backbone, _ = load_t5x_t5(checkpoint, SPIECE)
        figures[f"written {flavour}"] = _against_transformers(backbone, model)
    # The real test checkpoint, against transformers built from its arrays
    # exactly as tests/test_t5x_import.py does.
    import test_t5x_import as t

    backbone, _ = load_t5x_t5(
        ASSETS_DIR / "t5x-tiny" / "test_t5_1_1_tiny",
        SPIECE,
        relative_attention_max_distance=8,
    )
    config = transformers.T5Config(
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        relative_attention_num_buckets=4,
        relative_attention_max_distance=8,
        **{**t.TINY, "d_model": 4, "d_kv": 2, "d_ff": 8},
    )
    model = transformers.T5ForConditionalGeneration(config).eval()
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    checkpoint = t.read_t5x_checkpoint(ASSETS_DIR / "t5x-tiny" / "test_t5_1_1_tiny")
    arrays = {name: tensor.read() for name, tensor in checkpoint.params.items()}
    state = {}
    for name in model.state_dict():
        if name.endswith("SelfAttention.relative_attention_bias.weight"):
            state[name] = arrays[f"{name.split('.')[0]}/relpos_bias/rel_embedding"].T
            continue
        mapped = t._hf_to_t5x_name(name)
        if mapped is not None:
            path, how = mapped
            state[name] = arrays[path].T if how == "transpose" else arrays[path]
    for stack in ("encoder", "decoder"):
        state[f"{stack}.embed_tokens.weight"] = state["shared.weight"]
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    figures["assets/t5x-tiny checkpoint_3"] = _against_transformers(backbone, model)
    return figures


def peft_figures(root: Path) -> dict:
    preset = write_preset(tiny_backbone("t5_1.1", seed=7), SPIECE, root / "peft_preset")
    hf_dir = export_hf_checkpoint(preset, root / "peft_hf")
    base = transformers.T5ForConditionalGeneration.from_pretrained

    # keras-prompt -> PEFT
    prompt = np.random.default_rng(0).normal(size=(5, 16)).astype("float32")
    model = PromptTunedT5.from_preset(preset, prompt_length=5)
    model.set_prompt(prompt)
    adapter = save_peft_prompt(prompt, root / "adapter", model=model)
    peft_model = peft.PeftModel.from_pretrained(base(hf_dir).eval(), adapter).eval()
    to_peft = _diff(_peft_scores(peft_model, hf_dir), model.score(TEXTS, CANDIDATES))

    # PEFT -> keras-prompt
    config = peft.PromptTuningConfig(
        task_type="SEQ_2_SEQ_LM", num_virtual_tokens=4, num_transformer_submodules=1
    )
    peft_model = peft.get_peft_model(base(hf_dir), config)
    with torch.no_grad():
        weight = peft_model.prompt_encoder["default"].embedding.weight
        weight.copy_(
            torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
        )
    peft_model.save_pretrained(root / "peft_adapter")
    expected = _peft_scores(peft_model.eval(), hf_dir)
    values, _ = load_peft_prompt(root / "peft_adapter", hidden_dim=16)
    model = PromptTunedT5.from_preset(preset, prompt_length=4)
    model.set_prompt(values)
    from_peft = _diff(model.score(TEXTS, CANDIDATES), expected)
    return {
        "keras-prompt -> PEFT scores": to_peft,
        "PEFT -> keras-prompt scores": from_peft,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        figures = {
            "export-hf (vs transformers)": export_figures(root),
            "import-t5x (vs transformers)": t5x_figures(root),
            "PEFT prompt adapters": peft_figures(root),
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
