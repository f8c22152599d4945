"""`hf-slm finetune`: a zoo model of each family adapted on a user corpus with LoRA, as a user runs it.

The corpora come in the formats users have (audiofolder with metadata.csv, JSONL manifest, a
`save_to_disk` folder), with broken files among them; the adapter is loaded back the ways a user
loads it (`load_adapter`, `PeftModel`, the merged folder) and must give the model that was trained.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

# pytest puts tests/ on sys.path (no __init__.py there)
from test_training import _free_port

from hf_slm import load_audio
from hf_slm.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"


def _write_clips(folder: Path, rows) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k, row in enumerate(rows):
        name = f"{row['voice'].replace('+', '_')}_{k}.wav"
        sf.write(folder / name, load_audio(row["audio"]), 16_000)
        names.append(name)
    return names


def _broken_files(folder: Path) -> dict[str, str]:
    """Three files a real corpus may hold: cut short, not audio at all, empty."""
    good = next(folder.glob("*.wav")).read_bytes()
    (folder / "truncated.wav").write_bytes(good[:100])  # the header and a few samples
    (folder / "notes.wav").write_text("this is a text file saved with the wrong extension\n")
    (folder / "empty.wav").write_bytes(b"")
    return {"truncated.wav": "the cat sat", "notes.wav": "a dog ran", "empty.wav": "the sun"}


@pytest.fixture(scope="module")
def audiofolder(tiny_corpus, tmp_path_factory) -> Path:
    """A user's audiofolder: train/ and test/ folders, each with metadata.csv; three broken train files."""
    root = tmp_path_factory.mktemp("user") / "corpus"
    for split, source, n in (("train", "train", 24), ("test", "test", 6)):
        rows = tiny_corpus[source].select(range(n))
        names = _write_clips(root / split, rows)
        lines = [f"{name},{text}" for name, text in zip(names, rows["text"])]
        if split == "train":
            lines += [f"{name},{text}" for name, text in _broken_files(root / split).items()]
        (root / split / "metadata.csv").write_text("file_name,text\n" + "\n".join(lines) + "\n")
    return root


def _lm_loss(model, processor, clip, text_instruction: str | None = None) -> torch.Tensor:
    conv = [{"role": "user", "content": [{"type": "audio", "audio": clip, "sampling_rate": 16_000},
                                          {"type": "text", "text": text_instruction}]}]  # fmt: skip
    inputs = processor.apply_chat_template(
        conv, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**inputs).logits


def test_speech_aware_asr_on_an_audiofolder_with_broken_files(audiofolder, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModel, AutoProcessor

    out = tmp_path / "ft"
    code = cli_main(["finetune", "--model", str(ZOO / "speech-aware-lm-tiny"), "--data", str(audiofolder),
                     "--task", "asr", "--lora-r", "4", "--out", str(out), "--max-steps", "8",
                     "--batch-size", "4", "--save-steps", "4"])  # fmt: skip
    assert code == 0
    log = capsys.readouterr()
    printed = log.out + log.err

    # the three broken files are skipped, counted and listed; no other row is lost
    skipped = json.loads((out / "skipped_audio.json").read_text())
    assert sorted(Path(s["path"]).name for s in skipped) == ["empty.wav", "notes.wav", "truncated.wav"]
    assert all(s["split"] == "train" and s["error"] for s in skipped)
    for name in ("empty.wav", "notes.wav", "truncated.wav"):
        assert name in printed
    results = json.loads((out / "finetune_results.json").read_text())
    assert results["skipped_audio"]["count"] == 3
    assert results["train_rows"] == 24 and results["heldout"]["rows"] == 6
    assert results["heldout"]["source"] == "the 'test' split"
    assert results["before"]["value"] >= 0 and results["after"]["value"] >= 0  # WER on the held-out voices
    # the adapter, reloaded from disk with load_adapter, is the model the loop validated at its last step
    assert results["after"]["heldout_loss"] == pytest.approx(results["training"]["final_eval_loss"], abs=1e-5)
    assert results["after"]["heldout_loss"] != pytest.approx(results["before"]["heldout_loss"], abs=1e-4)
    assert results["training"]["steps"] == 8

    # adapter-only checkpoint, no full weights at the top
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    from safetensors.torch import load_file

    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert all("lora_" in k for k in adapter)  # LoRA weights only (the new ones and the model's own)
    assert sum(v.numel() for v in adapter.values()) < 0.2 * results["training"]["parameters"]
    card = (out / "README.md").read_text()
    assert "load_adapter" in card and "library_name: peft" in card and "| wer |" in card
    assert (out / "finetune_results.png").stat().st_size > 5_000

    # the three ways a user loads it give the same model, which differs from the base
    processor = AutoProcessor.from_pretrained(out)
    clip = load_audio(audiofolder / "test" / next(p.name for p in (audiofolder / "test").glob("*.wav")))
    base = AutoModel.from_pretrained(ZOO / "speech-aware-lm-tiny").eval()
    ref = _lm_loss(base, processor, clip, "Transcribe the audio.")
    adapted = AutoModel.from_pretrained(ZOO / "speech-aware-lm-tiny")
    adapted.load_adapter(str(out))
    a = _lm_loss(adapted.eval(), processor, clip, "Transcribe the audio.")
    b = _lm_loss(PeftModel.from_pretrained(AutoModel.from_pretrained(ZOO / "speech-aware-lm-tiny"), out).eval(),
                 processor, clip, "Transcribe the audio.")  # fmt: skip
    merged = AutoModel.from_pretrained(out / "merged").eval()
    c = _lm_loss(merged, processor, clip, "Transcribe the audio.")
    assert (a - ref).abs().max() > 1e-3
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    torch.testing.assert_close(c, a, atol=1e-4, rtol=0)
    # the merged model keeps the base's own LoRA layers (its text-only guard): same class, same config
    assert merged.config.text_lora == base.config.text_lora
    assert any("lora_A" in n for n, _ in merged.named_parameters())
    assert not any("audio_encoder" in n and "lora_" in n for n, _ in merged.named_parameters())


def test_speech_text_lm_asr_and_tts_from_a_jsonl_manifest(tiny_corpus, tmp_path):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoProcessor

    folder = tmp_path / "manifest"
    rows = tiny_corpus["train"].select(range(20))
    names = _write_clips(folder / "wavs", rows)
    (folder / "all.jsonl").write_text(
        "\n".join(json.dumps({"audio_filepath": f"wavs/{n}", "text": t}) for n, t in zip(names, rows["text"]))
    )
    model = str(ZOO / "speech-text-lm-tiny")
    processor = AutoProcessor.from_pretrained(model)
    for task, marker in (("asr", "[TEXT]"), ("tts", "[SPEECH]")):
        out = tmp_path / task
        code = cli_main(["finetune", "--model", model, "--data", str(folder / "all.jsonl"), "--task", task,
                         "--out", str(out), "--max-steps", "3", "--batch-size", "4", "--eval-fraction", "0.2",
                         "--max-eval-samples", "3", "--save-steps", "3"])  # fmt: skip
        assert code == 0
        results = json.loads((out / "finetune_results.json").read_text())
        assert results["heldout"]["source"].startswith("20% of 'train'") and results["train_rows"] == 16
        assert results["before"]["metric"] == ("wer" if task == "asr" else "judge_wer")
        # the loss falls on the answer only: the transcript (asr) or the units (tts)
        data = load_from_disk(str(out / "data"))["train"]
        cut = processor.marker_id(marker)
        for row in data.select(range(4)):
            k = row["input_ids"].index(cut)
            assert all(x == -100 for x in row["labels"][: k + 1])
            assert row["labels"][k + 1 :] == row["input_ids"][k + 1 :]
        # adapter + merged both load as causal LMs and agree
        ids = torch.tensor([data[0]["input_ids"]])
        base = AutoModelForCausalLM.from_pretrained(model)
        base.load_adapter(str(out))
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")
        with torch.no_grad():
            torch.testing.assert_close(merged(ids).logits, base.eval()(ids).logits, atol=1e-4, rtol=0)


def test_speech_lm_continuation_from_a_saved_dataset(tiny_corpus, tmp_path):
    from datasets import DatasetDict

    data = tmp_path / "saved"
    DatasetDict(
        train=tiny_corpus["train"].select(range(16)), validation=tiny_corpus["validation"].select(range(4))
    ).save_to_disk(str(data))
    out = tmp_path / "cont"
    code = cli_main(["finetune", "--model", str(ZOO / "speech-lm-tiny"), "--data", str(data), "--task",
                     "continuation", "--out", str(out), "--max-steps", "3", "--batch-size", "4",
                     "--save-steps", "3"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "finetune_results.json").read_text())
    assert results["heldout"]["source"] == "the 'validation' split" and results["heldout"]["rows"] == 4
    assert results["before"]["heldout_loss"] > 0 and "value" not in results["after"]
    # the LoRA goes on the LLM, not on the frozen unit tokenizer's encoder nor the vocoder
    from safetensors.torch import load_file

    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and all(k.startswith("base_model.model.lm.model.layers.") for k in adapter)


def test_speech_aware_instruction_data(tiny_corpus_dir, tmp_path):
    """`hf-slm data instructions` output fine-tunes as is; the held-out sample mixes the tasks."""
    data = tmp_path / "instructions"
    assert cli_main(["data", "instructions", "--data", str(tiny_corpus_dir), "--out", str(data),
                     "--eval-per-task", "4"]) == 0  # fmt: skip
    out = tmp_path / "ins"
    code = cli_main(["finetune", "--model", str(ZOO / "speech-aware-lm-tiny"), "--data", str(data), "--task",
                     "instruction", "--out", str(out), "--max-steps", "3", "--batch-size", "4",
                     "--max-eval-samples", "14", "--save-steps", "3"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "finetune_results.json").read_text())
    assert results["before"]["metric"] == "macro_accuracy" and results["heldout"]["rows"] == 14
    assert len(results["before"]["tasks"]) >= 5  # a seeded sample of the split, not its first rows
    for when in ("before", "after"):
        assert 0 <= results[when]["value"] <= 1
    assert results["after"]["heldout_loss"] == pytest.approx(results["training"]["final_eval_loss"], abs=1e-5)


def test_resume_goes_on_from_the_last_checkpoint(tiny_corpus, tmp_path):
    from datasets import DatasetDict

    data = tmp_path / "saved"
    DatasetDict(
        train=tiny_corpus["train"].select(range(12)), validation=tiny_corpus["validation"].select(range(3))
    ).save_to_disk(str(data))
    args = ["finetune", "--model", str(ZOO / "speech-lm-tiny"), "--data", str(data), "--task", "continuation",
            "--out", str(tmp_path / "run"), "--batch-size", "4", "--save-steps", "2", "--no-task-eval"]  # fmt: skip
    assert cli_main([*args, "--max-steps", "2"]) == 0
    assert cli_main([*args, "--max-steps", "4", "--resume"]) == 0
    training = json.loads((tmp_path / "run" / "finetune_results.json").read_text())["training"]
    assert training["resumed_from"].endswith("step_2") and training["steps"] == 4


def test_bad_requests_name_the_fix(audiofolder, tmp_path, capsys):
    speech_lm = str(ZOO / "speech-lm-tiny")
    cases = [
        (["--model", speech_lm, "--data", str(audiofolder), "--task", "asr"], "cannot be fine-tuned for 'asr'"),
        (["--model", str(ZOO / "units-mfcc-256"), "--data", str(audiofolder), "--task", "asr"], "hf-slm finetune takes"),
        (["--model", speech_lm, "--data", str(tmp_path / "nowhere"), "--task", "continuation"], "cannot find a corpus"),
        (["--model", str(ZOO / "speech-aware-lm-tiny"), "--data", str(audiofolder), "--task", "instruction"],
         "needs `instruction` and `response` columns"),
        (["--model", speech_lm, "--data", str(audiofolder), "--task", "continuation", "--eval-split", "dev"],
         "has the splits"),
    ]  # fmt: skip
    for args, message in cases:
        assert cli_main(["finetune", *args, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err, args


@pytest.mark.slow
def test_accelerate_launch_two_processes(audiofolder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
           str(REPO / "modeling/accelerate/cpu_ddp.yaml"), "--main_process_port", str(_free_port()),
           "-m", "hf_slm.finetune", "--model", str(ZOO / "speech-aware-lm-tiny"), "--data", str(audiofolder),
           "--task", "asr", "--out", str(out), "--max-steps", "4", "--batch-size", "2", "--save-steps", "2",
           "--no-task-eval"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "finetune_results.json").read_text())
    assert results["training"]["num_processes"] == 2 and results["training"]["steps"] == 4
    printed = done.stdout + done.stderr
    assert printed.count("wrote the adapter") == 1 and printed.count("before: held-out loss") == 1
    assert printed.count("skipped 3 clip(s)") == 1
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
