"""`hf-slm data text`, `speech-lm init` and `speech-lm export`: the commands the zoo recipe runs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoProcessor, AutoTokenizer

from hf_slm.cli import main
from hf_slm.data.text_corpus import phoneme_string

ZOO = Path(__file__).resolve().parents[1] / "zoo"


def test_data_text_words_and_phonemes(tiny_corpus_dir, tiny_corpus, tmp_path):
    assert (
        main(
            [
                "data",
                "text",
                "--data",
                str(tiny_corpus_dir),
                "--field",
                "phonemes",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    ds = load_from_disk(str(tmp_path / "p"))
    row, src = ds["train"][0], tiny_corpus["train"][0]
    assert row["text"] == phoneme_string(src["words"]) and "|" not in row["text"]
    tok = AutoTokenizer.from_pretrained(tmp_path / "p" / "tokenizer")
    ids = tok(row["text"]).input_ids
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert len(ids) == 1 + len(row["text"].split())
    assert main(["data", "text", "--data", str(tiny_corpus_dir), "--out", str(tmp_path / "w")]) == 0
    assert load_from_disk(str(tmp_path / "w"))["test"][0]["text"] == tiny_corpus["test"][0]["text"].lower()


def test_init_then_export_makes_a_loadable_zoo_folder(tiny_corpus_dir, tmp_path):
    backbone = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 2048}  # fmt: skip
    (tmp_path / "bb.json").write_text(json.dumps(backbone))
    init = tmp_path / "init"
    code = main(["speech-lm", "init", "--unit-tokenizer", str(ZOO / "units-mfcc-256"), "--vocoder",
                 str(ZOO / "vocoder-mfcc-256"), "--backbone-config", str(tmp_path / "bb.json"),
                 "--data", str(tiny_corpus_dir), "--out", str(init)])  # fmt: skip
    assert code == 0
    units = load_from_disk(str(init / "units"))
    assert set(units) == {"train", "validation"} and "input_ids" in units["train"].column_names
    model = AutoModelForCausalLM.from_pretrained(init)
    assert float(model.unit_durations.min()) >= 1.0 and float(model.unit_durations.max()) > 1.0

    results = {
        "split": "test",
        "tasks": {"lexical": {"num_ids": 3, "sum": {"score": 0.75}, "mean": {"score": 0.5}}},
    }
    (tmp_path / "r.json").write_text(json.dumps(results))
    out = tmp_path / "zoo" / "speech-lm-x"
    assert (
        main(
            [
                "speech-lm",
                "export",
                "--model",
                str(init),
                "--out",
                str(out),
                "--results",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    loaded = AutoModelForCausalLM.from_pretrained(out)
    sd_a, sd_b = model.state_dict(), loaded.state_dict()
    for k in sd_a:  # the backbone and vocoder are stored in bfloat16, the tokenizer exactly
        if k.startswith("unit_tokenizer."):
            assert torch.equal(sd_a[k], sd_b[k]), k
        else:
            torch.testing.assert_close(sd_a[k].float(), sd_b[k].float(), rtol=1e-2, atol=1e-2)
    assert isinstance(AutoProcessor.from_pretrained(out).feature_extractor.sampling_rate, int)
    card = (out / "README.md").read_text()
    assert "model-index" in card and "0.75" in card and "speech-continuation" in card
    assert (out / "model.safetensors").stat().st_size < 0.6 * (init / "model.safetensors").stat().st_size


def test_speech_text_lm_init_mix_export_eval(tiny_corpus_dir, tiny_corpus, tmp_path):
    """The family-2 recipe's commands on a tiny corpus: a WordPiece text LM's vocabulary extended,
    the units and the mixture written, an ablation mixture, the zoo folder, and asr/tts evaluation."""
    from transformers import LlamaConfig, LlamaForCausalLM

    assert main(["data", "text", "--data", str(tiny_corpus_dir), "--tokenizer", "wordpiece", "--vocab-size", "200",
                 "--out", str(tmp_path / "text")]) == 0  # fmt: skip
    tok = AutoTokenizer.from_pretrained(tmp_path / "text" / "tokenizer")
    assert tok.unk_token_id not in tok("zyxwv blorpish")["input_ids"]  # any word is spelled
    text_lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024))  # fmt: skip
    text_lm.save_pretrained(tmp_path / "text-lm")
    tok.save_pretrained(tmp_path / "text-lm")
    init = tmp_path / "init"
    code = main(["speech-text-lm", "init", "--unit-tokenizer", str(ZOO / "units-mfcc-256"), "--vocoder",
                 str(ZOO / "vocoder-mfcc-256"), "--text-lm", str(tmp_path / "text-lm"), "--data", str(tiny_corpus_dir),
                 "--views", "2", "--out", str(init)])  # fmt: skip
    assert code == 0
    mix = load_from_disk(str(init / "mixture"))
    n_train = len(tiny_corpus["train"])
    assert len(mix["train"]) == 2 * n_train and "interleaved" in set(mix["train"]["kind"])
    model = AutoModelForCausalLM.from_pretrained(init)
    proc = AutoProcessor.from_pretrained(init)
    assert model.config.vocab_size == len(proc.tokenizer) == len(tok) + 5 + 256
    assert torch.equal(model.get_input_embeddings().weight[: len(tok)], text_lm.get_input_embeddings().weight)
    assert (
        main(
            [
                "speech-text-lm",
                "mix",
                "--model",
                str(init),
                "--out",
                str(tmp_path / "noil"),
                "--interleaved",
                "0",
            ]
        )
        == 0
    )
    assert "interleaved" not in set(load_from_disk(str(tmp_path / "noil"))["train"]["kind"])

    zoo = tmp_path / "zoo"
    assert main(["speech-text-lm", "export", "--model", str(init), "--out", str(zoo)]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(zoo)
    assert loaded.lm.dtype == torch.float32 and (zoo / "tokenizer.json").exists()
    code = main(["eval", str(zoo), "--task", "asr,tts", "--data", str(tiny_corpus_dir), "--split", "test",
                 "--limit", "2", "--max-new-tokens", "8", "--out", str(tmp_path / "st.json")])  # fmt: skip
    assert code == 0
    results = json.loads((tmp_path / "st.json").read_text())
    assert results["tasks"]["asr"]["num_utterances"] == 2 and results["tasks"]["tts"]["topline_wer"] >= 0
    assert (tmp_path / "st.png").exists()
    assert main(["speech-text-lm", "export", "--model", str(init), "--out", str(zoo), "--card-only",
                 "--results-corpus", str(tmp_path / "st.json")]) == 0  # fmt: skip
    card = (zoo / "README.md").read_text()
    assert "ASR, greedy" in card and "model-index" in card


def test_encode_dataset_in_two_processes_gives_the_same_units(tiny_corpus):
    """`num_proc` workers get the tokenizer by pickle: an SSL encoder's weight-norm convolution must not stop that."""
    from hf_slm.models.speech_lm import SpeechLMForCausalLM

    backbone = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 2}  # fmt: skip
    model = SpeechLMForCausalLM.from_components(ZOO / "units-ctc-phones", text_config=backbone)
    clips = tiny_corpus["validation"].select(range(min(6, len(tiny_corpus["validation"]))))
    one = model.encode_dataset(clips)
    two = model.encode_dataset(clips.flatten_indices(), num_proc=2)
    assert one["units"] == two["units"] and one["durations"] == two["durations"] and len(one["units"][0]) > 5


def test_encode_dataset_is_cached_so_a_corpus_is_tokenised_once(tiny_corpus, tmp_path):
    """The units of a saved corpus are computed once: a second `encode_dataset` (another run) reads the
    datasets cache and never calls the tokenizer; another tokenizer (other weights) computes anew."""
    from datasets import load_from_disk

    from hf_slm.models.speech_lm import SpeechLMForCausalLM

    tiny_corpus["validation"].select(range(4)).save_to_disk(str(tmp_path / "clips"))
    backbone = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 2}  # fmt: skip

    def run(model):
        calls = []
        real = model.unit_tokenizer.encode
        model.unit_tokenizer.encode = lambda *a, **k: calls.append(1) or real(*a, **k)
        units = model.encode_dataset(
            load_from_disk(str(tmp_path / "clips"))
        )  # a fresh load, as a new run does
        return units["units"], len(calls)

    first, calls = run(SpeechLMForCausalLM.from_components(ZOO / "units-ctc-phones", text_config=backbone))
    assert calls > 0 and any(first)
    again, calls = run(SpeechLMForCausalLM.from_components(ZOO / "units-ctc-phones", text_config=backbone))
    assert calls == 0 and again == first  # read back from the cache
    other = SpeechLMForCausalLM.from_components(ZOO / "units-ctc-phones", text_config=backbone)
    with torch.no_grad():
        next(p for p in other.unit_tokenizer.parameters() if p.ndim == 2).mul_(-1)
    _, calls = run(other)
    assert calls > 0  # new tokenizer weights: a new fingerprint, so it is computed again
