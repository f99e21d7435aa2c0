"""Official GLUE / SuperGLUE layouts: the official dev file is evaluated when
it is there, the held-out carve-out only when it is not, and metrics say which.

Each test writes a small data dir in the layout of the official downloads
(GLUE's ``download_glue_data.py``: ``glue/SST-2/dev.tsv``, MRPC in MSR's
format with a byte-order mark, QQP's ``is_duplicate`` TSV; SuperGLUE's
``val.jsonl``) beside the stand-ins ``shared/assets`` ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import json_tail, run_cli

from keras_prompt.data import (
    HELDOUT_VALIDATION_SIZES,
    UnlabelledSplitError,
    load_examples,
    split_source,
)

MRPC_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"


def _write(root: Path, relative: str, lines: list[str], bom: bool = False) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", "utf-8")
    return path


def _sst2_train(root: Path, rows: int = 900) -> Path:
    # More rows than the 872-row carve-out, so the fallback can be taken.
    lines = ["sentence\tlabel"] + [f"train sentence {i} \t{i % 2}" for i in range(rows)]
    return _write(root, "glue/SST-2/train.tsv", lines)


def test_sst2_dev_tsv_is_validation_and_train_is_whole(tmp_path):
    train_path = _sst2_train(tmp_path)
    dev_path = _write(
        tmp_path,
        "glue/SST-2/dev.tsv",
        ["sentence\tlabel", "a gorgeous film \t1", "dull and long \t0", "fine \t1"],
    )
    validation = load_examples("sst2", "validation", data_dir=tmp_path)
    assert [e.inputs for e in validation] == [
        "sst2 sentence: a gorgeous film",
        "sst2 sentence: dull and long",
        "sst2 sentence: fine",
    ]
    assert [e.label for e in validation] == [1, 0, 1]
    # With the official dev file nothing is carved out of train.
    assert len(load_examples("sst2", "train", data_dir=tmp_path)) == 900

    source = split_source("sst2", "validation", data_dir=tmp_path).to_json()
    assert source["file"] == str(dev_path)
    assert source["official"] is True and source["rows"] == "all"
    assert "official validation file" in source["description"]
    train = split_source("sst2", "train", data_dir=tmp_path).to_json()
    assert train["file"] == str(train_path) and train["rows"] == "all"


def test_sst2_without_dev_tsv_holds_out_of_train(tmp_path):
    train_path = _sst2_train(tmp_path)
    size = HELDOUT_VALIDATION_SIZES["sst2"]
    validation = load_examples("sst2", "validation", data_dir=tmp_path)
    train = load_examples("sst2", "train", data_dir=tmp_path)
    assert len(validation) == size and len(train) == 900 - size
    assert not {e.inputs for e in validation} & {e.inputs for e in train}

    source = split_source("sst2", "validation", data_dir=tmp_path).to_json()
    assert source == {
        "split": "validation",
        "file": str(train_path),
        "official": False,
        "rows": "heldout",
        "heldout_size": size,
        "heldout_seed": 0,
        "description": f"{size} rows of {train_path} held out with seed 0 "
        "(no official validation file)",
    }
    assert split_source("sst2", "train", data_dir=tmp_path).rows == "all_but_heldout"


def test_mrpc_msr_format_dev_and_labelled_test(tmp_path):
    row = "1\t702876\t702977\tAmrozi accused his brother .\tReferring to him , Amrozi ."
    _write(tmp_path, "glue/MRPC/train.tsv", [MRPC_HEADER] + [row] * 500, bom=True)
    _write(
        tmp_path,
        "glue/MRPC/dev.tsv",
        [MRPC_HEADER, row, "0\t1\t2\tOne \"quoted\" thing .\tAnother ."],
        bom=True,
    )
    # GLUE's unlabelled test.tsv and MSR's labelled test file side by side.
    glue_test_header = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"
    _write(tmp_path, "glue/MRPC/test.tsv", [glue_test_header])
    _write(tmp_path, "glue/MRPC/msr_paraphrase_test.txt", [MRPC_HEADER, row], bom=True)

    validation = load_examples("mrpc", "validation", data_dir=tmp_path)
    assert [e.label for e in validation] == [1, 0]
    assert validation[1].inputs == (
        'mrpc sentence1: One "quoted" thing . sentence2: Another .'
    )
    assert len(load_examples("mrpc", "train", data_dir=tmp_path)) == 500
    test = load_examples("mrpc", "test", data_dir=tmp_path)
    assert [e.targets for e in test] == ["equivalent"]
    assert split_source("mrpc", "test", data_dir=tmp_path).path.endswith(
        "msr_paraphrase_test.txt"
    )

    (tmp_path / "glue/MRPC/msr_paraphrase_test.txt").unlink()
    with pytest.raises(UnlabelledSplitError, match=r"test\.tsv is unlabelled"):
        load_examples("mrpc", "test", data_dir=tmp_path)


def test_qqp_official_tsv_preferred_over_subset(tmp_path, assets_dir):
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    dev = _write(
        tmp_path,
        "glue/QQP/dev.tsv",
        [header, "0\t1\t2\tHow do I cook rice?\tHow to cook rice?\t1",
         "1\t3\t4\tWhat is AI?\tWho won the cup?\t0"],
    )
    subset = tmp_path / "glue/QQP/dev_subset.json"
    subset.write_text((assets_dir / "glue/QQP/dev_subset.json").read_text())
    validation = load_examples("qqp", "validation", data_dir=tmp_path)
    assert [e.targets for e in validation] == ["duplicate", "not_duplicate"]
    assert validation[0].inputs == (
        "qqp question1: How do I cook rice? question2: How to cook rice?"
    )
    assert split_source("qqp", "validation", data_dir=tmp_path).official is True

    dev.unlink()  # Back to the stand-in subset, recorded as such.
    assert len(load_examples("qqp", "validation", data_dir=tmp_path)) == 1000
    source = split_source("qqp", "validation", data_dir=tmp_path)
    assert source.official is False and source.path == str(subset)
    assert "stand-in" in source.describe()


def test_rte_val_jsonl_and_superglue_full_train(tmp_path):
    rows = [{"premise": f"p{i}", "hypothesis": "h", "label": "entailment"}
            for i in range(300)]
    _write(tmp_path, "superglue/RTE/train.jsonl", [json.dumps(r) for r in rows])
    _write(
        tmp_path,
        "superglue/RTE/val.jsonl",
        [json.dumps({"premise": "A", "hypothesis": "B", "label": "not_entailment"})],
    )
    assert [e.targets for e in load_examples("rte", "validation", data_dir=tmp_path)] \
        == ["not_entailment"]
    assert len(load_examples("rte", "train", data_dir=tmp_path)) == 300

    # SuperGLUE's own train.jsonl wins over FewGLUE's 32-shot file.
    cb = {"premise": "p", "hypothesis": "h", "label": "neutral"}
    _write(tmp_path, "superglue/CB/train.jsonl", [json.dumps(cb)] * 250)
    _write(tmp_path, "superglue/CB/train32.jsonl", [json.dumps(cb)] * 32)
    assert len(load_examples("cb", "train", data_dir=tmp_path)) == 250
    assert split_source("cb", "train", data_dir=tmp_path).official is True
    (tmp_path / "superglue/CB/train.jsonl").unlink()
    assert len(load_examples("cb", "train", data_dir=tmp_path)) == 32
    assert split_source("cb", "train", data_dir=tmp_path).official is False


def test_missing_files_list_every_candidate(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_examples("qqp", "validation", data_dir=tmp_path)
    message = str(info.value)
    assert "glue/QQP/dev.tsv" in message and "glue/QQP/dev_subset.json" in message
    # Validation carved from a missing train file names the train file.
    with pytest.raises(FileNotFoundError, match=r"SST-2/train\.tsv.*held out of it"):
        load_examples("sst2", "validation", data_dir=tmp_path)


def test_cli_train_and_eval_record_the_dev_file(tiny_preset, tmp_path):
    data = tmp_path / "data"
    _sst2_train(data, rows=40)  # Too few for the carve-out: dev.tsv must be used.
    dev = _write(
        data,
        "glue/SST-2/dev.tsv",
        ["sentence\tlabel"] + [f"dev sentence {i}\t{i % 2}" for i in range(6)],
    )
    out = tmp_path / "run"
    result = run_cli(
        "train", "--task", "sst2", "--model", tiny_preset, "--data-dir", data,
        "--steps", 1, "--batch-size", 4, "--prompt-length", 2,
        "--max-input-length", 32, "--out", out, "--verbose", 0,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert json_tail(result.stdout)["eval_source"] == metrics["eval_source"]
    assert metrics["eval_source"]["file"] == str(dev)
    assert metrics["eval_source"]["official"] is True
    assert metrics["train_source"]["rows"] == "all"
    assert metrics["eval"]["num_examples"] == 6

    evaluated = json_tail(
        run_cli(
            "eval", "--task", "sst2", "--model", tiny_preset, "--data-dir", data,
            "--prompt", out / "sst2.npy", "--max-input-length", 32,
        ).stdout
    )
    assert evaluated["source"]["file"] == str(dev)
    assert evaluated["accuracy"] == pytest.approx(metrics["eval"]["accuracy"])
