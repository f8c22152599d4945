"""The commands of the speech-aware-lm-tiny recipe, end to end on a tiny corpus and tiny components:
instruction data, a model composed from two checkpoint folders, adapter-only training, LoRA, evaluation,
export with a card."""

from __future__ import annotations

import json

import torch
from datasets import load_from_disk
from transformers import AutoModel, AutoProcessor, HubertConfig, HubertForCTC, LlamaConfig, LlamaForCausalLM

from hf_slm.auto import _TINY_HUBERT
from hf_slm.cli import main
from hf_slm.training import train


def _train(model_dir, data_dir, out, steps, lr=3e-3):
    recipe = {
        "name": out.name,
        "model": {"model_name_or_path": str(model_dir)},
        "data": {"dataset": str(data_dir), "bucket_by_length": True, "max_eval_samples": 8},
        "training": {"output_dir": str(out), "max_steps": steps, "per_device_batch_size": 4, "learning_rate": lr,
                     "warmup_steps": 1, "eval_steps": steps, "save_steps": steps, "logging_steps": 1,
                     "report_to": "none"},
    }  # fmt: skip
    return train(recipe)


def test_speech_aware_lm_recipe_commands(tiny_corpus_dir, tiny_corpus, tmp_path):
    # 0. text + a WordPiece tokenizer with the chat tokens; a tiny LLM on it (random weights suffice here)
    assert main(["data", "text", "--data", str(tiny_corpus_dir), "--tokenizer", "wordpiece", "--vocab-size", "200",
                 "--instructions", "50", "--out", str(tmp_path / "text")]) == 0  # fmt: skip
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "text" / "tokenizer")
    assert "<|audio|>" in tok.get_vocab()
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))  # fmt: skip
    lm.save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    # 1. an encoder checkpoint (a CTC model's folder, as `units pretrain-ctc` writes)
    HubertForCTC(
        HubertConfig(**{k: v for k, v in _TINY_HUBERT.items() if k != "model_type"})
    ).save_pretrained(tmp_path / "ctc")
    # instruction rows from the corpus metadata
    assert main(["data", "instructions", "--data", str(tiny_corpus_dir), "--out", str(tmp_path / "instr"),
                 "--eval-per-task", "2"]) == 0  # fmt: skip
    instr = load_from_disk(str(tmp_path / "instr"))
    assert {"audio", "instruction", "response", "task"} <= set(instr["train"].column_names)

    # 2. compose, then adapter-only training: only the adapter changes
    init = tmp_path / "init"
    assert main(["speech-aware-lm", "init", "--audio-encoder", str(tmp_path / "ctc"), "--text-model",
                 str(tmp_path / "llm"), "--adapter", "stack_mlp", "--out", str(init)]) == 0  # fmt: skip
    before = AutoModel.from_pretrained(init).state_dict()
    summary = _train(init, tmp_path / "instr", tmp_path / "stage2", steps=3)
    assert summary["steps"] == 3 and summary["final_eval_loss"] is not None
    after = AutoModel.from_pretrained(tmp_path / "stage2").state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"adapter"}
    assert (tmp_path / "stage2" / "processor_config.json").exists()

    # 3. LoRA on the LLM (active with audio only), trained with the adapter
    lora = tmp_path / "lora"
    assert main(["speech-aware-lm", "init", "--from", str(tmp_path / "stage2"), "--text-lora",
                 '{"r": 4, "target_modules": ["q_proj", "v_proj"]}', "--out", str(lora)]) == 0  # fmt: skip
    _train(lora, tmp_path / "instr", tmp_path / "stage3", steps=2)
    model = AutoModel.from_pretrained(tmp_path / "stage3")
    assert model.config.text_lora["r"] == 4 and model.config.text_lora_audio_only
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in model.state_dict().items())

    # 4. evaluation: ASR, instruction accuracy per task, retention (the guard keeps text perplexity exact)
    out_json = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "stage3"), "--task", "asr,instructions,retention", "--data",
                 str(tiny_corpus_dir), "--instructions", str(tmp_path / "instr"), "--text-lm", str(tmp_path / "llm"),
                 "--split", "test", "--limit", "4", "--batch-size", "4", "--out", str(out_json)]) == 0  # fmt: skip
    results = json.loads(out_json.read_text())
    assert results["asr"]["num_utterances"] == 4 and results["asr"]["wer"] >= 0
    assert set(results["instructions"]["tasks"]) == set(instr["test"]["task"])
    r = results["retention"]
    assert r["after"] == r["before"] and r["guard"] and "after_lora_always_on" in r
    assert out_json.with_suffix(".png").exists()

    # 5. export: a zoo folder that loads with the Auto classes, with its card
    zoo = tmp_path / "zoo" / "speech-aware-lm-x"
    assert main(["speech-aware-lm", "export", "--model", str(tmp_path / "stage3"), "--out", str(zoo),
                 "--results", str(out_json)]) == 0  # fmt: skip
    loaded, proc = AutoModel.from_pretrained(zoo), AutoProcessor.from_pretrained(zoo)
    assert loaded.dtype == torch.float32 and loaded.config.text_lora["r"] == 4
    chat = [{"role": "user", "content": [{"type": "audio", "audio": tiny_corpus["test"][0]["audio"]},
                                         {"type": "text", "text": "Transcribe the audio."}]}]  # fmt: skip
    inputs = proc.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert loaded.generate(**inputs, max_new_tokens=3).shape[1] > inputs["input_ids"].shape[1]
    card = (zoo / "README.md").read_text()
    assert "model-index" in card and "instruction: transcribe" in card
