"""Training speed of hf-slm's loop (`hf_slm.training.train`) against transformers' `Trainer`, and the
FLOP/s each achieves as a fraction of this machine's fp32 matmul peak.

Both train the same model on the same data, in one process, at the same thread count:

- the same Llama config (random weights, built by ``AutoModelForCausalLM.from_config`` after
  ``set_seed(0)`` in both, so the initial weights are identical too; untied input / output
  embeddings; default ~8.7M parameters: hidden 384, 4 layers, 6 heads, MLP 1024, vocabulary 2048);
- the same packed token data: a `datasets.DatasetDict` saved to a temporary folder, whose ``train``
  split has an ``input_ids`` column of blocks of exactly ``--seq-len`` random tokens (``--steps`` x
  ``--batch-size`` rows: one epoch), so no batch has any padding. Both batch it with the loop's
  `PadCollator` (``input_ids``, an all-ones ``attention_mask``, ``labels``) through an
  accelerate-prepared `DataLoader` without worker processes;
- the same optimisation: AdamW (lr ``--learning-rate``, weight decay ``--weight-decay``, betas
  (0.9, 0.999), eps 1e-8), linear warm-up over ``--lr-warmup-steps`` then cosine decay, gradient
  clipping at 1.0, float32 (no autocast), batch ``--batch-size``, no gradient accumulation, the same
  number of steps. The AdamW *implementation* is each side's own choice: the loop builds
  ``torch.optim.AdamW(fused=True)``, the Trainer its default ``optim`` (``adamw_torch_fused`` with
  torch >= 2.8): the same fused kernel. ``--trainer-optim adamw_torch`` gives the Trainer the unfused one;
- no evaluation, no checkpoints, no tracker (``report_to`` none), a log line every step (the loss and
  learning rate of each step are read back to the CPU in both), tqdm progress bars in both.

What is timed, per optimizer step, skipping the first ``--warmup-steps-skipped`` steps of every run:

- *step span* (the headline): fetching the batch (sampler, collator, accelerate's `DataLoaderShard`),
  forward, backward, gradient clipping, optimizer step, schedule step and zero_grad. For the loop it is
  the per-step ``tokens_per_second`` of its history (``logging_steps: 1``), which times exactly this;
  for the Trainer it is the time of ``Trainer.get_batch_samples`` (a subclass times it) plus the time
  from the ``on_step_begin`` to the ``on_step_end`` callback (a `TrainerCallback`);
- *cycle*: the wall time from the start of one forward pass to the start of the next (a global module
  forward pre-hook on the `LlamaForCausalLM`), i.e. everything each framework does per step,
  logging and progress bar included.

The runs alternate (ours, Trainer, ours, Trainer, ... ``--repeats`` pairs), so that drifts of a shared
machine fall on both alike; each run's tokens/s is its timed tokens over its timed seconds, and the
medians over the runs are reported, with the ratio ours / Trainer (aim: >= 1.0).

FLOPs: the training FLOPs per token are ``6 N + 12 L H T`` (PaLM, Chowdhery et al. 2022, appendix B),
with N the non-embedding parameters (every parameter except the input embedding table: the untied
output projection ``lm_head`` is a matmul, so it counts), L layers, H the hidden size and T the
sequence length (the attention term counts the full T x T score and value matmuls, as PaLM does).
Achieved FLOP/s = FLOPs per token x tokens/s (step span). The peak is measured in the same run, at the
same thread count: the best of ``--peak-repeats`` fp32 ``torch.mm`` of each ``--peak-sizes`` square
size, before the first and after the last run (the best of both). Aim: >= 30% of the peak.

Denormal floats are flushed to zero in both (the loop sets ``torch.set_flush_denormal(True)``; so does
this script before any run).

Usage:
    python benchmarks/bench_train.py [--threads 2] [--steps 10] [--warmup-steps-skipped 3] [--repeats 3]
        [--hidden-size 384 --intermediate-size 1024 --layers 4 --heads 6 --vocab-size 2048]
        [--seq-len 512 --batch-size 8] [--out benchmarks/results/train.json]

It writes the JSON to ``--out`` and a PNG beside it (tokens/s of both; fraction of peak of both).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_timing.py, also when imported
from _timing import print_table

PAD_ID, EOS_ID = 0, 1
AIM_RATIO, AIM_FRACTION = 1.0, 0.30


# ---------------------------------------------------------------------------------------------- set-up


def llama_config(args: argparse.Namespace) -> dict:
    return {
        "model_type": "llama",
        "vocab_size": args.vocab_size,
        "hidden_size": args.hidden_size,
        "intermediate_size": args.intermediate_size,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads or args.heads,
        "max_position_embeddings": args.seq_len,
        "tie_word_embeddings": False,
        "pad_token_id": PAD_ID,
        "bos_token_id": None,
        "eos_token_id": EOS_ID,
    }


def build_model(config: dict):
    """The model exactly as the loop builds it from an inline config (same seed: same weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM, set_seed

    set_seed(0)
    values = dict(config)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(values.pop("model_type"), **values))


def write_data(folder: Path, args: argparse.Namespace) -> Path:
    """A DatasetDict whose ``train`` split holds steps x batch blocks of exactly seq-len random ids."""
    from datasets import Dataset, DatasetDict

    g = torch.Generator().manual_seed(0)
    rows = args.steps * args.batch_size
    ids = torch.randint(EOS_ID + 1, args.vocab_size, (rows, args.seq_len), generator=g)
    path = folder / "data"
    DatasetDict(train=Dataset.from_dict({"input_ids": ids.tolist()})).save_to_disk(str(path))
    return path


def flops_per_token(model, config: dict, seq_len: int) -> tuple[int, int]:
    """``(6 N + 12 L H T, N)`` with N the parameters other than the input embedding table."""
    total = sum(p.numel() for p in model.parameters())
    non_embedding = total - model.get_input_embeddings().weight.numel()
    attention = 12 * config["num_hidden_layers"] * config["hidden_size"] * seq_len
    return 6 * non_embedding + attention, non_embedding


def measure_peak(sizes: list[int], repeats: int) -> dict[str, float]:
    """Best fp32 GFLOP/s of ``torch.mm`` per square size, at the current thread count."""
    out = {}
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
        out[str(n)] = 2 * n**3 / best / 1e9
    return out


class ForwardClock:
    """Start times of every forward pass of a module of class ``cls`` (a global forward pre-hook, so that
    it also sees the model the loop builds internally)."""

    def __init__(self, cls: type):
        self.cls, self.times = cls, []

    def __enter__(self):
        def hook(module, _inputs):
            if type(module) is self.cls:
                self.times.append(time.perf_counter())

        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    def cycles(self, skip: int) -> list[float]:
        """Seconds from each forward start to the next, for the steps after the first ``skip``."""
        gaps = [b - a for a, b in zip(self.times, self.times[1:])]
        return gaps[skip:]


# -------------------------------------------------------------------------------------------- the runs


def run_ours(args, config: dict, data: Path, out: Path) -> dict:
    from transformers import LlamaForCausalLM

    from hf_slm.training import train

    recipe = {
        "name": "bench-ours",
        "model": {"config": dict(config)},
        "data": {"dataset": str(data), "max_length": args.seq_len, "eval_split": None},
        "training": {
            "output_dir": str(out),
            "seed": 0,
            "max_steps": args.steps,
            "per_device_batch_size": args.batch_size,
            "gradient_accumulation_steps": 1,
            "learning_rate": args.learning_rate,
            "weight_decay": args.weight_decay,
            "warmup_steps": args.lr_warmup_steps,
            "max_grad_norm": 1.0,
            "mixed_precision": "no",
            "eval_steps": None,
            "save_steps": None,
            "logging_steps": 1,
            "report_to": "none",
        },
    }
    with ForwardClock(LlamaForCausalLM) as clock:
        train(recipe)
    history = json.loads((out / "training_log.json").read_text())["history"]
    tokens = args.batch_size * args.seq_len
    spans = [tokens / h["tokens_per_second"] for h in history if "tokens_per_second" in h]
    if len(spans) != args.steps:
        raise SystemExit(f"the loop logged {len(spans)} steps, expected {args.steps}")
    return {"span_s": spans[args.warmup_steps_skipped :], "cycle_s": clock.cycles(args.warmup_steps_skipped)}


def run_trainer(args, config: dict, data: Path, out: Path) -> dict:
    from accelerate.state import AcceleratorState, GradientState
    from datasets import load_from_disk
    from transformers import LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from hf_slm.training.data import PadCollator

    class StepClock(TrainerCallback):
        def __init__(self):
            self.begin, self.spans = None, []

        def on_step_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.spans.append(time.perf_counter() - self.begin)

    class TimedTrainer(Trainer):
        """Also times fetching each step's batches (done before ``on_step_begin``)."""

        data_s: list[float]

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            t0 = time.perf_counter()
            out = super().get_batch_samples(epoch_iterator, num_batches, device)
            self.data_s.append(time.perf_counter() - t0)
            return out

    training_args = TrainingArguments(
        output_dir=str(out),
        seed=0,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        optim=args.trainer_optim or TrainingArguments.default_optim,
        lr_scheduler_type="cosine",
        warmup_steps=args.lr_warmup_steps,
        max_grad_norm=1.0,
        bf16=False,
        fp16=False,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=False,
    )
    model = build_model(config)
    clock = StepClock()
    trainer = TimedTrainer(
        model=model,
        args=training_args,
        train_dataset=load_from_disk(str(data))["train"],
        data_collator=PadCollator(PAD_ID),
        callbacks=[clock],
    )
    trainer.data_s = []
    try:
        with ForwardClock(LlamaForCausalLM) as forward_clock:
            trainer.train()
    finally:  # the next Accelerator of this process (the loop's) starts from a clean state
        AcceleratorState._reset_state()
        GradientState._reset_state()
    if len(clock.spans) != args.steps or len(trainer.data_s) != args.steps:
        raise SystemExit(f"the Trainer ran {len(clock.spans)} steps ({len(trainer.data_s)} fetches), expected {args.steps}")  # fmt: skip
    spans = [d + s for d, s in zip(trainer.data_s, clock.spans)]
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    fused = bool(optimizer.defaults.get("fused"))
    return {
        "span_s": spans[args.warmup_steps_skipped :],
        "cycle_s": forward_clock.cycles(args.warmup_steps_skipped),
        "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__name__}"
        + (" (fused)" if fused else ""),
    }


# ---------------------------------------------------------------------------------------------- report


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, keys, colors = ["Trainer", "ours"], ["trainer", "ours"], ["tab:gray", "tab:blue"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    tps = [payload[k]["tokens_per_second"] for k in keys]
    ax1.bar(names, tps, color=colors)
    for i, k in enumerate(keys):
        runs = payload[k]["runs_tokens_per_second"]
        ax1.plot([i] * len(runs), runs, "k.", markersize=5)
        ax1.text(i, tps[i], f"{tps[i]:.0f}", ha="center", va="bottom")
    ax1.set_ylabel("tokens/s (median of runs; dots: runs)")
    ax1.set_title(f"training throughput: ours / Trainer = {payload['ratio']:.3f}")
    frac = [payload[k]["fraction_of_peak"] for k in keys]
    ax2.bar(names, frac, color=colors)
    for i, f in enumerate(frac):
        ax2.text(i, f, f"{100 * f:.1f}%", ha="center", va="bottom")
    ax2.axhline(AIM_FRACTION, color="black", linestyle="--", linewidth=1, label=f"aim {AIM_FRACTION:.0%}")
    ax2.set_ylim(0, max([*frac, AIM_FRACTION]) * 1.25)
    ax2.set_ylabel("achieved FLOP/s / matmul peak")
    ax2.set_title(f"fraction of fp32 matmul peak ({payload['peak_gflops']:.0f} GFLOP/s)")
    ax2.legend(loc="lower right")
    fig.suptitle(
        f"Llama {payload['parameters'] / 1e6:.1f}M params, batch {payload['batch_size']} x {payload['seq_len']} "
        f"tokens, fp32, {payload['threads']} threads",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise(runs: list[dict], tokens_per_step: int, flops: int, peak_gflops: float) -> dict:
    per_run = [tokens_per_step * len(r["span_s"]) / sum(r["span_s"]) for r in runs]
    per_run_cycle = [tokens_per_step * len(r["cycle_s"]) / sum(r["cycle_s"]) for r in runs]
    tps = statistics.median(per_run)
    gflops = flops * tps / 1e9
    return {
        "tokens_per_second": tps,
        "runs_tokens_per_second": per_run,
        "median_step_seconds": statistics.median([s for r in runs for s in r["span_s"]]),
        "cycle_tokens_per_second": statistics.median(per_run_cycle),
        "runs_cycle_tokens_per_second": per_run_cycle,
        "gflops": gflops,
        "fraction_of_peak": gflops / peak_gflops,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for everything")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument("--warmup-steps-skipped", type=int, default=3, help="untimed first steps of each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (alternating); medians reported")
    parser.add_argument("--hidden-size", type=int, default=384)
    parser.add_argument("--intermediate-size", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--kv-heads", type=int, default=None, help="key/value heads (default: --heads)")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--lr-warmup-steps", type=int, default=2, help="linear warm-up of the schedule")
    parser.add_argument(
        "--trainer-optim",
        default=None,
        help="the Trainer's `optim` (default: its own default; `adamw_torch` is the loop's implementation)",
    )
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=[1024, 2048], help="square matmul sizes")
    parser.add_argument("--peak-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train.json"))
    args = parser.parse_args(argv)
    if args.steps < args.warmup_steps_skipped + 2:
        parser.error("--steps must be at least --warmup-steps-skipped + 2 (to time at least one cycle)")
    if min(args.threads, args.repeats, args.warmup_steps_skipped + 1) < 1:
        parser.error("--threads and --repeats must be >= 1, --warmup-steps-skipped >= 0")
    return args


def main(argv: list[str] | None = None) -> dict:
    import transformers

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    config = llama_config(args)
    model = build_model(config)
    flops, non_embedding = flops_per_token(model, config, args.seq_len)
    n_params = sum(p.numel() for p in model.parameters())
    attn = model.config._attn_implementation
    del model
    tokens_per_step = args.batch_size * args.seq_len
    print(
        f"Llama: {n_params / 1e6:.2f}M parameters ({non_embedding / 1e6:.2f}M non-embedding), attention "
        f"{attn}; {flops / 1e6:.1f} MFLOP per token; {args.steps} steps of {tokens_per_step} tokens, "
        f"the first {args.warmup_steps_skipped} untimed; {args.repeats} runs of each; {args.threads} threads"
    )

    peak_before = measure_peak(args.peak_sizes, args.peak_repeats)
    print("fp32 matmul GFLOP/s: " + ", ".join(f"{n}: {g:.1f}" for n, g in peak_before.items()))
    ours_runs, trainer_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        data = write_data(tmp, args)
        for rep in range(args.repeats):
            for name, run, runs in (("ours", run_ours, ours_runs), ("Trainer", run_trainer, trainer_runs)):
                torch.set_num_threads(args.threads)
                result = run(args, config, data, tmp / f"{name}_{rep}")
                if torch.get_num_threads() != args.threads:
                    print(f"warning: {name} changed the thread count to {torch.get_num_threads()}")
                runs.append(result)
                tps = tokens_per_step * len(result["span_s"]) / sum(result["span_s"])
                print(f"[{name} {rep + 1}/{args.repeats}] {tps:.0f} tokens/s (step span)")
    torch.set_num_threads(args.threads)
    peak_after = measure_peak(args.peak_sizes, args.peak_repeats)
    peak = max([*peak_before.values(), *peak_after.values()])

    ours = summarise(ours_runs, tokens_per_step, flops, peak)
    trainer = summarise(trainer_runs, tokens_per_step, flops, peak)
    ours["optimizer"] = "torch.optim.adamw.AdamW (fused)"  # as hf_slm.training builds it
    trainer["optimizer"] = trainer_runs[0]["optimizer"]
    ours["optimizer_short"] = "fused"
    trainer["optimizer_short"] = "fused" if trainer["optimizer"].endswith("(fused)") else "default"
    ratio = ours["tokens_per_second"] / trainer["tokens_per_second"]
    cycle_ratio = ours["cycle_tokens_per_second"] / trainer["cycle_tokens_per_second"]
    payload = {
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "config": config,
        "attention_implementation": attn,
        "parameters": n_params,
        "non_embedding_parameters": non_embedding,
        "flops_per_token": flops,
        "flops_formula": "6 * non_embedding_parameters + 12 * layers * hidden_size * seq_len (PaLM, appendix B)",
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "tokens_per_step": tokens_per_step,
        "steps": args.steps,
        "warmup_steps_skipped": args.warmup_steps_skipped,
        "repeats": args.repeats,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "lr_warmup_steps": args.lr_warmup_steps,
        "peak_gflops": peak,
        "peak_gflops_by_size": {"before": peak_before, "after": peak_after},
        "ours": ours,
        "trainer": trainer,
        "ratio": ratio,
        "cycle_ratio": cycle_ratio,
        "aims": {"ratio": AIM_RATIO, "fraction_of_peak": AIM_FRACTION},
    }

    rows = [
        ("tokens/s, step span", f"{trainer['tokens_per_second']:.0f}",
         f"{ours['tokens_per_second']:.0f}", f"{ratio:.3f} (aim >= {AIM_RATIO})"),
        ("tokens/s, fwd-to-fwd cycle", f"{trainer['cycle_tokens_per_second']:.0f}",
         f"{ours['cycle_tokens_per_second']:.0f}", f"{cycle_ratio:.3f}"),
        ("median step (s)", f"{trainer['median_step_seconds']:.3f}", f"{ours['median_step_seconds']:.3f}",
         f"{ours['median_step_seconds'] / trainer['median_step_seconds']:.3f}"),
        (f"GFLOP/s ({flops / 1e6:.1f} MFLOP/token)", f"{trainer['gflops']:.1f}", f"{ours['gflops']:.1f}",
         f"{ratio:.3f}"),
        (f"fraction of peak ({peak:.1f} GFLOP/s)", f"{trainer['fraction_of_peak']:.1%}",
         f"{ours['fraction_of_peak']:.1%}", f"aim >= {AIM_FRACTION:.0%}"),
        ("AdamW", trainer["optimizer_short"], ours["optimizer_short"], ""),
    ]  # fmt: skip
    print_table(
        f"training speed, ours vs Trainer ({n_params / 1e6:.1f}M Llama, {tokens_per_step} tokens/step, fp32, "
        f"{args.threads} threads, median of {args.repeats} runs)",
        rows,
        columns=("what", "Trainer", "ours", "ours / Trainer"),
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    plot(payload, png)
    print(f"wrote {args.out} and {png}")
    return payload


if __name__ == "__main__":
    main()
