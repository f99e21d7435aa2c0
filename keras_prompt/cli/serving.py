"""`export` and `query`: a TF Serving SavedModel with a prompt bank, and calling it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from keras_prompt.cli import common


def _check_export(args) -> None:
    if not args.prompt and args.prompt_length is None:
        raise ValueError("Give --prompt TASK=PATH.npy (repeatable) or --prompt-length.")
    for paths in _parse_bank(args.prompt).values():
        for path in paths:
            common.check_prompt_file(path, "--prompt")
    common.check_output_dir(args.out, "--out")
    if args.version is not None:
        target = Path(args.out) / str(args.version)
        if target.exists():
            raise ValueError(
                f"--version {args.version}: {target} already exists, and TF Serving "
                "versions are immutable; pick another --version or omit it for the "
                "next free one."
            )


def _export_metadata(export: Path) -> dict | None:
    """The metadata `keras-prompt export` writes beside the SavedModel, if any."""
    path = export / "assets.extra" / "prompt_bank.json"
    try:
        metadata = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return metadata if isinstance(metadata, dict) else None


def _check_query(args) -> None:
    export = Path(args.export)
    if not export.exists():
        raise FileNotFoundError(f"EXPORT {export} does not exist.")
    if not (export / "saved_model.pb").is_file():
        children = export.iterdir() if export.is_dir() else ()
        versions = sorted(
            (p for p in children if p.name.isdigit()), key=lambda p: int(p.name)
        )
        if versions:
            raise ValueError(
                f"EXPORT {export} is an export base directory; pass one of its "
                f"versions, e.g. {versions[-1]}."
            )
        raise ValueError(f"EXPORT {export} is not a SavedModel (no saved_model.pb).")
    if args.candidates is not None and not all(c.strip() for c in args.candidates):
        raise ValueError(
            f"--candidates must be non-blank strings; got {args.candidates!r}."
        )
    metadata = _export_metadata(export) or {}
    signatures = metadata.get("signatures")
    if isinstance(signatures, dict):
        if args.signature not in signatures:
            raise ValueError(
                f"{export} has no signature {args.signature!r}; it has "
                f"{sorted(signatures)}."
            )
        inputs = signatures[args.signature].get("inputs", [])
        if "prompt" in inputs:
            raise ValueError(
                f"--signature {args.signature} takes a prompt tensor, which "
                "`keras-prompt query` does not send; use by_task or ensemble (the "
                "export's prompt bank), or keras_prompt.serving.client."
            )
        if "task" in inputs and not args.task:
            raise ValueError(f"--signature {args.signature} needs --task.")
        if "candidates" in inputs and not args.candidates:
            raise ValueError(f"--signature {args.signature} needs --candidates.")
    tasks = metadata.get("tasks")
    if args.task and isinstance(tasks, dict) and args.task not in tasks:
        raise ValueError(
            f"--task {args.task!r} is not in {export}'s prompt bank; it has "
            f"{sorted(tasks)}."
        )


def _parse_bank(items: Sequence[str]) -> dict[str, list[str]]:
    bank: dict[str, list[str]] = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise ValueError(f"--prompt expects TASK=PATH.npy; got {item!r}.")
        bank.setdefault(task, []).append(path)
    return bank


def cmd_export(args) -> int:
    from keras_prompt.serving import PromptBank, export_saved_model

    bank = PromptBank.from_files(_parse_bank(args.prompt)) if args.prompt else None
    prompt_length = bank.prompt_shape[0] if bank is not None else args.prompt_length
    model = common.load_model(args, prompt_length=prompt_length)
    path = export_saved_model(
        model,
        args.out,
        version=args.version,
        prompt_bank=bank,
        max_input_length=args.max_input_length,
        max_decode_length=args.max_decode_length,
        verbose=args.verbose,
    )
    common.print_json(
        {"export": str(path), "tasks": bank.tasks if bank else ["default"]}
    )
    return 0


def cmd_query(args) -> int:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    from keras_prompt.serving.client import build_inputs

    loaded = tf.saved_model.load(args.export)
    if args.signature not in loaded.signatures:
        raise ValueError(
            f"{args.export} has no signature {args.signature!r}; it has "
            f"{sorted(loaded.signatures)}."
        )
    texts = args.text
    inputs = build_inputs(
        args.signature,
        text=texts,
        task=[args.task] * len(texts) if args.task else None,
        candidates=args.candidates,
    )
    try:
        outputs = loaded.signatures[args.signature](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(_graph_refusal(e.message)) from None
    decoded = {}
    for name, value in outputs.items():
        array = value.numpy()
        if array.dtype == object:
            array = [
                [b.decode() for b in row] if array.ndim > 1 else row.decode()
                for row in array
            ]
        else:
            array = array.tolist()
        decoded[name] = array
    common.print_json({"signature": args.signature, "text": texts, **decoded})
    return 0


def _graph_refusal(message: str) -> str:
    """The text of a serving graph's failed `tf.debugging.Assert`, without
    TensorFlow's framing (node names, bracketed message parts)."""
    message = message.split("\n\t [[")[0]
    head, found, parts = message.partition("assertion failed: ")
    if not found:
        return message
    parts = parts.strip()
    if parts.startswith("[") and parts.endswith("]"):
        parts = " ".join(part.strip() for part in parts[1:-1].split("] ["))
    return parts


def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a TF Serving SavedModel with a prompt bank"
    )
    p.add_argument("--model", required=True, help="the frozen backbone's preset/dir")
    p.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="TASK=PATH.npy; repeat for more tasks, or a task's ensemble members",
    )
    p.add_argument(
        "--prompt-length", type=common.int_at_least(1), help="only without --prompt"
    )
    p.add_argument("--out", required=True, help="export base dir (versions inside)")
    p.add_argument(
        "--version",
        type=common.int_at_least(0),
        default=None,
        help="default: next free",
    )
    p.add_argument(
        "--max-input-length",
        type=common.int_at_least(2, common.TWO_TOKENS),
        default=256,
    )
    p.add_argument(
        "--max-decode-length",
        type=common.int_at_least(2, common.TWO_TOKENS),
        default=16,
    )
    p.add_argument("--seed", type=int, default=0)
    common.add_verbose_arg(p)
    p.set_defaults(func=cmd_export, check=_check_export)


def add_query(sub) -> None:
    p = sub.add_parser(
        "query", help="call a signature of an export (TF + TF Text only)"
    )
    p.add_argument("export", help="a version dir, e.g. EXPORT/1")
    p.add_argument("--signature", default="by_task")
    p.add_argument("--text", action="append", required=True)
    p.add_argument("--task")
    p.add_argument("--candidates", nargs="+")
    p.set_defaults(func=cmd_query, check=_check_query)
