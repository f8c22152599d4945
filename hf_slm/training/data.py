"""Data for the training loop: token sequences from a dataset split, packing, length-grouped batches, padding.

Every split ends up as a `datasets.Dataset` with an ``input_ids`` column (and optionally ``labels``
of the same length, ``-100`` where no loss is wanted) and a ``length`` column. Where the ids come
from, in order:

1. the dataset already has ``input_ids``;
2. the dataset has the recipe's text column and the recipe names a tokenizer: rows are tokenised
   through `datasets.map`, each followed by the EOS token;
3. the model has a ``prepare_training_dataset(dataset, num_proc=...)`` method that returns such a
   dataset (the speech models tokenise audio to units this way; this module knows nothing of audio).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hf_slm.recipes import RecipeError

__all__ = ["LengthGroupedBatchSampler", "PadCollator", "pack_sequences", "prepare_split"]


def _with_eos(ids: list[int], eos: int | None) -> list[int]:
    if eos is None or (ids and ids[-1] == eos):
        return list(ids)
    return [*ids, eos]


def pack_sequences(batch: dict[str, list], max_length: int, eos_token_id: int | None) -> dict[str, list]:
    """Concatenate rows (each followed by EOS unless it already ends with it) and cut the stream into
    blocks of ``max_length`` tokens; the last block may be shorter. A `datasets.map(batched=True)` function.

    Args:
        batch (`dict[str, list]`):
            A batch of rows with ``input_ids`` and optionally ``labels``.
        max_length (`int`):
            Block length in tokens.
        eos_token_id (`int`, *optional*):
            The separator appended to each row (its label is the EOS id too).
    """
    stream: list[int] = []
    label_stream: list[int] | None = [] if "labels" in batch else None
    for i, ids in enumerate(batch["input_ids"]):
        packed = _with_eos(ids, eos_token_id)
        stream += packed
        if label_stream is not None:
            label_stream += list(batch["labels"][i]) + packed[len(ids) :]
    out = {"input_ids": [stream[i : i + max_length] for i in range(0, len(stream), max_length)]}
    if label_stream is not None:
        out["labels"] = [label_stream[i : i + max_length] for i in range(0, len(label_stream), max_length)]
    return out


def _truncate(batch: dict[str, list], max_length: int) -> dict[str, list]:
    out = {"input_ids": [list(ids[:max_length]) for ids in batch["input_ids"]]}
    out["length"] = [len(ids) for ids in out["input_ids"]]
    if "labels" in batch:
        out["labels"] = [list(lab[:max_length]) for lab in batch["labels"]]
    return out


def _lengths(batch: dict[str, list]) -> dict[str, list]:
    return {"length": [len(ids) for ids in batch["input_ids"]]}


def prepare_split(
    dataset,
    data_args,
    *,
    tokenizer=None,
    model=None,
    eos_token_id: int | None = None,
    split: str = "train",
    log=print,
):
    """Turn one dataset split into rows of token ids ready for batching.

    Args:
        dataset (`datasets.Dataset`):
            The split as loaded from disk.
        data_args ([`~hf_slm.training.DataArguments`]):
            Text column, ``max_length``, ``packing``, ``num_proc``.
        tokenizer (*optional*):
            Tokenises the text column when there is no ``input_ids`` column.
        model (*optional*):
            Asked for ``prepare_training_dataset(dataset, num_proc=...)`` when neither of the above applies.
        eos_token_id (`int`, *optional*):
            Appended to each text row and used as the separator when packing.
        split (`str`):
            Name of the split, for messages.
        log (`Callable`):
            Where to report truncated and dropped rows.

    Returns:
        `datasets.Dataset`: columns ``input_ids``, ``length`` and, if the source had them, ``labels``.
    """
    num_proc = data_args.num_proc
    columns = dataset.column_names
    if getattr(model, "trains_on_rows", False):  # batches are built from the raw rows by the processor
        if data_args.packing:
            raise RecipeError(
                f"{type(model).__name__} trains on whole rows (audio + text): set data.packing: false"
            )
        return model.prepare_training_dataset(dataset, num_proc=num_proc)
    if "input_ids" not in columns:
        if data_args.text_column in columns and tokenizer is not None:
            if eos_token_id is None:
                raise RecipeError(
                    "the tokenizer has no eos_token: give it one (or a model config with eos_token_id) so that "
                    "rows of text can be told apart"
                )
            text_column = data_args.text_column

            def tokenize(batch):
                ids = tokenizer(batch[text_column], add_special_tokens=True)["input_ids"]
                return {"input_ids": [_with_eos(x, eos_token_id) for x in ids]}

            dataset = dataset.map(
                tokenize, batched=True, num_proc=num_proc, remove_columns=columns, desc=f"tokenising {split}"
            )
        elif model is not None and hasattr(model, "prepare_training_dataset"):
            dataset = model.prepare_training_dataset(dataset, num_proc=num_proc)
            if "input_ids" not in dataset.column_names:
                raise RecipeError(
                    f"{type(model).__name__}.prepare_training_dataset returned no `input_ids` column "
                    f"(columns: {dataset.column_names})"
                )
        elif data_args.text_column in columns:
            raise RecipeError(
                f"the {split} split has a text column {data_args.text_column!r} but the recipe names no "
                "tokenizer: set model.tokenizer to a tokenizer folder"
            )
        else:
            raise RecipeError(
                f"the {split} split has no `input_ids` column and no text column {data_args.text_column!r} "
                f"(columns: {columns}), and the model has no prepare_training_dataset method: tokenise the data "
                "first, or set data.text_column and model.tokenizer"
            )
    keep = [c for c in ("input_ids", "labels") if c in dataset.column_names]
    dataset = dataset.select_columns(keep)
    n_before = len(dataset)
    if data_args.packing:
        if eos_token_id is None:
            raise RecipeError(
                "data.packing separates rows with EOS, but neither the tokenizer nor the model config has an "
                "eos_token_id"
            )
        dataset = dataset.map(
            pack_sequences,
            batched=True,
            batch_size=1000,
            num_proc=num_proc,
            fn_kwargs={"max_length": data_args.max_length, "eos_token_id": eos_token_id},
            remove_columns=keep,
            desc=f"packing {split}",
        )
    dataset = dataset.map(_lengths, batched=True, num_proc=num_proc, desc=f"measuring {split}")
    too_long = sum(1 for n in dataset["length"] if n > data_args.max_length)
    if too_long:
        log(f"{split}: truncated {too_long} of {n_before} rows to max_length={data_args.max_length} tokens")
        dataset = dataset.map(
            _truncate,
            batched=True,
            num_proc=num_proc,
            fn_kwargs={"max_length": data_args.max_length},
            desc=f"truncating {split}",
        )
    short = sum(1 for n in dataset["length"] if n < 2)
    if short:  # a row of one token has nothing to predict
        dataset = dataset.filter(lambda n: n >= 2, input_columns="length", num_proc=num_proc)
        log(f"{split}: dropped {short} rows shorter than 2 tokens")
    return dataset


class LengthGroupedBatchSampler(torch.utils.data.Sampler):
    """Batches of row indices, shuffled anew each epoch from ``(seed, epoch)`` alone.

    With ``bucket_by_length``, the shuffled rows are cut into mega-batches of ``50 x batch_size``, each
    sorted by length and cut into batches, and the order of all batches is shuffled: batches hold rows
    of similar length (little padding) without a fixed long-to-short order. Every row is in exactly one
    batch per epoch; only the last batch may be smaller.

    The epoch is the attribute ``epoch``, set by the training loop. The sampler has on purpose no
    ``set_epoch`` and no ``batch_size`` attribute, so that `accelerate` neither resets its epoch nor
    assumes batches of one size when it shards them across processes.

    Args:
        lengths (`list[int]`):
            Length of every row.
        per_batch (`int`):
            Rows per batch.
        seed (`int`, *optional*, defaults to 0):
            Seed of the order.
        bucket_by_length (`bool`, *optional*, defaults to `False`):
            Group rows of similar length.
        shuffle (`bool`, *optional*, defaults to `True`):
            Shuffle the rows (and batches); `False` keeps the dataset order.
        megabatch_mult (`int`, *optional*, defaults to 50):
            Batches per mega-batch when bucketing.
    """

    def __init__(
        self,
        lengths: list[int],
        per_batch: int,
        seed: int = 0,
        bucket_by_length: bool = False,
        shuffle: bool = True,
        megabatch_mult: int = 50,
    ):
        self.lengths = list(lengths)
        self.per_batch = per_batch
        self.seed = seed
        self.bucket_by_length = bucket_by_length
        self.shuffle = shuffle
        self.megabatch_mult = megabatch_mult
        self.epoch = 0

    def batches(self) -> list[list[int]]:
        """The batches of the current epoch."""
        n, bs = len(self.lengths), self.per_batch
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        if not self.bucket_by_length:
            return [order[i : i + bs] for i in range(0, n, bs)]
        mega = bs * self.megabatch_mult
        batches = []
        for start in range(0, n, mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            batches += [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.per_batch)


class PadCollator:
    """Pads rows to the longest of the batch (on the right) and makes the labels.

    ``labels`` are the ``input_ids`` (or the rows' own ``labels``) with every padded position set to
    ``-100``; ``attention_mask`` is 1 on real tokens.

    Args:
        pad_token_id (`int`, *optional*, defaults to 0):
            The id written at padded positions (never attended to, never a label).
    """

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.as_tensor(r.get("labels", r["input_ids"]), dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
