"""The leaderboard: every LM of the real zoo on a tiny benchmark set, corpus and instruction set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hf_slm.evaluation.leaderboard import (
    FAMILIES,
    LEADERBOARD_TASKS,
    NOT_APPLICABLE,
    add_leaderboard_parser,
    build_leaderboard,
    find_zoo_models,
)
from hf_slm.evaluation.tasks import TaskError

ZOO = Path(__file__).resolve().parents[1] / "zoo"
LIMIT = 2
ACCURACIES = ("lexical", "syntactic", "storycloze", "instructions")
WERS = ("asr", "tts")

pytestmark = pytest.mark.skipif(
    not any(
        (d / "config.json").is_file()
        and json.loads((d / "config.json").read_text()).get("model_type") in FAMILIES
        for d in ZOO.glob("*")
    ),
    reason="the zoo holds no trained LM",
)


@pytest.fixture(scope="module")
def board(tmp_path_factory, tiny_corpus_dir, tiny_corpus):
    from hf_slm.data.benchmarks import BenchmarkConfig, build_benchmarks
    from hf_slm.data.instructions import build_instruction_dataset

    root = tmp_path_factory.mktemp("leaderboard")
    bench = root / "bench"
    config = BenchmarkConfig(
        seed=5, lexical_pairs=2, syntactic_pairs=2, storycloze_pairs=1, continuation_prompts=1
    )
    build_benchmarks(bench, config, num_workers=2, progress=False)
    instructions = root / "instructions"
    build_instruction_dataset(tiny_corpus, per_task=2, seed=0, splits=["test"], progress=False).save_to_disk(
        str(instructions)
    )
    out = root / "out"
    result = build_leaderboard(
        ZOO,
        corpus=tiny_corpus_dir,
        benchmarks=bench,
        out_dir=out,
        limit=LIMIT,
        instructions=instructions,
        max_new_tokens_speech=60,
        progress=False,
    )
    return result, out


def _row(result, family):
    return next(m for m in result["models"] if m["family"] == family)


@pytest.mark.slow
def test_every_lm_has_a_row_and_the_others_are_listed_apart(board):
    result, out = board
    lms, others = find_zoo_models(ZOO)
    assert [m["name"] for m in result["models"]] == [m["name"] for m in lms]
    assert {s["name"] for s in result["skipped"]} == {o["name"] for o in others}
    assert not {s["model_type"] for s in result["skipped"]} & set(FAMILIES)
    assert result["errors"] == []
    md = (out / "leaderboard.md").read_text()
    assert "| model | family | parameters |" in md
    for task, arrow in (("lexical acc.", "↑"), ("ASR WER", "↓"), ("TTS judge WER", "↓")):
        assert f"{task} {arrow}" in md
    for m in result["models"]:
        assert re.search(rf"^\| `{re.escape(m['name'])}` \| {m['family']}: ", md, flags=re.M)
        assert m["parameters"] > 0
    assert "not on the board" in md and "units-" in md


@pytest.mark.slow
def test_not_applicable_tasks_are_dashes(board):
    result, out = board
    md = (out / "leaderboard.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| model |"))
    labels = [c.strip() for c in header.strip("|").split("|")]
    assert len(labels) == 3 + len(LEADERBOARD_TASKS)
    col = {t: i for i, t in enumerate(LEADERBOARD_TASKS, start=3)}

    def cells(model):
        line = next(line for line in md if line.startswith(f"| `{model['name']}`"))
        return [c.strip() for c in line.strip("|").split("|")]

    if any(m["family"] == 1 for m in result["models"]):
        one = _row(result, 1)
        assert one["tasks"]["asr"] is None and one["tasks"]["tts"] is None
        assert cells(one)[col["asr"]] == cells(one)[col["tts"]] == NOT_APPLICABLE
        assert cells(one)[col["lexical"]] != NOT_APPLICABLE
    if any(m["family"] == 3 for m in result["models"]):
        three = _row(result, 3)
        for task in ("lexical", "syntactic", "storycloze", "tts"):
            assert three["tasks"][task] is None
            assert cells(three)[col[task]] == NOT_APPLICABLE
        assert cells(three)[col["asr"]] != NOT_APPLICABLE
        assert three["tasks"]["instructions"]["n"] > 0
    if any(m["family"] == 2 for m in result["models"]):
        two = _row(result, 2)
        assert all(two["tasks"][t] is not None for t in ("lexical", "asr", "tts"))
        assert two["tasks"]["instructions"] is None


@pytest.mark.slow
def test_numbers_are_in_range_and_counts_follow_the_limit(board):
    result, _ = board
    for m in result["models"]:
        for task, r in m["tasks"].items():
            if r is None:
                continue
            assert r["n"] > 0 and r["seconds"] >= 0
            if task in ACCURACIES:
                assert 0.0 <= r["value"] <= 1.0
            else:
                assert r["value"] >= 0.0
            if task in ("lexical", "syntactic", "storycloze"):
                assert r["n_ids"] <= LIMIT and 0 <= r["accuracy_mean"] <= 1
            if task in WERS:
                assert r["n"] == LIMIT
            if task == "tts":
                assert r["topline_wer"] >= 0


@pytest.mark.slow
def test_png_and_json_hold_the_settings(board):
    result, out = board
    assert (out / "leaderboard.png").stat().st_size > 5_000
    saved = json.loads((out / "leaderboard.json").read_text())
    assert saved == result
    s = saved["settings"]
    assert s["limit"] == dict.fromkeys(LEADERBOARD_TASKS, LIMIT)
    assert s["seed"] == 0 and s["decoding"] == "greedy" and s["split"] == "test"
    assert s["corpus"] and s["benchmarks"] and s["instructions"]
    assert s["data_configs"]["benchmarks"]["seed"] == 5
    assert [t["name"] for t in saved["tasks"]] == list(LEADERBOARD_TASKS)


def test_the_parser_and_bad_arguments(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_leaderboard_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "leaderboard",
            "--corpus",
            "c",
            "--benchmarks",
            "b",
            "--out",
            "o",
            "--limit",
            "7",
            "--tts-limit",
            "3",
        ]
    )
    assert (args.zoo, args.limit, args.tts_limit, args.instructions) == ("zoo", 7, 3, None)
    assert callable(args.func)
    with pytest.raises(TaskError, match="not a folder"):
        build_leaderboard(tmp_path / "nowhere", corpus=None, benchmarks=None, out_dir=tmp_path)
    (tmp_path / "zoo" / "units").mkdir(parents=True)
    (tmp_path / "zoo" / "units" / "config.json").write_text('{"model_type": "hf_slm_unit_tokenizer"}')
    with pytest.raises(TaskError, match="no language model"):
        build_leaderboard(tmp_path / "zoo", corpus=None, benchmarks=None, out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        build_leaderboard(ZOO, corpus=None, benchmarks=None, out_dir=tmp_path, limit={"speed": 3})
