"""`import-hf`, `export-hf`, `import-t5x`, `import-peft`, `export-peft`: interop."""

from __future__ import annotations

from keras_prompt.cli import common


def cmd_import_hf(args) -> int:
    from keras_prompt.checkpoints import convert_hf_checkpoint

    path = convert_hf_checkpoint(args.checkpoint, args.out, verbose=args.verbose)
    common.print_json({"preset": str(path)})
    return 0


def _check_import_hf(args) -> None:
    common.check_input(args.checkpoint, "CHECKPOINT", directory=True)
    common.check_output_dir(args.out, "--out", empty=True)


def cmd_export_hf(args) -> int:
    from keras_prompt.checkpoints import export_hf_checkpoint

    try:
        path = export_hf_checkpoint(
            args.preset, args.out, dtype=args.dtype, verbose=args.verbose
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    common.print_json(
        {"checkpoint": str(path), "files": sorted(p.name for p in path.iterdir())}
    )
    return 0


def cmd_import_t5x(args) -> int:
    from keras_prompt.checkpoints.t5x import (
        convert_t5x_checkpoint,
        read_t5x_checkpoint,
    )

    checkpoint = read_t5x_checkpoint(args.checkpoint)
    try:
        path = convert_t5x_checkpoint(
            checkpoint.directory,
            args.out,
            args.vocab,
            relative_attention_max_distance=args.max_distance,
            verbose=args.verbose,
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    common.print_json(
        {
            "preset": str(path),
            "checkpoint": str(checkpoint.directory),
            "step": checkpoint.step,
        }
    )
    return 0


def _backbone_or_none(model: str | None):
    if not model:
        return None
    from keras_prompt.models.loading import load_backbone

    return load_backbone(model)[0]


def cmd_import_peft(args) -> int:
    from keras_prompt.models.identity import backbone_fingerprint
    from keras_prompt.peft_prompts import load_peft_prompt
    from keras_prompt.prompts import save_prompt_file

    backbone = _backbone_or_none(args.model)
    prompt, metadata = load_peft_prompt(
        args.adapter, hidden_dim=backbone.hidden_dim if backbone else None
    )
    if backbone is not None and "backbone" not in metadata:
        metadata["backbone"] = {
            "fingerprint": backbone_fingerprint(backbone),
            "preset": args.model,
            "hidden_dim": backbone.hidden_dim,
        }
    path = save_prompt_file(args.out, prompt, metadata)
    common.print_json({"prompt": str(path), "shape": list(prompt.shape)})
    return 0


def cmd_export_peft(args) -> int:
    from keras_prompt.peft_prompts import save_peft_prompt
    from keras_prompt.prompts import load_prompt_file

    prompt, metadata = load_prompt_file(args.prompt)
    backbone = _backbone_or_none(args.model)
    try:
        path = save_peft_prompt(
            prompt,
            args.out,
            model=backbone,
            base_model_name_or_path=args.base_model or args.model,
            metadata=metadata,
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    common.print_json({"adapter": str(path), "shape": list(prompt.shape)})
    return 0


def add_import_hf(sub) -> None:
    p = sub.add_parser(
        "import-hf", help="convert a Hugging Face T5 checkpoint to a preset"
    )
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    common.add_verbose_arg(p)
    p.set_defaults(func=cmd_import_hf, check=_check_import_hf)


def add_export_hf(sub) -> None:
    p = sub.add_parser(
        "export-hf",
        help="write a T5 preset as a Hugging Face checkpoint (config.json, "
        "model.safetensors, spiece.model)",
    )
    p.add_argument("preset", help="keras-hub preset name/dir or HF T5 checkpoint dir")
    p.add_argument("--out", required=True, help="new or empty directory")
    p.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16")
    )
    common.add_verbose_arg(p)
    p.set_defaults(func=cmd_export_hf)


def add_import_t5x(sub) -> None:
    p = sub.add_parser(
        "import-t5x", help="convert a T5X (T5 1.0/1.1) checkpoint to a preset"
    )
    p.add_argument(
        "checkpoint", help="checkpoint_<step> dir, or a dir of them (latest read)"
    )
    p.add_argument("--vocab", required=True, help="the model's spiece.model")
    p.add_argument("--out", required=True, help="new or empty preset directory")
    p.add_argument(
        "--max-distance",
        type=int,
        default=128,
        help="the checkpoint's relative_attention max_distance (not stored in it)",
    )
    common.add_verbose_arg(p)
    p.set_defaults(func=cmd_import_t5x)


def add_import_peft(sub) -> None:
    p = sub.add_parser(
        "import-peft", help="a PEFT prompt-tuning adapter as a prompt file"
    )
    p.add_argument("adapter", help="PEFT adapter dir (adapter_config.json, weights)")
    p.add_argument("--out", required=True, help="prompt path: writes OUT.npy, OUT.json")
    p.add_argument("--model", help="check the width against this preset/checkpoint")
    p.set_defaults(func=cmd_import_peft)


def add_export_peft(sub) -> None:
    p = sub.add_parser(
        "export-peft", help="a prompt file as a PEFT prompt-tuning adapter"
    )
    p.add_argument("prompt", help="prompt file (.npy, with its .json)")
    p.add_argument("--out", required=True, help="new or empty adapter directory")
    p.add_argument("--model", help="check the width against this preset/checkpoint")
    p.add_argument(
        "--base-model", help="base_model_name_or_path to record (default: --model)"
    )
    p.set_defaults(func=cmd_export_peft)
