"""Loading speech corpora, ours or a user's, into the same columns.

``load_corpus`` takes a corpus folder written by ``hf-slm data synth``, any ``save_to_disk``
folder, an audiofolder with ``metadata.csv`` (``file_name,text``), a JSONL manifest
(``audio_filepath,text`` per line, NeMo style), a `datasets` object, or a Hub dataset id, and
returns a `datasets.DatasetDict` whose audio column is called ``audio`` (an ``Audio`` feature
at the requested rate) and whose transcript column is called ``text``. Other columns are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CorpusError", "drop_unreadable_audio", "load_corpus"]

TEXT_COLUMN_CANDIDATES = ("text", "sentence", "transcription", "transcript", "normalized_text", "raw_text")
MANIFEST_AUDIO_KEYS = ("audio_filepath", "audio", "path", "file", "file_name")
MIN_CLIP_SECONDS = 0.1  # shorter clips hold no word, and are shorter than some encoders' first frame


class CorpusError(ValueError):
    """A corpus that cannot be read, with what to do about it."""


def load_corpus(
    source: Any,
    *,
    split: str | None = None,
    text_column: str | None = None,
    audio_column: str | None = None,
    sampling_rate: int = 16_000,
):
    """Load a speech corpus into a `datasets.DatasetDict` with ``audio`` and ``text`` columns.

    Args:
        source: a folder (``hf-slm data synth`` output, a ``save_to_disk`` folder, or an
            audiofolder with ``metadata.csv``), a ``.jsonl`` manifest, a `datasets`
            ``Dataset`` / ``DatasetDict``, or a Hub dataset id.
        split: return only this split, as a ``Dataset``.
        text_column / audio_column: the source's column names, when they are not found by name.
        sampling_rate: the rate the ``audio`` column decodes to.

    Example:
        >>> from hf_slm.data import load_corpus
        >>> corpus = load_corpus("my_recordings/")  # doctest: +SKIP  (a folder with metadata.csv)
        >>> corpus["train"][0]["text"]  # doctest: +SKIP
    """
    from datasets import Dataset, DatasetDict

    if isinstance(source, (Dataset, DatasetDict)):
        dsd = source if isinstance(source, DatasetDict) else DatasetDict({"train": source})
    elif isinstance(source, (str, os.PathLike)) and Path(source).exists():
        dsd = _load_path(Path(source))
    elif isinstance(source, str) and "/" in source and not source.startswith((".", "/")):
        dsd = _load_hub(source)
    else:
        raise CorpusError(
            f"cannot find a corpus at {str(source)!r}: no such file or folder. Pass a folder "
            "(hf-slm data synth output, save_to_disk, or audiofolder with metadata.csv), a .jsonl "
            "manifest, a datasets object, or a Hub dataset id such as 'org/name'."
        )
    dsd = DatasetDict(
        {name: _normalise(ds, name, text_column, audio_column, sampling_rate) for name, ds in dsd.items()}
    )
    if split is not None:
        if split not in dsd:
            raise CorpusError(f"the corpus has no split {split!r}; it has {sorted(dsd)}.")
        return dsd[split]
    return dsd


def _load_path(path: Path):
    from datasets import DatasetDict, load_dataset, load_from_disk

    if path.is_file():
        if path.suffix in (".jsonl", ".json"):
            return DatasetDict({"train": _load_manifest(path)})
        raise CorpusError(
            f"{path} is a {path.suffix or 'extensionless'} file; a manifest must be .jsonl (one JSON object per line)."
        )
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        loaded = load_from_disk(str(path))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    if any(path.rglob("metadata.csv")) or any(path.rglob("metadata.jsonl")):
        return load_dataset("audiofolder", data_dir=str(path))
    raise CorpusError(
        f"{path} is a folder but not a corpus: it has no dataset_dict.json (save_to_disk), no "
        "metadata.csv (audiofolder: columns file_name,text), and no metadata.jsonl. Add a "
        "metadata.csv that lists each audio file and its transcript."
    )


def _load_manifest(path: Path):
    from datasets import Dataset

    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise CorpusError(
                f"{path}:{n} is not valid JSON ({err.msg}); a manifest has one JSON object per line."
            ) from err
    if not rows:
        raise CorpusError(f"manifest {path} has no entries.")
    key = next((k for k in MANIFEST_AUDIO_KEYS if k in rows[0]), None)
    if key is None:
        raise CorpusError(
            f"manifest {path} has no audio path key; name it one of {MANIFEST_AUDIO_KEYS} (keys found: {sorted(rows[0])})."
        )
    missing = []
    for row in rows:
        p = Path(row[key])
        if not p.is_absolute():
            p = path.parent / p  # relative paths are relative to the manifest
        row[key] = str(p)
        if not p.exists():
            missing.append(str(p))
    if missing:
        raise CorpusError(
            f"manifest {path} lists {len(missing)} audio files that do not exist, e.g. {missing[:3]}. Fix the paths (relative paths are read from the manifest's folder)."
        )
    columns = {k: [r.get(k) for r in rows] for k in rows[0]}
    ds = Dataset.from_dict(columns)
    return ds.rename_column(key, "audio") if key != "audio" else ds


def _load_hub(repo_id: str):
    from datasets import load_dataset

    try:
        return load_dataset(repo_id)
    except Exception as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            " HF_HUB_OFFLINE=1 is set, so only datasets already in the local cache load." if offline else ""
        )
        raise CorpusError(f"could not load the Hub dataset {repo_id!r}: {err}.{hint}") from err


def _normalise(ds, name: str, text_column: str | None, audio_column: str | None, sampling_rate: int):
    from datasets import Audio

    audio_cols = [c for c, f in ds.features.items() if isinstance(f, Audio)]
    if audio_column is None:
        if "audio" in ds.column_names:
            audio_column = "audio"
        elif len(audio_cols) == 1:
            audio_column = audio_cols[0]
        else:
            raise CorpusError(
                f"split {name!r}: cannot tell which column holds the audio (Audio columns: {audio_cols}; "
                f"all columns: {ds.column_names}). Pass audio_column=..."
            )
    if audio_column not in ds.column_names:
        raise CorpusError(
            f"split {name!r} has no column {audio_column!r}; its columns are {ds.column_names}."
        )
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMN_CANDIDATES if c in ds.column_names), None)
        if text_column is None:
            raise CorpusError(
                f"split {name!r} has no transcript column (looked for {TEXT_COLUMN_CANDIDATES}; "
                f"columns: {ds.column_names}). Pass text_column=..."
            )
    if text_column not in ds.column_names:
        raise CorpusError(f"split {name!r} has no column {text_column!r}; its columns are {ds.column_names}.")
    if audio_column != "audio":
        ds = ds.rename_column(audio_column, "audio")
    if text_column != "text":
        if "text" in ds.column_names:
            ds = ds.remove_columns("text")
        ds = ds.rename_column(text_column, "text")
    feature = ds.features["audio"]
    if not isinstance(feature, Audio) or feature.sampling_rate != sampling_rate:
        ds = ds.cast_column("audio", Audio(sampling_rate=sampling_rate))
    return ds


def _check_audio(
    batch: dict[str, list], feature: Any, max_seconds: float | None, min_seconds: float
) -> dict[str, list]:
    from hf_slm.audio import load_audio

    errors = []
    for audio in batch["audio"]:
        try:
            # decoded as training will decode it: through the dataset's own Audio feature (torchcodec),
            # which reads some damaged files differently from other decoders
            value = feature.decode_example(audio) if feature is not None else audio
            wave = load_audio(value, max_seconds=max_seconds)
            if len(wave) < min_seconds * 16_000:
                raise ValueError(f"the clip lasts {len(wave) / 16_000:.3f} s, less than {min_seconds} s")
            errors.append("")
        except Exception as err:  # any decoder failure means the row cannot be used
            errors.append(f"{type(err).__name__}: {err}".strip()[:300] or type(err).__name__)
    return {"_audio_error": errors}


def drop_unreadable_audio(
    dataset,
    *,
    num_proc: int | None = None,
    max_seconds: float | None = None,
    min_seconds: float = MIN_CLIP_SECONDS,
    split: str = "train",
) -> tuple[Any, list[dict[str, Any]]]:
    """Decode every clip of ``dataset`` once and drop the rows whose audio cannot be read.

    A user's corpus may hold a truncated file, a file that is not audio, an empty or unreadable one:
    rather than failing mid-training (or at the end of a long tokenisation), those rows are dropped
    here and reported, and every other row is kept as it was.

    Args:
        dataset (`datasets.Dataset`): a split with an ``audio`` column (as `load_corpus` gives it).
        num_proc (`int`, *optional*): processes for `datasets.map`.
        max_seconds (`float`, *optional*): also drop clips longer than this.
        min_seconds (`float`, defaults to 0.1): also drop clips shorter than this.
        split (`str`): the split's name, for the report.

    Returns:
        `(dataset, skipped)`: the readable rows (the ``audio`` column decodes as before), and one
        ``{"split", "index", "path", "error"}`` per dropped row, in order.
    """
    from datasets import Audio

    feature = dataset.features["audio"]
    raw = dataset.cast_column("audio", Audio(decode=False)) if isinstance(feature, Audio) else dataset
    checked = raw.map(
        _check_audio,
        batched=True,
        batch_size=32,
        num_proc=num_proc,
        fn_kwargs={
            "feature": feature if isinstance(feature, Audio) else None,
            "max_seconds": max_seconds,
            "min_seconds": min_seconds,
        },
        desc=f"checking the audio of {split}",
    )
    errors = checked["_audio_error"]
    bad = [i for i, e in enumerate(errors) if e]
    skipped = []
    for i in bad:
        value = raw[i]["audio"]
        path = value.get("path") if isinstance(value, dict) else (value if isinstance(value, str) else None)
        skipped.append({"split": split, "index": i, "path": path, "error": errors[i]})
    if bad:
        keep = sorted(set(range(len(dataset))) - set(bad))
        dataset = dataset.select(keep)
    return dataset, skipped
