"""The shared training loop: recipes, data, a real run, LoRA, checkpoints, resume, two CPU processes."""

from __future__ import annotations

import json
import math
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hf_slm.recipes import RecipeError
from hf_slm.training import (
    DataArguments,
    LoraArguments,
    ModelArguments,
    TrainingArguments,
    load_train_recipe,
    train,
)
from hf_slm.training import loop as loop_module
from hf_slm.training.checkpoint import latest_checkpoint
from hf_slm.training.data import LengthGroupedBatchSampler, PadCollator, prepare_split

REPO = Path(__file__).resolve().parents[1]
PAD, EOS = 0, 1
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 64,
    "max_position_embeddings": 128,
    "pad_token_id": PAD,
    "bos_token_id": None,
    "eos_token_id": EOS,
}


def _patterned_rows(n: int, rng: random.Random) -> list[list[int]]:
    """Arithmetic sequences over the ids 2..63: learnable, so the loss must fall."""
    rows = []
    for _ in range(n):
        start, stride, length = rng.randrange(62), rng.choice([1, 2, 3]), rng.randint(6, 24)
        rows.append([2 + (start + stride * i) % 62 for i in range(length)])
    return rows


@pytest.fixture(scope="module")
def unit_data(tmp_path_factory) -> Path:
    from datasets import Dataset, DatasetDict

    rng = random.Random(0)
    out = tmp_path_factory.mktemp("units") / "dsd"
    DatasetDict(
        train=Dataset.from_dict({"input_ids": _patterned_rows(40, rng)}),
        validation=Dataset.from_dict({"input_ids": _patterned_rows(12, rng)}),
    ).save_to_disk(str(out))
    return out


def _recipe(data_dir: Path, out: Path, **sections) -> dict:
    recipe = {
        "name": "tiny",
        "model": {"config": dict(TINY_LLAMA)},
        "data": {"dataset": str(data_dir), "max_length": 32},
        "training": {
            "output_dir": str(out),
            "max_steps": 8,
            "per_device_batch_size": 8,
            "learning_rate": 3e-3,
            "warmup_steps": 2,
            "eval_steps": None,
            "save_steps": None,
            "logging_steps": 1,
            "report_to": "none",
        },
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    return recipe


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ----------------------------------------------------------------------------------------------- recipes


def test_every_argument_has_help():
    import dataclasses

    for cls in (ModelArguments, DataArguments, TrainingArguments, LoraArguments):
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("help", "")) > 10, f"{cls.__name__}.{f.name} has no help"


def test_recipe_validation(tmp_path, unit_data):
    good = _recipe(unit_data, tmp_path / "out")

    bad = _write(tmp_path / "section.yaml", {**good, "optimiser": {"lr": 1}})
    with pytest.raises(RecipeError, match=r"optimiser") as err:
        load_train_recipe(bad)
    assert str(bad) in str(err.value) and "training" in str(err.value)

    bad = _write(tmp_path / "key.yaml", {**good, "training": {**good["training"], "lr": 0.1}})
    with pytest.raises(RecipeError, match=r"training\.'lr'|'lr'") as err:
        load_train_recipe(bad)
    assert str(bad) in str(err.value) and "learning_rate" in str(err.value)  # the allowed keys

    bad = _write(tmp_path / "type.yaml", {**good, "training": {**good["training"], "max_steps": "ten"}})
    with pytest.raises(RecipeError, match=r"training\.max_steps must be an integer"):
        load_train_recipe(bad)
    bad = _write(tmp_path / "bool.yaml", {**good, "data": {**good["data"], "packing": "yes"}})
    with pytest.raises(RecipeError, match=r"data\.packing must be true or false"):
        load_train_recipe(bad)
    bad = _write(tmp_path / "lit.yaml", {**good, "training": {**good["training"], "mixed_precision": "fp8"}})
    with pytest.raises(RecipeError, match=r"mixed_precision"):
        load_train_recipe(bad)
    both = {**good, "model": {"config": TINY_LLAMA, "model_name_or_path": "x"}}
    with pytest.raises(RecipeError, match="exactly one"):
        load_train_recipe(_write(tmp_path / "both.yaml", both))

    path = _write(tmp_path / "good.yaml", good)
    recipe = load_train_recipe(
        path, ["training.max_steps=10", "training.learning_rate=1e-4", "model.config.hidden_size=64"]
    )
    assert recipe.training.max_steps == 10 and isinstance(recipe.training.max_steps, int)
    assert recipe.training.learning_rate == pytest.approx(1e-4)
    assert recipe.model.config["hidden_size"] == 64 and recipe.name == "tiny"
    with pytest.raises(RecipeError, match="max_steps must be an integer"):
        load_train_recipe(path, ["training.max_steps=lots"])
    with pytest.raises(RecipeError, match=r"section\.key=value"):
        load_train_recipe(path, ["max_steps"])


def test_pipeline_recipe_is_rejected(tmp_path, capsys):
    from hf_slm.cli import main

    steps = _write(tmp_path / "pipe.yaml", {"name": "p", "steps": [{"run": "data synth", "args": {}}]})
    with pytest.raises(RecipeError, match=r"hf-slm recipe run .*pipe\.yaml"):
        load_train_recipe(steps)
    assert main(["train", str(steps)]) == 2
    assert "hf-slm recipe run" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- data


def test_packing_keeps_every_token(unit_data):
    from datasets import load_from_disk

    rows = load_from_disk(str(unit_data))["train"]
    args = DataArguments(dataset=str(unit_data), max_length=16, packing=True)
    packed = prepare_split(rows, args, eos_token_id=EOS, log=lambda _: None)
    stream = [t for r in rows["input_ids"] for t in [*r, EOS]]
    blocks = packed["input_ids"]
    assert [t for b in blocks for t in b] == stream
    assert all(len(b) == 16 for b in blocks[:-1]) and 2 <= len(blocks[-1]) <= 16
    assert packed["length"] == [len(b) for b in blocks]

    unpacked = prepare_split(rows, DataArguments(dataset="x", max_length=10), log=lambda _: None)
    assert unpacked["input_ids"] == [r[:10] for r in rows["input_ids"]]  # truncated, not packed


def test_model_hook_makes_input_ids():
    """A dataset of something else (e.g. audio) is turned into ids by the model's own hook."""
    from datasets import Dataset

    class SpeechLikeModel:
        calls = []

        def prepare_training_dataset(self, dataset, num_proc=None):
            self.calls.append(num_proc)
            return dataset.map(lambda row: {"input_ids": [2 + int(v) for v in row["signal"]]})

    rows = Dataset.from_dict({"signal": [[1, 2, 3], [4, 5, 6, 7]], "text": ["a b", "c"]})
    args = DataArguments(dataset="x", num_proc=None)
    prepared = prepare_split(rows, args, model=SpeechLikeModel(), eos_token_id=EOS)
    assert prepared["input_ids"] == [[3, 4, 5], [6, 7, 8, 9]] and SpeechLikeModel.calls == [None]
    assert prepared.column_names == ["input_ids", "length"]
    with pytest.raises(RecipeError, match="no tokenizer"):  # text and no hook: say what is missing
        prepare_split(rows, args, model=object())


def test_bucketing_batches_cover_every_row_once():
    rng = random.Random(1)
    lengths = [rng.randint(1, 200) for _ in range(203)]
    plain = LengthGroupedBatchSampler(lengths, 8, seed=3)
    bucketed = LengthGroupedBatchSampler(lengths, 8, seed=3, bucket_by_length=True, megabatch_mult=5)

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    for sampler in (plain, bucketed):
        batches = list(sampler)
        assert len(batches) == len(sampler) == 26
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert sorted(len(b) for b in batches)[1:] == [8] * 25
    assert padding(list(bucketed)) < padding(list(plain)) / 3
    first = list(bucketed)
    assert list(bucketed) == first  # the order is a function of (seed, epoch)
    bucketed.epoch = 1
    assert list(bucketed) != first
    # batches of one bucket are not all in long-to-short order
    maxima = [max(lengths[i] for i in b) for b in first]
    assert maxima != sorted(maxima, reverse=True)


def test_collator_pads_and_masks_labels():
    batch = PadCollator(pad_token_id=PAD)([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, 9, -100]]


# ------------------------------------------------------------------------------------------------- runs


def test_run_learns_and_writes_everything(tmp_path, unit_data, capsys):
    from transformers import AutoModelForCausalLM

    from hf_slm.cli import main

    out = tmp_path / "run"
    path = _write(tmp_path / "r.yaml", _recipe(unit_data, out, training={"report_to": "tensorboard"}))
    overrides = ["training.max_steps=60", "training.eval_steps=20", "training.learning_rate=1e-2"]
    assert main(["train", str(path), *[a for o in overrides for a in ("--set", o)]]) == 0
    log = json.loads((out / "training_log.json").read_text())
    losses = [h["loss"] for h in log["history"] if "loss" in h]
    evals = [h["eval_loss"] for h in log["history"] if "eval_loss" in h]
    assert len(losses) == 60 and len(evals) == 3  # steps 20, 40, 60
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert evals[-1] < evals[0]
    lrs = [h["lr"] for h in log["history"] if "lr" in h]  # warm-up over 2 steps, then cosine to 0 at 60
    assert lrs[:2] == pytest.approx([0.5e-2, 1e-2])
    assert lrs[30] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 28 / 58)))
    assert lrs[-1] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 57 / 58)))
    summary = log["summary"]
    assert summary["steps"] == 60 and summary["final_eval_loss"] == evals[-1]
    assert summary["tokens_per_second"] > 0 and summary["num_processes"] == 1
    assert '"final_train_loss"' in capsys.readouterr().out  # the summary is printed
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    assert yaml.safe_load((out / "train_recipe.yaml").read_text())["training"]["max_steps"] == 60

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.hidden_size == 32
    ids = torch.tensor([[2 + 3 * i for i in range(12)]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < 3.5  # an untrained model of 64 ids is near ln(64) = 4.16


def test_text_data_with_word_level_tokenizer(tmp_path):
    from datasets import Dataset, DatasetDict
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    words = ["the", "a", "dog", "cat", "sees", "runs", "small", "red", "ball", "garden"]
    vocab = {"[PAD]": 0, "[EOS]": 1, "[UNK]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]"
    )
    tok.save_pretrained(tmp_path / "tok")
    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 8))) for _ in range(24)]
    DatasetDict(
        train=Dataset.from_dict({"text": texts}), validation=Dataset.from_dict({"text": texts[:4]})
    ).save_to_disk(str(tmp_path / "text"))

    args = DataArguments(dataset=str(tmp_path / "text"), max_length=32)
    prepared = prepare_split(Dataset.from_dict({"text": texts[:3]}), args, tokenizer=tok, eos_token_id=1)
    assert prepared["input_ids"] == [[vocab[w] for w in t.split()] + [1] for t in texts[:3]]

    config = {**TINY_LLAMA, "vocab_size": len(vocab)}
    out = tmp_path / "out"
    summary = train(
        _recipe(tmp_path / "text", out, model={"config": config, "tokenizer": str(tmp_path / "tok")}),
        overrides=["training.max_steps=4"],
    )
    assert summary["steps"] == 4 and summary["final_eval_loss"] is not None
    assert AutoTokenizer.from_pretrained(out)("the dog")["input_ids"] == [vocab["the"], vocab["dog"]]

    with pytest.raises(RecipeError, match="tokenizer"):  # text without a tokenizer: a clear error
        train(_recipe(tmp_path / "text", tmp_path / "out2"))


def test_lora_trains_only_the_adapter(tmp_path, unit_data):
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = dict(TINY_LLAMA)
    base = AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    base.save_pretrained(tmp_path / "base")
    out = tmp_path / "lora"
    recipe = _recipe(
        unit_data, out, lora={"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    )
    recipe["model"] = {"model_name_or_path": str(tmp_path / "base")}
    summary = train(recipe, overrides=["training.learning_rate=1e-2"])
    assert 0 < summary["trainable_parameters"] < summary["parameters"] / 10

    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tmp_path / "base"
    )
    before, merged = _weights(tmp_path / "base"), _weights(out / "merged")
    changed = {k for k in before if not torch.equal(before[k], merged[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)

    ids = torch.tensor([[2 + i for i in range(10)]])
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), out).eval()
    full = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(adapted(ids).logits, full(ids).logits, atol=1e-4, rtol=1e-4)
        plain = AutoModelForCausalLM.from_pretrained(tmp_path / "base")(ids).logits
    assert not torch.allclose(plain, full(ids).logits, atol=1e-4)

    with pytest.raises(RecipeError, match="model_name_or_path"):
        train(_recipe(unit_data, tmp_path / "x", lora={"enabled": True}))


class _Interrupted(Exception):
    pass


def test_resume_matches_an_uninterrupted_run(tmp_path, unit_data, monkeypatch):
    # dropout, accumulation, bucketing and an epoch boundary inside the run: RNG, optimizer,
    # schedule and data position must all come back for the weights to match
    common = dict(
        model={"config": {**TINY_LLAMA, "attention_dropout": 0.2}},
        data={"bucket_by_length": True},
        training={"per_device_batch_size": 4, "gradient_accumulation_steps": 2, "save_steps": 2,
                  "save_total_limit": 2, "eval_steps": 4},
    )  # fmt: skip
    straight = train(_recipe(unit_data, tmp_path / "a", **common))
    assert straight["steps"] == 8
    assert [p.name for p in sorted((tmp_path / "a" / "checkpoints").iterdir())] == ["step_6", "step_8"]
    ckpt = tmp_path / "a" / "checkpoints" / "step_8"
    for name in (
        "model.safetensors",
        "optimizer.bin",
        "scheduler.bin",
        "random_states_0.pkl",
        "loop_state.json",
    ):
        assert (ckpt / name).is_file(), name
    state = json.loads((ckpt / "loop_state.json").read_text())
    assert state["step"] == 8 and state["epoch"] == 1  # 10 micro-batches per epoch, 16 consumed

    real_save = loop_module.save_checkpoint

    def save_then_die(accelerator, root, step, loop_state):
        path = real_save(accelerator, root, step, loop_state)
        if step == 4:
            raise _Interrupted
        return path

    monkeypatch.setattr(loop_module, "save_checkpoint", save_then_die)
    with pytest.raises(_Interrupted):
        train(_recipe(unit_data, tmp_path / "b", **common))
    monkeypatch.undo()
    checkpoints = tmp_path / "b" / "checkpoints"
    stale = checkpoints / "step_7.tmp"  # an interrupted save: newer, but never resumed from
    stale.mkdir()
    (stale / "loop_state.json").write_text(json.dumps({"step": 7}))
    assert latest_checkpoint(checkpoints).name == "step_4"

    resumed = train(
        _recipe(unit_data, tmp_path / "b", **common), overrides=["training.resume_from_checkpoint=latest"]
    )
    assert resumed["resumed_from"].endswith("step_4") and resumed["steps"] == 8
    assert not stale.exists()  # removed by the next save
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0)
    hist_a = json.loads((tmp_path / "a" / "training_log.json").read_text())["history"]
    hist_b = json.loads((tmp_path / "b" / "training_log.json").read_text())["history"]
    assert [h["step"] for h in hist_b] == [h["step"] for h in hist_a]  # the log survives the resume
    for ha, hb in zip(hist_a, hist_b):
        for key in ("loss", "eval_loss"):
            if key in ha:
                assert hb[key] == pytest.approx(ha[key], abs=1e-5)

    stale.mkdir()
    with pytest.raises(RecipeError, match="incomplete checkpoint"):
        train(_recipe(unit_data, tmp_path / "c"), overrides=[f"training.resume_from_checkpoint={stale}"])


# -------------------------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_save_and_resume(tmp_path, unit_data):
    out = tmp_path / "ddp"
    recipe = _write(
        tmp_path / "ddp.yaml",
        _recipe(unit_data, out, training={"max_steps": 4, "save_steps": 2, "per_device_batch_size": 4,
                                          "eval_steps": 2}),
    )  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    accelerate = Path(sys.executable).with_name("accelerate")

    def launch(*overrides: str) -> subprocess.CompletedProcess:
        cmd = [str(accelerate), "launch", "--config_file", str(REPO / "modeling/accelerate/cpu_ddp.yaml"),
               "--main_process_port", str(_free_port()), "-m", "hf_slm.train", str(recipe)]  # fmt: skip
        for item in overrides:
            cmd += ["--set", item]
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    launch()
    log = json.loads((out / "training_log.json").read_text())
    assert log["summary"]["num_processes"] == 2 and log["summary"]["steps"] == 4
    ckpt = out / "checkpoints" / "step_4"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert json.loads((ckpt / "loop_state.json").read_text())["num_processes"] == 2

    done = launch("training.max_steps=6", "training.resume_from_checkpoint=latest")
    summary = json.loads((out / "training_log.json").read_text())["summary"]
    assert summary["steps"] == 6 and summary["resumed_from"].endswith("step_4")
    assert summary["final_eval_loss"] is not None
    assert done.stdout.count('"resumed_from"') == 1  # the summary is printed by the main process only

    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, unit_data, capsys):
    from hf_slm.cli import main
    from hf_slm.training import TrainingError, train

    out = tmp_path / "run"
    # an absurd learning rate: the first update sends the weights to ~1e30 and the next loss is NaN or inf
    recipe = _recipe(unit_data, out, training={"learning_rate": 1e30, "warmup_steps": 0, "save_steps": 1,
                                               "max_grad_norm": None})  # fmt: skip
    with pytest.raises(TrainingError, match=r"the training loss became (nan|inf) at step (\d+)") as err:
        train(recipe)
    bad_step = int(err.value.args[0].split(" at step ")[1].split(":")[0])
    assert bad_step >= 2
    last = latest_checkpoint(out / "checkpoints")
    assert last is not None and last.name == f"step_{bad_step - 1}" and str(last) in str(err.value)
    assert (
        not (out / "checkpoints" / f"step_{bad_step}").exists() and not (out / "model.safetensors").exists()
    )
    # the command line prints the message and exits with an error, no traceback
    path = _write(
        tmp_path / "r.yaml", {**recipe, "training": {**recipe["training"], "output_dir": str(tmp_path / "b")}}
    )
    assert main(["train", str(path)]) == 2
    assert "the training loss became" in capsys.readouterr().err
