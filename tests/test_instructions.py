"""Instruction data of the speech-aware text LM (audio rows and text-only rows), its chat tokens in
the WordPiece tokenizer, the two data commands, and instruction scoring."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
from datasets import DatasetDict, load_from_disk
from transformers import AutoTokenizer

from hf_slm.cli import main
from hf_slm.data.instructions import (
    ACCENT_ANSWERS,
    ACCENT_GROUPS,
    CHAT_SPECIAL_TOKENS,
    NONSPEECH_KINDS,
    QA_QUESTIONS,
    RATE_THRESHOLDS,
    TASKS,
    TEMPLATES,
    build_instruction_dataset,
    format_chat,
    held_out_templates,
    instruction_texts,
    nonspeech_clip,
    rate_label,
)
from hf_slm.data.text_corpus import SPECIAL_TOKENS, build_subword_tokenizer
from hf_slm.evaluation.instructions import normalize_answer, plot_instruction_results, score_instructions

PER_TASK = 8
META = ["id", "source_id", "task", "subtask", "instruction", "response", "held_out_phrasing", "voice", "text", "duration"]  # fmt: skip
CHAT = re.compile(r"^<\|user\|> (.+)<\|end\|><\|assistant\|> (.+)<\|end\|>$")


@pytest.fixture(scope="module")
def instructions(tiny_corpus):
    return build_instruction_dataset(tiny_corpus, per_task=PER_TASK, seed=0, progress=False)


def _meta(ds) -> dict[str, list]:
    return ds.select_columns(META)[:]


def _corpus_rows(tiny_corpus, split) -> dict[str, dict]:
    ds = tiny_corpus[split]
    return {r["id"]: r for r in ds.select_columns([c for c in ds.column_names if c != "audio"])}


# --- answers and formats -------------------------------------------------------------------------
def test_rate_labels_accent_groups_and_chat_format():
    low, high = RATE_THRESHOLDS
    assert [rate_label(s) for s in (0.8, low - 1e-6, low, 1.0, high, high + 1e-6, 1.14)] == [
        "slow", "slow", "normal", "normal", "normal", "fast", "fast"
    ]  # fmt: skip
    assert ACCENT_GROUPS["us"] == ACCENT_GROUPS["new-york"] == "american"
    assert {ACCENT_GROUPS[a] for a in ("southern-british", "received-pronunciation", "lancastrian", "west-midlands")} == {"english"}  # fmt: skip
    assert (ACCENT_GROUPS["scottish"], ACCENT_GROUPS["caribbean"]) == ("scottish", "caribbean")
    assert set(ACCENT_GROUPS.values()) == set(ACCENT_ANSWERS)
    with pytest.raises(ValueError, match=r"unknown accent 'welsh'.*caribbean.*west-midlands"):
        ACCENT_GROUPS["welsh"]
    assert format_chat("Transcribe the audio.", "the dog runs") == (
        "<|user|> Transcribe the audio.<|end|><|assistant|> the dog runs<|end|>"
    )
    assert format_chat("Transcribe the audio.", None) == "<|user|> Transcribe the audio.<|end|><|assistant|>"
    held = held_out_templates()
    assert set(held) == (set(TASKS) - {"qa"}) | set(QA_QUESTIONS)
    assert all(held[k] == TEMPLATES[k][-1] and len(TEMPLATES[k]) >= 3 for k in held)


@pytest.mark.parametrize("kind", NONSPEECH_KINDS)
def test_nonspeech_clips_have_their_length_and_level(kind):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        seconds = float(rng.uniform(0.5, 5.0))
        wave = nonspeech_clip(kind, seconds, rng)
        assert wave.dtype == np.float32 and wave.shape == (round(seconds * 16_000),)
        assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
        rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
        if kind == "silence":
            assert 0.5e-4 < rms < 2e-4
            continue
        assert 0.003 * 0.95 < rms < 0.1 * 1.05
        spectrum = np.abs(np.fft.rfft(wave)) ** 2
        freqs = np.fft.rfftfreq(len(wave), 1 / 16_000)
        speech_band = spectrum[(freqs > 300) & (freqs < 3400)].sum() / spectrum.sum()
        if kind == "hum":
            assert min(abs(freqs[spectrum.argmax()] - f) for f in (50, 60)) < 2  # the mains fundamental
            assert speech_band < 0.01
        elif kind == "brown":
            assert speech_band < 0.01  # nearly all its energy is below 300 Hz
        else:
            assert 0.35 < speech_band < 0.43  # flat: the band's share of the spectrum (3.1 of 8 kHz)
    rng = np.random.default_rng(0)
    assert np.array_equal(
        nonspeech_clip(kind, 1.0, np.random.default_rng(5)),
        nonspeech_clip(kind, 1.0, np.random.default_rng(5)),
    )
    with pytest.raises(ValueError, match="unknown non-speech kind"):
        nonspeech_clip("music", 1.0, rng)


# --- the audio instruction dataset ---------------------------------------------------------------
def test_columns_ids_and_audio(instructions, tiny_corpus):
    assert set(instructions) == set(tiny_corpus)
    all_ids = []
    for ds in instructions.values():
        assert ds.column_names == ["id", "source_id", "audio", "task", "subtask", "instruction", "response",
                                   "held_out_phrasing", "voice", "text", "duration"]  # fmt: skip
        assert ds.features["audio"].sampling_rate == 16_000
        all_ids += ds["id"]
    assert len(all_ids) == len(set(all_ids))
    # a corpus row's audio is the corpus's clip; a non-speech clip decodes at its length
    ds, meta = instructions["test"], _meta(instructions["test"])
    corpus_index = {i: k for k, i in enumerate(tiny_corpus["test"]["id"])}
    speech = meta["source_id"].index(next(s for s in meta["source_id"] if s in corpus_index))
    clip = next(i for i, s in enumerate(meta["source_id"]) if s.startswith("nonspeech-"))
    for row in (speech, clip):
        samples = ds[row]["audio"].get_all_samples()
        assert samples.sample_rate == 16_000
        assert samples.data.shape[-1] == round(meta["duration"][row] * 16_000)
    original = tiny_corpus["test"][corpus_index[meta["source_id"][speech]]]["audio"].get_all_samples()
    assert np.array_equal(ds[speech]["audio"].get_all_samples().data.numpy(), original.data.numpy())


def test_every_answer_is_right(instructions, tiny_corpus):
    for split, ds in instructions.items():
        corpus = _corpus_rows(tiny_corpus, split)
        split_words = {w for r in corpus.values() for w in r["text"].split()}
        meta = _meta(ds)
        for k in range(len(ds)):
            row = {c: meta[c][k] for c in META}
            task, response = row["task"], row["response"]
            if row["source_id"].startswith("nonspeech-"):
                assert (task, response, row["voice"], row["text"]) == ("speech_presence", "no", "", "")
                assert row["instruction"] in TEMPLATES["speech_presence"]
                assert 0.5 <= row["duration"] <= 5.0
                continue
            src = corpus[row["source_id"]]
            words = src["text"].split()
            assert (row["voice"], row["text"], row["duration"]) == (
                src["voice"],
                src["text"],
                pytest.approx(src["duration"]),
            )
            expected = {
                "transcribe": src["text"],
                "sex": src["speaker_sex"],
                "accent": ACCENT_GROUPS[src["accent"]],
                "rate": rate_label(src["speed"]),
                "count": str(len(words)),
                "speech_presence": "yes",
            }
            if task == "qa":
                sub = row["subtask"]
                if sub == "word_presence":
                    word = re.search(r'"(.+)"', row["instruction"]).group(1)
                    assert word in split_words
                    assert response == ("yes" if word in words else "no")
                else:
                    assert response == (words[-1] if sub == "last_word" else words[0])
                phrasings = [t.split('"')[0] for t in TEMPLATES[sub]]
                assert any(row["instruction"].startswith(p) for p in phrasings)
            else:
                assert row["subtask"] == task and response == expected[task]
                assert row["instruction"] in TEMPLATES[task]


def test_held_out_phrasings_only_in_evaluation_splits(instructions):
    held = held_out_templates()

    def is_held_out(row_subtask: str, instruction: str) -> bool:
        return instruction.split('"')[0] == held[row_subtask].split('"')[0]

    for split, ds in instructions.items():
        meta = _meta(ds)
        flags = [is_held_out(s, i) for s, i in zip(meta["subtask"], meta["instruction"])]
        assert flags == meta["held_out_phrasing"]
        if split == "train":
            assert not any(flags)
        else:  # half the rows of each task, so scores on seen and new phrasings can be compared
            per_task = Counter(t for t, f in zip(meta["task"], flags) if f)
            assert all(per_task[t] == PER_TASK // 2 for t in TASKS), per_task


def test_evaluation_splits_have_per_task_rows(instructions):
    for split in ("validation", "test"):
        meta = _meta(instructions[split])
        assert Counter(meta["task"]) == {t: PER_TASK for t in TASKS}
        presence = Counter(r for t, r in zip(meta["task"], meta["response"]) if t == "speech_presence")
        assert presence == {"yes": PER_TASK // 2, "no": PER_TASK // 2}
        assert Counter(s for s, t in zip(meta["subtask"], meta["task"]) if t == "qa").keys() == set(
            QA_QUESTIONS
        )


def test_train_task_balance(instructions, tiny_corpus):
    meta = _meta(instructions["train"])
    n_utt = len(tiny_corpus["train"])
    counts = Counter(meta["task"])
    n_no = sum(s.startswith("nonspeech-") for s in meta["source_id"])
    assert len(meta["task"]) == 2 * n_utt + n_no
    assert n_no == round(0.08 * 2 * n_utt / 0.92)
    assert counts["speech_presence"] == 2 * n_no  # as many "yes" rows as "no" rows
    others = [counts[t] for t in TASKS if t not in ("transcribe", "speech_presence")]
    assert max(others) - min(others) <= 1
    assert abs(counts["transcribe"] - 2 * np.mean(others)) <= 2
    # each utterance gives two rows with different tasks
    per_utt = Counter(
        (s, t) for s, t in zip(meta["source_id"], meta["task"]) if not s.startswith("nonspeech-")
    )
    assert max(per_utt.values()) == 1 and len({s for s, _ in per_utt}) == n_utt
    kinds = Counter(s.rsplit("-", 1)[1] for s in meta["source_id"] if s.startswith("nonspeech-"))
    assert set(kinds) <= set(NONSPEECH_KINDS) and max(kinds.values()) - min(kinds.values()) <= 1


def test_same_seed_same_rows(instructions, tiny_corpus):
    again = build_instruction_dataset(tiny_corpus, per_task=PER_TASK, seed=0, progress=False)
    other = build_instruction_dataset(
        tiny_corpus, per_task=PER_TASK, seed=1, progress=False, splits=["train"]
    )
    assert list(other) == ["train"]
    for split in instructions:
        a, b = instructions[split], again[split]
        assert _meta(a) == _meta(b)
        assert a.data.column("audio").to_pylist() == b.data.column("audio").to_pylist()
    assert _meta(other["train"])["instruction"] != _meta(instructions["train"])["instruction"]


def test_bad_settings_raise(tiny_corpus):
    with pytest.raises(ValueError, match="nonspeech_fraction"):
        build_instruction_dataset(tiny_corpus, nonspeech_fraction=1.0)
    with pytest.raises(ValueError, match="no split 'dev'"):
        build_instruction_dataset(tiny_corpus, splits=["dev"])
    test = tiny_corpus["test"].remove_columns("accent")
    welsh = test.add_column("accent", ["welsh"] * len(test))
    with pytest.raises(ValueError, match="unknown accent 'welsh'"):
        build_instruction_dataset(DatasetDict({"test": welsh}), per_task=20, progress=False)


# --- text-only instructions and the tokenizer ----------------------------------------------------
def test_instruction_texts(tiny_corpus):
    split = tiny_corpus["train"]
    texts = instruction_texts(split, n=140)
    assert len(texts) == 140 and texts == instruction_texts(split, n=140)
    assert texts != instruction_texts(split, n=140, seed=1)
    assert len(instruction_texts(split)) == len(split)
    sentences = set(split["text"])
    answers = []
    for text in texts:
        user, answer = CHAT.match(text).groups()
        answers.append(answer)
        quoted = re.findall(r'"([^"]+)"', user)
        if user.startswith("How many words are in"):
            assert quoted[0] in sentences and answer == str(len(quoted[0].split()))
        elif user.startswith("What is the last word of"):
            assert answer == quoted[0].split()[-1]
        elif user.startswith("What is the first word of"):
            assert answer == quoted[0].split()[0]
        elif user.startswith("Did the sentence"):
            assert answer == ("yes" if quoted[1] in quoted[0].split() else "no")
        elif user.startswith("Transcribe this: "):
            assert user.removeprefix("Transcribe this: ") == answer and answer in sentences
        elif user.startswith("What number comes after"):
            assert int(answer) == int(user.split()[-1].rstrip("?")) + 1
        elif user.startswith("Which of these words"):
            assert answer in quoted
    needed = {
        "male",
        "female",
        *ACCENT_ANSWERS,
        "slow",
        "normal",
        "fast",
        "yes",
        "no",
        *map(str, range(1, 21)),
    }
    assert needed <= set(answers)


def test_wordpiece_keeps_chat_tokens_whole(tiny_corpus):
    texts = list(tiny_corpus["train"]["text"]) + instruction_texts(tiny_corpus["train"], n=200)
    tok = build_subword_tokenizer(texts, vocab_size=200, special_tokens=CHAT_SPECIAL_TOKENS)
    assert tok.convert_ids_to_tokens(list(range(9))) == [*SPECIAL_TOKENS, *CHAT_SPECIAL_TOKENS]
    assert set(CHAT_SPECIAL_TOKENS) <= set(tok.all_special_tokens)
    text = format_chat("<|audio|>How many words did the speaker say?", "12")
    pieces = tok.convert_ids_to_tokens(tok(text).input_ids)
    assert [p for p in pieces if p.startswith("<")] == ["<s>", "<|user|>", "<|audio|>", "<|end|>", "<|assistant|>", "<|end|>"]  # fmt: skip
    assert tok.unk_token_id not in tok("0 1 2 3 4 5 6 7 8 9 10 20").input_ids
    assert "user" not in tok.get_vocab() and "|" not in tok.get_vocab()  # trained without the chat tokens
    plain = build_subword_tokenizer(tiny_corpus["train"]["text"], vocab_size=200)
    assert plain.convert_ids_to_tokens(list(range(4))) == list(SPECIAL_TOKENS)
    assert not set(CHAT_SPECIAL_TOKENS) & set(plain.get_vocab()) and "7" not in plain.get_vocab()


# --- the commands --------------------------------------------------------------------------------
def test_data_instructions_command(tiny_corpus_dir, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "instructions"
    code = main(["data", "instructions", "--data", str(tiny_corpus_dir), "--out", str(out), "--eval-per-task", "4",
                 "--nonspeech-fraction", "0.1"])  # fmt: skip
    assert code == 0
    assert "train:" in capsys.readouterr().out
    dsd = load_from_disk(str(out))
    assert Counter(dsd["test"]["task"]) == {t: 4 for t in TASKS}
    n_no = sum(s.startswith("nonspeech-") for s in dsd["train"]["source_id"])
    assert n_no == round(0.1 * 2 * len(tiny_corpus["train"]) / 0.9)
    assert dsd["train"][0]["audio"].get_all_samples().sample_rate == 16_000


def test_data_text_with_instructions_command(tiny_corpus_dir, tiny_corpus, tmp_path):
    out = tmp_path / "text"
    code = main(["data", "text", "--data", str(tiny_corpus_dir), "--tokenizer", "wordpiece", "--vocab-size", "200",
                 "--instructions", "50", "--out", str(out)])  # fmt: skip
    assert code == 0
    dsd = load_from_disk(str(out))
    assert len(dsd["train"]) == len(tiny_corpus["train"]) + 50
    assert len(dsd["validation"]) == len(tiny_corpus["validation"]) + 5
    assert len(dsd["test"]) == len(tiny_corpus["test"])
    added = dsd["train"].select(range(len(tiny_corpus["train"]), len(dsd["train"])))
    assert all(CHAT.match(t) for t in added["text"]) and set(added["voice"]) == {""}
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    ids = tok(added[0]["text"]).input_ids
    chat_ids = tok.convert_tokens_to_ids(list(CHAT_SPECIAL_TOKENS))
    assert chat_ids == [4, 5, 6, 7, 8] and sum(i in chat_ids for i in ids) == 4
    assert main(["data", "text", "--data", str(tiny_corpus_dir), "--instructions", "5", "--out", str(tmp_path / "w")]) == 2  # fmt: skip


# --- scoring -------------------------------------------------------------------------------------
def _scored_rows():
    rows = [  # task, subtask, response, voice, held-out phrasing, prediction
        ("transcribe", "transcribe", "the dog runs", "a", False, "The dog run"),
        ("transcribe", "transcribe", "five cats sleep", "b", True, "5 cats sleep."),
        ("count", "count", "7", "a", False, "Seven."),
        ("count", "count", "12", "b", True, "eleven"),
        ("qa", "last_word", "market", "a", False, "Market"),
        ("qa", "word_presence", "no", "a", True, "Yes"),
        ("qa", "first_word", "the", "b", False, "the."),
        ("sex", "sex", "male", "a", False, "male"),
        ("sex", "sex", "female", "b", True, "male<|end|>"),
        ("speech_presence", "speech_presence", "yes", "a", False, "yes"),
        ("speech_presence", "speech_presence", "no", "", True, "Yes."),
        ("speech_presence", "speech_presence", "no", "", False, "no"),
    ]
    columns = {
        k: [r[i] for r in rows]
        for i, k in enumerate(["task", "subtask", "response", "voice", "held_out_phrasing"])
    }
    columns["instruction"] = [f"question {i}" for i in range(len(rows))]
    return columns, [r[-1] for r in rows]


def test_normalize_answer():
    assert normalize_answer("  Seven, Words!  ") == "7 words"
    assert normalize_answer("Twenty one") == "20 1" and normalize_answer("nineteen") == "19"
    assert normalize_answer("'Don't' stop.<|end|>") == "don't stop"
    assert normalize_answer("yes") == normalize_answer("Yes.") == "yes"


def test_score_instructions_gives_exact_numbers(tmp_path):
    columns, predictions = _scored_rows()
    results = score_instructions(columns, predictions)
    json.dumps(results)
    tasks = results["tasks"]
    assert results["num_rows"] == 12 and list(tasks) == [
        "transcribe",
        "qa",
        "sex",
        "count",
        "speech_presence",
    ]
    assert tasks["transcribe"]["n"] == 2
    assert tasks["transcribe"]["wer"] == pytest.approx(1 / 6) and tasks["transcribe"]["exact_match"] == 0.5
    assert tasks["count"] == {"n": 2, "accuracy": 0.5, "held_out_phrasing": {"n": 1, "accuracy": 0.0},
                              "seen_phrasing": {"n": 1, "accuracy": 1.0}}  # fmt: skip
    assert tasks["qa"]["accuracy"] == pytest.approx(2 / 3)
    assert tasks["qa"]["by_question"] == {"first_word": {"n": 1, "accuracy": 1.0}, "last_word": {"n": 1, "accuracy": 1.0},
                                          "word_presence": {"n": 1, "accuracy": 0.0}}  # fmt: skip
    assert tasks["sex"]["accuracy"] == 0.5
    sp = tasks["speech_presence"]
    assert sp["accuracy"] == pytest.approx(2 / 3)
    assert sp["speech"] == {"n": 1, "accuracy": 1.0} and sp["nonspeech"] == {"n": 2, "accuracy": 0.5}
    assert results["macro_accuracy"] == pytest.approx((0.5 + 2 / 3 + 0.5 + 2 / 3) / 4)
    assert results["per_voice"]["sex"] == {"a": {"n": 1, "accuracy": 1.0}, "b": {"n": 1, "accuracy": 0.0}}
    assert results["per_voice"]["speech_presence"]["nonspeech"] == {"n": 2, "accuracy": 0.5}
    assert results["per_voice"]["transcribe"]["a"]["wer"] == pytest.approx(1 / 3)
    assert results["per_voice"]["transcribe"]["b"]["wer"] == 0.0
    assert results["examples"]["count"] == [
        {"instruction": "question 2", "response": "7", "prediction": "Seven."},
        {"instruction": "question 3", "response": "12", "prediction": "eleven"},
    ]
    png = plot_instruction_results(results, tmp_path / "instructions.png")
    assert png.exists() and png.stat().st_size > 5_000


def test_score_instructions_on_a_built_split(instructions):
    ds = instructions["test"]
    results = score_instructions(ds, ds["response"])  # a perfect model
    assert all(r.get("accuracy", 1.0) == 1.0 and r.get("wer", 0.0) == 0.0 for r in results["tasks"].values())
    assert results["tasks"]["speech_presence"]["nonspeech"]["n"] == PER_TASK // 2
    assert set(results["per_voice"]["sex"]) == set(ds["voice"]) - {""}
    assert results["tasks"]["transcribe"]["held_out_phrasing"]["n"] == PER_TASK // 2


def test_score_instructions_rejects_bad_input():
    columns, predictions = _scored_rows()
    with pytest.raises(ValueError, match="11 predictions for 12 rows"):
        score_instructions(columns, predictions[:-1])
    with pytest.raises(ValueError, match="prediction 3 is a NoneType"):
        score_instructions(columns, [*predictions[:3], None, *predictions[4:]])
    with pytest.raises(ValueError, match="no \\['response'\\] column"):
        score_instructions({k: v for k, v in columns.items() if k != "response"}, predictions)
