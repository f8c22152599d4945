"""The training loop every model family of hf-slm trains through.

``hf-slm train RECIPE.yaml`` and ``accelerate launch -m hf_slm.train RECIPE.yaml`` both call
[`train`]. One `accelerate.Accelerator` is prepared once with the model, the optimizer (AdamW), the
training dataloader and the schedule (linear warm-up + cosine); it runs on one CPU, on several
processes (DDP, e.g. 2 CPU processes over gloo) or on GPUs, with gradient accumulation and
optional bf16 autocast. With ``lora.enabled`` the model is wrapped with PEFT LoRA first.

What the loop writes into ``training.output_dir``:

- the trained model (``save_pretrained``; loads with ``AutoModelForCausalLM.from_pretrained``), the
  tokenizer of the recipe and the processor files of ``model.model_name_or_path`` if it has any;
  with LoRA, the folder holds the PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``;
  loads with ``peft.AutoPeftModelForCausalLM.from_pretrained``) and ``merged/`` holds the base model
  with the adapter merged in (loads with ``AutoModelForCausalLM.from_pretrained``);
- ``training_log.json`` (the recipe, the history of training loss, learning rate, tokens/s and
  validation loss, the summary), ``loss_curve.png`` and ``train_recipe.yaml``;
- TensorBoard event files under ``runs/`` (accelerate's tensorboard tracker);
- checkpoints ``checkpoints/step_N/`` (see [`~hf_slm.training.checkpoint.save_checkpoint`]).

The loss of an optimizer step is the mean over its micro-batches of their mean loss per token; the
validation loss is the exact mean loss per predicted token over the whole validation split.

Resuming (``training.resume_from_checkpoint: latest`` or a path) restores the weights, the
optimizer, the schedule and the RNG states of every process, and skips the batches of the epoch
that were already consumed, so the resumed run ends at the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch

from hf_slm.recipes import RecipeError
from hf_slm.training.adapters import builtin_lora_layers, merge_adapter
from hf_slm.training.arguments import (
    LoraArguments,
    ModelArguments,
    TrainRecipe,
    apply_overrides,
    load_train_recipe,
    recipe_from_dict,
)
from hf_slm.training.checkpoint import (
    latest_checkpoint,
    prune_checkpoints,
    read_loop_state,
    resolve_checkpoint,
    save_checkpoint,
)
from hf_slm.training.data import LengthGroupedBatchSampler, PadCollator, prepare_split
from hf_slm.training.schedule import warmup_cosine

__all__ = ["TrainingError", "train"]


def train(
    recipe_or_args: TrainRecipe | str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """Train a causal LM as a training recipe says.

    Args:
        recipe_or_args ([`TrainRecipe`], `str`, `Path` or `dict`):
            A validated recipe, the path of a recipe YAML file, or a recipe mapping.
        overrides (`list[str]`, *optional*):
            ``section.key=value`` overrides (``--set``), applied before validation.

    Returns:
        `dict`: the summary (also in ``training_log.json``): ``steps``, ``final_train_loss``,
        ``final_eval_loss``, ``tokens_per_second``, ``minutes``, ``output_dir``, ``resumed_from``,
        ``num_processes``, ``parameters``, ``trainable_parameters``.
    """
    recipe = _as_recipe(recipe_or_args, overrides)
    torch.set_flush_denormal(True)  # denormal floats slow CPU training down about tenfold
    try:
        return _train(recipe)
    finally:
        from accelerate.state import AcceleratorState, GradientState

        # the process group stays; the next Accelerator of this process starts from a clean state
        AcceleratorState._reset_state()
        GradientState._reset_state()


def _as_recipe(recipe_or_args, overrides) -> TrainRecipe:
    if isinstance(recipe_or_args, TrainRecipe):
        if not overrides:
            return recipe_or_args
        recipe_or_args = recipe_or_args.to_dict()
    if isinstance(recipe_or_args, (str, Path)):
        return load_train_recipe(recipe_or_args, overrides)
    if isinstance(recipe_or_args, dict):
        return recipe_from_dict(apply_overrides(copy.deepcopy(recipe_or_args), overrides, "recipe"))
    raise TypeError(
        f"train() takes a TrainRecipe, a recipe file or a recipe dict, not {type(recipe_or_args)}"
    )


class TrainingError(RuntimeError):
    """A run that cannot go on (e.g. its loss became NaN); the message says what was kept."""


def _stop_on_bad_loss(accelerator, loss, step: int, checkpoints: Path) -> None:
    """Stop every process, before the optimizer step, if the loss of any process is NaN or infinite."""
    bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach())) else 1.0, device=accelerator.device)
    if float(accelerator.reduce(bad, reduction="sum")) == 0:
        return
    last = latest_checkpoint(checkpoints)
    kept = (
        f"the last good checkpoint is {last} (resume it with training.resume_from_checkpoint=latest)"
        if last is not None
        else "no checkpoint had been written yet (set training.save_steps to keep some)"
    )
    raise TrainingError(
        f"the training loss became {float(loss.detach())} at step {step + 1}: the run stopped before that "
        f"step's optimizer update, and nothing was written after step {step}; {kept}. Lower "
        "training.learning_rate, set training.max_grad_norm, or train in float32 (mixed_precision: no)."
    )


def _load_model(args: ModelArguments):
    from transformers import AutoConfig, AutoModelForCausalLM

    if args.model_name_or_path is not None:
        config = AutoConfig.from_pretrained(args.model_name_or_path)
        if (
            type(config) not in AutoModelForCausalLM._model_mapping
        ):  # e.g. a speech-aware LM (audio in, text out)
            from transformers import AutoModel

            return AutoModel.from_pretrained(args.model_name_or_path, dtype=torch.float32)
        return AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=torch.float32)
    config = dict(args.config)
    model_type = config.pop("model_type")
    try:
        config = AutoConfig.for_model(model_type, **config)
    except ValueError as err:
        raise RecipeError(f"model.config: {err}") from None
    return AutoModelForCausalLM.from_config(config)


def _first_id(value) -> int | None:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _special_ids(model, tokenizer) -> tuple[int | None, int]:
    """EOS (separator of rows) and padding ids, from the tokenizer, else the model config."""
    config = model.config
    eos = tokenizer.eos_token_id if tokenizer is not None else None
    if eos is None:
        eos = _first_id(getattr(config, "eos_token_id", None))
    pad = tokenizer.pad_token_id if tokenizer is not None else None
    if pad is None:
        pad = _first_id(getattr(config, "pad_token_id", None))
    return eos, pad if pad is not None else (eos if eos is not None else 0)


def _add_lora(model, args: LoraArguments):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    # a model may carry LoRA layers of its own (a speech-aware LM's `text_lora`): they keep training with
    # the new adapter and are saved in it, but merging folds in the new adapter only (`merge_adapter`)
    model._builtin_lora_layers = sorted(builtin_lora_layers(model))
    # PEFT keeps the trainability of a model that has LoRA layers already (it takes the new adapter for a
    # second one): freeze the base first, so that only LoRA weights (and modules_to_save) train
    model.requires_grad_(False)
    causal = type(model.config) in AutoModelForCausalLM._model_mapping
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM if causal else None,
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=args.target_modules,
        modules_to_save=args.modules_to_save,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise RecipeError(f"lora: {err}") from None


def _load_splits(recipe: TrainRecipe, model, tokenizer, eos: int | None, log) -> dict[str, Any]:
    from datasets import DatasetDict, load_from_disk

    data = recipe.data
    if not Path(data.dataset).exists():
        raise RecipeError(f"data.dataset: {data.dataset} does not exist (a datasets.load_from_disk folder)")
    dsd = load_from_disk(data.dataset)
    if not isinstance(dsd, DatasetDict):
        raise RecipeError(
            f"data.dataset: {data.dataset} holds one Dataset; save a DatasetDict with named splits"
        )
    wanted = {"train": data.train_split, "eval": data.eval_split}
    splits: dict[str, Any] = {}
    skipped: list[dict[str, Any]] = []
    for role, name in wanted.items():
        if name is None:
            continue
        if name not in dsd:
            hint = "; set data.eval_split: null to train without evaluation" if role == "eval" else ""
            raise RecipeError(
                f"data.{role}_split: {data.dataset} has no split {name!r} (splits: {list(dsd)}){hint}"
            )
        ds = dsd[name]
        if role == "eval" and data.max_eval_samples is not None:
            ds = ds.select(range(min(len(ds), data.max_eval_samples)))
        if _has_audio(ds):  # a clip that cannot be decoded is dropped and reported, not a crash mid-run
            from hf_slm.data.corpus import drop_unreadable_audio

            ds, bad = drop_unreadable_audio(ds, num_proc=data.num_proc, split=name)
            skipped += bad
            for item in bad:
                log(f"skipped unreadable audio {name}[{item['index']}] {item['path']}: {item['error']}")
        splits[role] = prepare_split(
            ds, data, tokenizer=tokenizer, model=model, eos_token_id=eos, split=name, log=log
        )
    if len(splits["train"]) == 0:
        raise RecipeError(f"the {data.train_split} split of {data.dataset} has no rows to train on")
    return splits, skipped


def _has_audio(dataset) -> bool:
    from datasets import Audio

    return isinstance(dataset.features.get("audio"), Audio)


class _BatchStream:
    """Endless micro-batches, epoch after epoch, that knows its position (epoch, batches of the epoch)."""

    def __init__(self, dataloader, sampler: LengthGroupedBatchSampler, epoch: int = 0, position: int = 0):
        self.dataloader, self.sampler = dataloader, sampler
        self.epoch, self.position = epoch, position
        self._iterator = None

    def __next__(self):
        from accelerate import skip_first_batches

        empty = 0
        while True:
            if self._iterator is None:
                self.sampler.epoch = self.epoch
                loader = self.dataloader
                if self.position:  # resumed inside an epoch: skip what was consumed
                    loader = skip_first_batches(self.dataloader, self.position)
                self._iterator = iter(loader)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator, self.epoch, self.position = None, self.epoch + 1, 0
                empty += 1
                if empty > 1:
                    raise RuntimeError("the training dataloader yields no batches") from None
                continue
            self.position += 1
            return batch


class _RowCollator:
    """Batches of raw rows through a processor's `training_batch` (a picklable callable)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return dict(self.processor.training_batch(rows))


def _evaluate(accelerator, model, loader) -> float | None:
    """Mean loss per predicted token over the evaluation split (each process takes its own shard)."""
    net = accelerator.unwrap_model(model)
    net.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad(), accelerator.autocast():
        for batch in loader:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            loss = net(**batch).loss
            n = (batch["labels"][:, 1:] != -100).sum()
            total += torch.stack([loss.double() * n, n.double()])
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    return (total[0] / total[1]).item() if total[1] > 0 else None


def _flat_config(recipe: TrainRecipe) -> dict[str, Any]:
    """The recipe as TensorBoard hyperparameters (scalars only)."""
    flat = {}
    for section, values in recipe.to_dict().items():
        items = values.items() if isinstance(values, dict) else [("", values)]
        for key, value in items:
            name = f"{section}/{key}" if key else section
            flat[name] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


def _plot(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h and h["eval_loss"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in train], [h["loss"] for h in train], label="training loss")
    if evals:
        ax.plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per token (nats)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _copy_processor(source: str, out: Path) -> bool:
    """Save the processor of ``source`` into ``out``; `False` if ``source`` has none."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(source)
    except ValueError as err:
        if "Unrecognized processing class" in str(err):
            return False
        raise
    processor.save_pretrained(out)
    return True


def _train(recipe: TrainRecipe) -> dict[str, Any]:
    import yaml
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration, set_seed
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    started = time.perf_counter()
    m, d, t = recipe.model, recipe.data, recipe.training
    out = Path(t.output_dir)
    checkpoints = out / "checkpoints"
    accelerator = Accelerator(
        # without a GPU, ranks started by torchrun (accelerate launch) join a gloo group on the CPU
        cpu=not torch.accelerator.is_available(),
        mixed_precision=t.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=t.gradient_accumulation_steps, sync_with_dataloader=False
        ),
        step_scheduler_with_optimizer=False,  # the schedule counts optimizer steps, whatever the processes
        log_with="tensorboard" if t.report_to == "tensorboard" else None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "runs")),
    )
    main = accelerator.is_main_process

    def log(message: str) -> None:
        if main:
            tqdm.write(message)

    resume = resolve_checkpoint(t.resume_from_checkpoint, checkpoints)
    if t.resume_from_checkpoint == "latest" and resume is None:
        log(f"no checkpoint in {checkpoints} yet: starting afresh")

    set_seed(t.seed)  # the same initial weights on every process
    model = _load_model(m)
    tokenizer = AutoTokenizer.from_pretrained(m.tokenizer) if m.tokenizer else None
    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise RecipeError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only "
            f"{model.get_input_embeddings().num_embeddings}: resize the model's embeddings first"
        )
    eos, pad = _special_ids(model, tokenizer)
    with accelerator.main_process_first():  # the main process fills the datasets cache, the others read it
        splits, skipped_audio = _load_splits(recipe, model, tokenizer, eos, log)
    if recipe.lora.enabled:
        model = _add_lora(model, recipe.lora)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    train_ds = splits["train"]
    sampler = LengthGroupedBatchSampler(
        train_ds["length"], t.per_device_batch_size, seed=t.seed, bucket_by_length=d.bucket_by_length
    )
    collate = PadCollator(pad)
    if getattr(model, "trains_on_rows", False):
        # rows of audio + instruction + response: the model's processor builds each batch (features,
        # placeholders, labels on the answers only)
        from transformers import AutoProcessor

        if m.model_name_or_path is None:
            raise RecipeError(
                f"{type(model).__name__} trains from a model folder with its processor: set model_name_or_path"
            )
        collate = _RowCollator(AutoProcessor.from_pretrained(m.model_name_or_path))
    train_dl = torch.utils.data.DataLoader(
        train_ds.remove_columns("length"),
        batch_sampler=sampler,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(t.seed),  # keeps the global RNG (dropout) untouched
    )
    eval_dl = None
    if "eval" in splits:  # evaluated on the unwrapped model, each process on its own shard, exact mean
        shard = splits["eval"].shard(accelerator.num_processes, accelerator.process_index, contiguous=True)
        eval_dl = torch.utils.data.DataLoader(
            shard.remove_columns("length"),
            batch_sampler=LengthGroupedBatchSampler(
                shard["length"], t.per_device_batch_size, bucket_by_length=True, shuffle=False
            ),
            collate_fn=collate,
        )

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t.learning_rate,
        # one fused kernel for all parameters: on CPU about 3x faster than the default per-tensor loop
        fused=all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay),
    )
    scheduler = warmup_cosine(optimizer, t.warmup_steps, t.max_steps)
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:  # DeepSpeed reads the micro-batch from the dataloader, which has a batch sampler
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = t.per_device_batch_size
    model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)

    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": []}
    if resume is not None:
        accelerator.load_state(str(resume))
        state = read_loop_state(resume)
        saved = (state.get("num_processes"), state.get("per_device_batch_size"), state.get("seed"))
        if saved != (accelerator.num_processes, t.per_device_batch_size, t.seed):
            log(
                f"warning: {resume} was written with (processes, per_device_batch_size, seed) = {saved}; "
                "the data order of the resumed run differs from the original one"
            )
        log(f"resumed from {resume} at step {state['step']}")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    if t.report_to == "tensorboard":
        accelerator.init_trackers(recipe.name or "train", config=_flat_config(recipe))

    step, history = state["step"], state["history"]
    stream = _BatchStream(train_dl, sampler, state["epoch"], state["batch_in_epoch"])
    progress = tqdm(
        total=t.max_steps,
        initial=step,
        desc=recipe.name or "train",
        disable=not accelerator.is_local_main_process,
    )
    window = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # loss sum, micro-batches, tokens
    window_seconds = run_seconds = 0.0
    run_tokens = 0.0
    final_eval = next((h["eval_loss"] for h in reversed(history) if "eval_loss" in h), None)
    if step >= t.max_steps:
        log(f"the checkpoint is at step {step}, max_steps is {t.max_steps}: nothing to train")
    model.train()
    while step < t.max_steps:
        tick = time.perf_counter()
        for _ in range(t.gradient_accumulation_steps):
            batch = next(stream)
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                _stop_on_bad_loss(accelerator, loss, step, checkpoints)
                accelerator.backward(loss)
                if accelerator.sync_gradients and t.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            window += torch.stack(
                [loss.detach().double(), window.new_tensor(1.0), batch["attention_mask"].sum().double()]
            )
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        step += 1
        window_seconds += time.perf_counter() - tick
        progress.update(1)

        if step % t.logging_steps == 0 or step == t.max_steps:
            loss_sum, micro, tokens = accelerator.reduce(window, reduction="sum").tolist()
            entry = {
                "step": step,
                "epoch": stream.epoch,
                "loss": loss_sum / micro,
                "lr": lr,
                "tokens_per_second": tokens / max(window_seconds, 1e-9),
            }
            history.append(entry)
            accelerator.log(
                {
                    "train/loss": entry["loss"],
                    "train/lr": lr,
                    "train/tokens_per_second": entry["tokens_per_second"],
                },
                step=step,
            )
            progress.set_postfix(loss=f"{entry['loss']:.4f}", lr=f"{lr:.2e}")
            run_tokens += tokens
            run_seconds += window_seconds
            window.zero_()
            window_seconds = 0.0

        if eval_dl is not None and ((t.eval_steps and step % t.eval_steps == 0) or step == t.max_steps):
            final_eval = _evaluate(accelerator, model, eval_dl)
            history.append({"step": step, "eval_loss": final_eval})
            if final_eval is not None:
                accelerator.log({"eval/loss": final_eval}, step=step)
                log(f"step {step}: validation loss {final_eval:.4f}")

        if t.save_steps and step % t.save_steps == 0:
            loop_state = {
                "step": step,
                "epoch": stream.epoch,
                "batch_in_epoch": stream.position,
                "num_processes": accelerator.num_processes,
                "per_device_batch_size": t.per_device_batch_size,
                "gradient_accumulation_steps": t.gradient_accumulation_steps,
                "seed": t.seed,
                "history": history,
            }
            path = save_checkpoint(accelerator, checkpoints, step, loop_state)
            if main:
                prune_checkpoints(checkpoints, t.save_total_limit)
            accelerator.wait_for_everyone()
            log(f"step {step}: saved {path}")
    progress.close()

    accelerator.wait_for_everyone()
    summary = {
        "name": recipe.name,
        "steps": step,
        "final_train_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
        "final_eval_loss": final_eval,
        "tokens_per_second": run_tokens / run_seconds if run_seconds else None,
        "minutes": (time.perf_counter() - started) / 60,
        "output_dir": str(out),
        "resumed_from": str(resume) if resume is not None else None,
        "num_processes": accelerator.num_processes,
        "parameters": n_params,
        "trainable_parameters": n_trainable,
        "skipped_audio": skipped_audio,  # clips that could not be decoded: {split, index, path, error}
    }
    # Every process takes part: under FSDP this gathers the full weights (on the main process, on the
    # CPU); under DDP or one process it is the model's own state dict (no copy). A LoRA model keeps
    # saving itself (adapter, then merged) from its live weights, so it cannot be trained under FSDP.
    state_dict = None if recipe.lora.enabled else accelerator.get_state_dict(model)
    if main:
        net = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        net.save_pretrained(out, state_dict=state_dict)
        folders = [out]
        if recipe.lora.enabled:  # `out` holds the adapter; `merged` the base model with the adapter merged in
            merge_adapter(net).save_pretrained(out / "merged")
            folders.append(out / "merged")
        for folder in folders:
            if m.model_name_or_path is not None:
                _copy_processor(m.model_name_or_path, folder)
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
        (out / "training_log.json").write_text(
            json.dumps({"recipe": recipe.to_dict(), "history": history, "summary": summary}, indent=1)
        )
        _plot(history, out / "loss_curve.png", recipe.name or out.name)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if summary["final_train_loss"] is not None:
        eval_text = f", validation loss {final_eval:.4f}" if final_eval is not None else ""
        log(f"trained {step} steps: training loss {summary['final_train_loss']:.4f}{eval_text}; wrote {out}")
    return summary
