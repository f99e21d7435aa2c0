"""`inspect`: a prompt file's shape, norms, nearest tokens and verbalizer hit-rate."""

from __future__ import annotations

from keras_prompt.cli import common


def _check_inspect(args) -> None:
    common.check_prompt_file(args.prompt, "PROMPT")
    common.check_input(args.embeddings, "--embeddings")
    common.check_input(args.vocab, "--vocab")


def cmd_inspect(args) -> int:
    import numpy as np

    from keras_prompt.inspection import describe_prompt
    from keras_prompt.prompts import load_prompt_file

    prompt, metadata = load_prompt_file(args.prompt)
    embeddings, id_to_token = None, None
    if args.embeddings:
        from keras_prompt.prompts import read_prompt_array

        embeddings = read_prompt_array(args.embeddings)
    elif args.model:
        import keras_hub

        from keras_prompt.models.identity import backbone_fingerprint
        from keras_prompt.prompts import check_prompt_backbone, prompt_paths

        backbone = keras_hub.models.T5Backbone.from_preset(args.model)
        check_prompt_backbone(
            metadata,
            prompt_paths(args.prompt)[1],
            fingerprint=backbone_fingerprint(backbone),
            hidden_dim=backbone.hidden_dim,
        )
        embeddings = np.asarray(backbone.token_embedding.embeddings.numpy())
    if args.vocab or args.model:
        import keras_hub

        tokenizer = (
            keras_hub.models.T5Tokenizer(proto=str(args.vocab))
            if args.vocab
            else keras_hub.models.T5Tokenizer.from_preset(args.model)
        )
        vocabulary_size = tokenizer.vocabulary_size()

        def id_to_token(i: int) -> str:
            return tokenizer.id_to_token(i) if i < vocabulary_size else f"<extra_{i}>"

    report = describe_prompt(prompt, embeddings, id_to_token, k=args.k)
    report["file"] = args.prompt
    report["metadata"] = metadata
    verbalizers = args.verbalizers
    if args.task:
        from keras_prompt.data import get_task

        verbalizers = list(get_task(args.task).verbalizers)
    if verbalizers:
        from keras_prompt.inspection import verbalizer_hit_rate

        if embeddings is None or not (args.vocab or args.model):
            raise ValueError(
                "--verbalizers/--task need an embedding table (--model or "
                "--embeddings) and a vocabulary (--model or --vocab)."
            )
        verbalizer_ids = sorted(
            {
                int(i)
                for v in verbalizers
                for i in np.asarray(tokenizer.tokenize(v)).reshape(-1)
            }
        )
        report["verbalizers"] = list(verbalizers)
        report["verbalizer_tokens"] = [id_to_token(i) for i in verbalizer_ids]
        report["verbalizer_hit_rate"] = verbalizer_hit_rate(
            prompt, embeddings, verbalizer_ids, k=args.k
        )
    if args.json:
        common.print_json(report)
        return 0
    print(
        f"{args.prompt}: shape {tuple(report['shape'])}, norm mean "
        f"{report['norm_mean']:.3f} (min {report['norm_min']:.3f}, max "
        f"{report['norm_max']:.3f})"
    )
    for position, norm in enumerate(report["norms"]):
        line = f"  [{position:3d}] norm {norm:7.3f}"
        if "nearest" in report:
            tokens = ", ".join(
                f"{n['token'] if n['token'] is not None else n['id']}"
                f" ({n['cosine']:.2f})"
                for n in report["nearest"][position]
            )
            line += f"  nearest: {tokens}"
        print(line)
    if "verbalizer_hit_rate" in report:
        print(
            f"verbalizer hit-rate: {report['verbalizer_hit_rate']:.3f} of "
            f"{report['shape'][0]} positions have a verbalizer token "
            f"({', '.join(report['verbalizer_tokens'])}) among their {args.k} "
            "nearest tokens"
        )
    return 0


def add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="shape, norms and nearest vocabulary tokens")
    p.add_argument("prompt")
    p.add_argument("--model", help="preset whose embedding table and vocabulary to use")
    p.add_argument(
        "--embeddings", help="a (vocab, hidden) .npy embedding table instead"
    )
    p.add_argument("--vocab", help="SentencePiece model for token strings")
    p.add_argument(
        "--verbalizers",
        nargs="+",
        help="label strings: report the fraction of positions with one of their "
        "tokens among the k nearest (the verbalizer hit-rate)",
    )
    p.add_argument("--task", help="use this task's verbalizers (e.g. sst2)")
    p.add_argument("-k", type=common.int_at_least(1), default=5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect, check=_check_inspect)
