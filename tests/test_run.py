"""One config-driven run (keras_prompt.run): the CLI, TFX and examples share it."""

import dataclasses

from keras_prompt import cli
from keras_prompt.run_config import TrainConfig


def test_train_arguments_default_to_the_config_fields():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--task", "sst2", "--model", "m", "--out", "o"])
    config = TrainConfig.from_namespace(args)
    for field in dataclasses.fields(TrainConfig):
        if hasattr(args, field.name) and field.name not in ("task", "model", "out"):
            assert getattr(config, field.name) == field.default, field.name


def test_tfx_options_default_to_the_same_run():
    from keras_prompt.tfx import TrainerOptions

    options = TrainerOptions(checkpoint="m", task="sst2", steps=3)
    config = options.train_config("out").resolved()
    assert config.prompt_length == 100 and config.learning_rate == 0.3
    for name in ("init", "batch_size", "max_input_length", "eval_batch_size", "seed"):
        assert getattr(config, name) == getattr(TrainConfig, name), name


def test_run_without_out_writes_nothing(tiny_preset, assets_dir, tmp_path, monkeypatch):
    from keras_prompt.data import load_examples
    from keras_prompt.run import run_training

    monkeypatch.chdir(tmp_path)
    train = load_examples("sst2", "train", data_dir=assets_dir)[:16]
    evaluation = load_examples("sst2", "validation", data_dir=assets_dir)[:8]
    config = TrainConfig(
        task="sst2", model=str(tiny_preset), steps=2, batch_size=4, prompt_length=2,
        max_input_length=32, verbose=0, health_texts=8,
    )
    run = run_training(config, train_examples=train, eval_examples=evaluation)
    assert run.prompt_path is None and list(tmp_path.iterdir()) == []
    assert run.metrics["trained_steps"] == 2
    assert run.metrics["eval"]["num_examples"] == 8
    assert run.metrics["learning_rate"] == 0.3
    assert "warnings" in run.metrics["backbone_health"]
