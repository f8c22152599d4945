"""The resynthesis check end to end, on the tiny corpus: encode -> decode -> judge, JSON and PNG."""

from __future__ import annotations

import json

import pytest

from hf_slm.cli import main
from hf_slm.evaluation.judge import AsrJudge
from hf_slm.evaluation.resynthesis import evaluate_resynthesis
from hf_slm.units import SpeechUnitTokenizer, SpeechUnitTokenizerConfig
from hf_slm.vocoders import UnitVocoder, UnitVocoderConfig
from hf_slm.vocoders.griffin_lim import GriffinLimVocoder


@pytest.fixture(scope="module")
def logmel_tokenizer(tiny_corpus):
    tok = SpeechUnitTokenizer(SpeechUnitTokenizerConfig(frontend="log_mel", n_units=32, normalize=False))
    tok.fit(tiny_corpus["train"], epochs=1, progress=False)
    return tok


def test_resynthesis_report(tiny_corpus, logmel_tokenizer, tmp_path):
    judge = AsrJudge.from_texts(tiny_corpus["train"]["text"], cache_dir=tmp_path / "lm")
    untrained = UnitVocoder(
        UnitVocoderConfig(
            n_units=32, hidden_size=32, intermediate_size=64, num_unit_layers=1, num_frame_layers=1
        )
    )
    systems = {
        "gl": (logmel_tokenizer, GriffinLimVocoder(logmel_tokenizer, n_iter=8)),
        "untrained": (logmel_tokenizer, untrained),
    }
    res = evaluate_resynthesis(systems, tiny_corpus["test"], judge, limit=3, progress=False, out_dir=tmp_path)
    assert res["num_utterances"] == 3
    # a fresh judge: pocketsphinx carries state from one utterance to the next (the same clip decoded
    # after the systems' audio can come out otherwise), so the topline is compared with first decodes
    fresh = AsrJudge.from_texts(tiny_corpus["train"]["text"], cache_dir=tmp_path / "lm")
    top = fresh.evaluate(
        tiny_corpus["test"].select(range(3))["audio"],
        tiny_corpus["test"].select(range(3))["text"],
        progress=False,
    )
    assert res["topline"]["wer"] == pytest.approx(top["wer"])
    for name in systems:
        r = res["systems"][name]
        assert r["wer_ratio"] == pytest.approx(r["wer"] / max(res["topline"]["wer"], 1e-9))
        assert r["mcd_db"] > 0 and r["units_per_second"] > 0
    # an untrained vocoder's noise is further from the original than Griffin-Lim's centroids
    assert res["systems"]["untrained"]["mcd_db"] > res["systems"]["gl"]["mcd_db"]
    assert res["systems"]["untrained"]["wer"] >= res["topline"]["wer"]
    saved = json.loads((tmp_path / "resynthesis.json").read_text())
    assert saved["systems"].keys() == systems.keys()
    assert (tmp_path / "resynthesis.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_cli_rejects_unknown_tasks_and_mismatched_pairs(capsys, tiny_corpus_dir):
    assert (
        main(
            [
                "eval",
                "--task",
                "telepathy",
                "--tokenizer",
                "t",
                "--vocoder",
                "v",
                "--data",
                str(tiny_corpus_dir),
            ]
        )
        == 2
    )
    assert "unknown task 'telepathy'" in capsys.readouterr().err
    args = [
        "eval",
        "--task",
        "resynthesis",
        "--tokenizer",
        "a",
        "--tokenizer",
        "b",
        "--vocoder",
        "v",
        "--data",
        "d",
    ]
    assert main(args) == 2
    assert "one --vocoder per --tokenizer" in capsys.readouterr().err


def test_update_cards_records_the_measurement_in_every_folder_it_measures(tmp_path, tiny_corpus_dir):
    """`--update-cards` writes the resynthesis into the model-index of the vocoder, of the unit tokenizer
    and, for k-means units of an SSL encoder's layer, of that encoder; each folder keeps resynthesis.json."""
    import hashlib
    import shutil
    from pathlib import Path

    from huggingface_hub import ModelCard

    zoo = Path(__file__).resolve().parents[1] / "zoo"
    names = ["hubert-tiny-it1", "units-hubert-256", "vocoder-hubert-256"]
    real = {n: hashlib.sha256((zoo / n / "README.md").read_bytes()).hexdigest() for n in names}
    for name in names:
        shutil.copytree(zoo / name, tmp_path / name, ignore=shutil.ignore_patterns("resynthesis.json"))
    args = ["eval", "--task", "resynthesis", "--data", str(tiny_corpus_dir), "--split", "test", "--limit", "2",
            "--tokenizer", str(tmp_path / "units-hubert-256"), "--vocoder", str(tmp_path / "vocoder-hubert-256"),
            "--update-cards"]  # fmt: skip
    assert main(args) == 0
    for name in names:
        measured = json.loads((tmp_path / name / "resynthesis.json").read_text())
        system = measured["units-hubert-256 + vocoder-hubert-256"]
        card = ModelCard.load(tmp_path / name / "README.md")
        values = {r.metric_type: r.metric_value for r in card.data.eval_results}
        assert values == {
            k: round(system[m], 4) for k, m in (("wer", "wer"), ("wer_ratio", "wer_ratio"), ("mcd", "mcd_db"))
        }
        assert "Resynthesis of 2 clips" in card.text
    assert (
        "layer-3 features as 256 k-means units"
        in ModelCard.load(tmp_path / "hubert-tiny-it1" / "README.md").text
    )
    # the zoo's own cards were not touched
    assert real == {n: hashlib.sha256((zoo / n / "README.md").read_bytes()).hexdigest() for n in names}
