"""The training loop under faults and on several processes: kill -9 between and inside checkpoints, two
DDP processes against one, which process writes what, and the accelerate configs of modeling/accelerate."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

# pytest puts tests/ on sys.path (no __init__.py there): the helpers of the loop's own tests
from test_training import REPO, TINY_LLAMA, _free_port, _patterned_rows, _recipe, _weights, _write

from hf_slm.recipes import RecipeError
from hf_slm.training import train
from hf_slm.training.checkpoint import LOOP_STATE, latest_checkpoint

CONFIGS = REPO / "modeling" / "accelerate"
TIMEOUT = 180
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# dropout and accumulation: the RNG states and the position in the data must come back on resume;
# 200 short steps (a few seconds) leave time to kill the run between two checkpoints
FAULTY = dict(
    model={"config": {**TINY_LLAMA, "attention_dropout": 0.1}},
    training={"max_steps": 200, "per_device_batch_size": 4, "gradient_accumulation_steps": 2,
              "warmup_steps": 10, "save_steps": 2, "save_total_limit": 2},
)  # fmt: skip
KILL_AFTER = 10  # the first complete checkpoint at or after this step is the "middle" one


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from datasets import Dataset, DatasetDict

    rng = random.Random(0)
    out = tmp_path_factory.mktemp("fault_units") / "dsd"
    DatasetDict(
        train=Dataset.from_dict({"input_ids": _patterned_rows(40, rng)}),
        validation=Dataset.from_dict({"input_ids": _patterned_rows(12, rng)}),
    ).save_to_disk(str(out))
    return out


@contextlib.contextmanager
def _one_thread():
    """In-process runs use one thread, like the subprocesses (OMP_NUM_THREADS=1), so sums add up alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> Path:
    """The faulty recipe run once, start to end, in this process."""
    out = tmp_path_factory.mktemp("straight") / "out"
    with _one_thread():
        summary = train(_recipe(data_dir, out, **FAULTY))
    assert summary["steps"] == FAULTY["training"]["max_steps"] and summary["resumed_from"] is None
    return out


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("_")[1])


def _history(out: Path) -> list[dict]:
    return json.loads((out / "training_log.json").read_text())["history"]


def _assert_same_run(out: Path, reference: Path) -> None:
    """Same final weights and the same log of losses as the reference run."""
    a, b = _weights(reference), _weights(out)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0, msg=lambda m, k=key: f"{k}: {m}")
    hist_a, hist_b = _history(reference), _history(out)
    assert [(h["step"], sorted(h)) for h in hist_b] == [(h["step"], sorted(h)) for h in hist_a]
    for ha, hb in zip(hist_a, hist_b):
        for key in ("loss", "eval_loss"):
            if key in ha:
                assert hb[key] == pytest.approx(ha[key], abs=1e-5), (ha["step"], key)


def _run(cmd: list[str], log: Path, env: dict[str, str] = ENV) -> subprocess.CompletedProcess:
    """Run ``cmd`` to its end, its output in files (``log``.out, .err) and in the result."""
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        done = subprocess.run(cmd, env=env, cwd=REPO, stdout=out, stderr=err, timeout=TIMEOUT)
    done.stdout, done.stderr = log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()
    return done


# ------------------------------------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, data_dir, uninterrupted):
    out = tmp_path / "out"
    recipe = _write(tmp_path / "r.yaml", _recipe(data_dir, out, **FAULTY))
    checkpoints = out / "checkpoints"
    # stdout and stderr go to files: an unread pipe would fill up and stall the run
    with open(tmp_path / "killed.out", "w") as log, open(tmp_path / "killed.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "hf_slm.train", str(recipe)], env=ENV, cwd=REPO,
                                stdout=log, stderr=err)  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                last = latest_checkpoint(checkpoints)  # complete: renamed, with its loop state
                if last is not None and _step(last) >= KILL_AFTER:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.01)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended with {proc.returncode} before the kill:\n{(tmp_path / 'killed.err').read_text()[-3000:]}"
    )
    assert not (out / "model.safetensors").exists() and not (out / "training_log.json").exists()
    resume_from = latest_checkpoint(checkpoints)
    assert KILL_AFTER <= _step(resume_from) < FAULTY["training"]["max_steps"]

    done = _run(
        [
            sys.executable,
            "-m",
            "hf_slm.train",
            str(recipe),
            "--set",
            "training.resume_from_checkpoint=latest",
        ],
        tmp_path / "resumed",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "training_log.json").read_text())["summary"]
    assert summary["resumed_from"] == str(resume_from) and summary["steps"] == FAULTY["training"]["max_steps"]
    assert f"resumed from {resume_from} at step {_step(resume_from)}" in done.stdout
    assert not list(checkpoints.glob("*.tmp"))  # a save interrupted by the kill is cleaned up
    _assert_same_run(out, uninterrupted)


KILL_INSIDE_SAVE = """
import os, signal, sys
from pathlib import Path

import accelerate

_save_state = accelerate.Accelerator.save_state


def save_state_then_die(self, output_dir=None, **kwargs):
    result = _save_state(self, output_dir, **kwargs)
    if Path(output_dir).name == "step_4.tmp":  # weights written; loop_state.json and the rename not yet
        os.kill(os.getpid(), signal.SIGKILL)
    return result


accelerate.Accelerator.save_state = save_state_then_die

from hf_slm.train import main

sys.exit(main())
"""


@pytest.mark.slow
def test_kill_9_while_writing_a_checkpoint_never_leaves_a_loadable_half_checkpoint(
    tmp_path, data_dir, uninterrupted
):
    out = tmp_path / "out"
    recipe = _recipe(data_dir, out, **FAULTY)
    script = tmp_path / "die_in_save.py"
    script.write_text(KILL_INSIDE_SAVE)
    done = _run([sys.executable, str(script), str(_write(tmp_path / "r.yaml", recipe))], tmp_path / "killed")
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]

    checkpoints = out / "checkpoints"
    half = checkpoints / "step_4.tmp"
    assert (half / "model.safetensors").is_file() and (half / "random_states_0.pkl").is_file()
    assert not (half / LOOP_STATE).exists() and not (checkpoints / "step_4").exists()
    assert latest_checkpoint(checkpoints) == checkpoints / "step_2"
    assert not (out / "model.safetensors").exists()

    with pytest.raises(RecipeError, match="incomplete checkpoint"):
        train(recipe, overrides=[f"training.resume_from_checkpoint={half}"])
    assert half.is_dir()  # refused before anything was touched

    with _one_thread():
        summary = train(recipe, overrides=["training.resume_from_checkpoint=latest"])
    assert summary["resumed_from"] == str(checkpoints / "step_2")
    assert summary["steps"] == FAULTY["training"]["max_steps"]
    assert not half.exists()
    _assert_same_run(out, uninterrupted)


# ------------------------------------------------------------------------------------------ processes

# Every file a rank opens for writing (and every folder it creates, renames or removes), one line per
# event in $AUDIT_DIR/rank_$RANK.txt. `torch.save` to a path and safetensors write from C++ / Rust,
# not through Python's open(), so those two writers are wrapped as soon as their modules are loaded.
SITECUSTOMIZE = r"""
import os
import sys

if os.environ.get("RANK") is not None and os.environ.get("AUDIT_DIR"):
    _LOG = os.open(
        os.path.join(os.environ["AUDIT_DIR"], f"rank_{os.environ['RANK']}.txt"),
        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
        0o644,
    )  # opened before the hook exists, written with os.write: never seen by the hook
    _WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _NO_FD = (None, -1)
    _state = {"busy": False, "torch": False, "safetensors": False}

    def _record(kind, path):
        if isinstance(path, (str, bytes, os.PathLike)):
            line = f"{kind}\t{os.path.abspath(os.fsdecode(path))}\n"
            os.write(_LOG, line.encode("utf-8", "surrogateescape"))

    def _wrap_native_writers():
        module = sys.modules.get("torch.serialization")
        if not _state["torch"] and module is not None and hasattr(module, "_open_zipfile_writer_file"):
            _state["torch"] = True
            cls = module._open_zipfile_writer_file
            init = cls.__init__

            def __init__(self, name, *args, **kwargs):
                _record("open", name)
                return init(self, name, *args, **kwargs)

            cls.__init__ = __init__
        module = sys.modules.get("safetensors.torch")
        if not _state["safetensors"] and module is not None and hasattr(module, "serialize_file"):
            _state["safetensors"] = True
            serialize_file = module.serialize_file

            def wrapped(tensors, filename, *args, **kwargs):
                _record("open", filename)
                return serialize_file(tensors, filename, *args, **kwargs)

            module.serialize_file = wrapped

    def _hook(event, args):
        if _state["busy"]:
            return
        _state["busy"] = True
        try:
            _wrap_native_writers()
            if event == "open":
                path, mode, flags = args
                if isinstance(mode, str):
                    writing = any(c in mode for c in "wax+")
                else:
                    writing = bool((flags or 0) & _WRITING)
                if writing:
                    _record("open", path)
            # names relative to a dir_fd (what shutil.rmtree removes inside its folder) are skipped
            elif event == "os.mkdir" and args[2] in _NO_FD and not os.path.exists(args[0]):
                _record("mkdir", args[0])
            elif event == "os.rename" and args[2] in _NO_FD and args[3] in _NO_FD:
                _record("rename-from", args[0])
                _record("rename-to", args[1])
            elif event == "shutil.rmtree" or (event in ("os.remove", "os.rmdir") and args[1] in _NO_FD):
                _record("remove", args[0])
        finally:
            _state["busy"] = False

    sys.addaudithook(_hook)
"""

DDP = {"max_steps": 12, "save_steps": 4, "eval_steps": 4, "per_device_batch_size": 4}  # no dropout


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data_dir) -> SimpleNamespace:
    """One run of 2 CPU processes (DDP over gloo), every file write of each rank recorded."""
    root = tmp_path_factory.mktemp("ddp")
    out, audit, site = root / "out", root / "audit", root / "site"
    audit.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    recipe = _write(
        root / "ddp.yaml", _recipe(data_dir, out, training={**DDP, "gradient_accumulation_steps": 1})
    )
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = {**ENV, "PYTHONPATH": pythonpath, "AUDIT_DIR": str(audit)}
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(CONFIGS / "cpu_ddp.yaml"),
           "--main_process_port", str(_free_port()), "-m", "hf_slm.train", str(recipe)]  # fmt: skip
    done = _run(cmd, root / "launch", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return SimpleNamespace(out=out, audit=audit, done=done, data=data_dir, root=root)


def _writes(audit: Path, rank: int, inside: Path) -> set[tuple[str, str]]:
    """(event, path relative to ``inside``) of every write of ``rank`` inside the folder ``inside``."""
    inside = inside.resolve()
    found = set()
    for line in (audit / f"rank_{rank}.txt").read_text().splitlines():
        kind, path = line.split("\t", 1)
        path = Path(os.path.realpath(path))
        if path == inside or inside in path.parents:
            found.add((kind, path.relative_to(inside).as_posix()))
    return found


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path, two_processes):
    """2 processes x 4 rows x accumulation 1 = 1 process x 4 rows x accumulation 2: accelerate deals the
    sampler's batches in turn (BatchSamplerShard: batch i to rank i % 2), so step k of both runs sees
    batches 2k and 2k + 1 of the same sampler, and DDP's mean of the 2 gradients is the accumulated
    mean of the single process."""
    ddp = two_processes
    log = json.loads((ddp.out / "training_log.json").read_text())
    assert log["summary"]["num_processes"] == 2 and log["summary"]["steps"] == DDP["max_steps"]

    single = tmp_path / "single"
    with _one_thread():
        summary = train(_recipe(ddp.data, single, training={**DDP, "gradient_accumulation_steps": 2}))
    assert summary["num_processes"] == 1

    hist_1, hist_2 = _history(single), log["history"]
    assert [(h["step"], h.get("epoch"), sorted(h)) for h in hist_2] == [
        (h["step"], h.get("epoch"), sorted(h)) for h in hist_1
    ]
    losses = [(h1["loss"], h2["loss"]) for h1, h2 in zip(hist_1, hist_2) if "loss" in h1]
    evals = [(h1["eval_loss"], h2["eval_loss"]) for h1, h2 in zip(hist_1, hist_2) if "eval_loss" in h1]
    assert len(losses) == DDP["max_steps"] and len(evals) == 3
    worst = max(abs(a - b) / abs(a) for a, b in losses + evals)
    print(f"largest relative loss difference, 2 processes vs 1: {worst:.2e}")
    for a, b in losses + evals:
        assert b == pytest.approx(a, rel=1e-4)
    assert losses[-1][0] < losses[0][0]  # it trained
    a, b = _weights(single), _weights(ddp.out)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.slow
def test_only_the_main_process_writes(two_processes):
    ddp = two_processes
    saved = [s for s in range(1, DDP["max_steps"] + 1) if s % DDP["save_steps"] == 0]  # 4, 8, 12
    rank0, rank1 = _writes(ddp.audit, 0, ddp.out), _writes(ddp.audit, 1, ddp.out)

    # rank 1 writes its RNG state into each checkpoint, and nothing else in the output folder
    own = {("open", f"checkpoints/step_{s}.tmp/random_states_1.pkl") for s in saved}
    assert rank1 == own, (
        f"rank 1 wrote {sorted(rank1 - own)} besides its RNG states; missing: {sorted(own - rank1)}"
    )
    for s in saved[-2:]:  # save_total_limit 2
        assert (ddp.out / "checkpoints" / f"step_{s}" / "random_states_1.pkl").is_file()

    # rank 0 writes the model, the logs and the rest of every checkpoint
    expected = {("open", name) for name in ("model.safetensors", "config.json", "training_log.json",
                                            "loss_curve.png", "train_recipe.yaml")}  # fmt: skip
    for s in saved:
        tmp = f"checkpoints/step_{s}.tmp"
        expected |= {("mkdir", tmp), ("rename-from", tmp), ("rename-to", f"checkpoints/step_{s}")}
        expected |= {("open", f"{tmp}/{name}") for name in ("model.safetensors", "optimizer.bin",
                                                            "scheduler.bin", "random_states_0.pkl",
                                                            LOOP_STATE)}  # fmt: skip
    assert expected <= rank0, f"rank 0 did not write {sorted(expected - rank0)}"
    assert ("open", "checkpoints/step_4.tmp/random_states_1.pkl") not in rank0

    # the messages of the loop and the summary are printed once, by the main process
    stdout = ddp.done.stdout
    for s in saved:
        assert stdout.count(f"step {s}: saved ") == 1, stdout[-3000:]
    assert stdout.count(f"trained {DDP['max_steps']} steps: training loss") == 1
    assert stdout.count(f"step {DDP['max_steps']}: validation loss") == 1
    assert stdout.count('"final_train_loss"') == 1


# ----------------------------------------------------------------------------------- accelerate configs


def _config_problems(path: Path) -> list[str]:
    """What `accelerate launch --config_file path` would not understand: keys that are no field of its
    ClusterConfig, and fsdp_config / deepspeed_config keys that are no option of `accelerate launch`."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    problems = []
    raw = yaml.safe_load(path.read_text())
    fields = set(ClusterConfig.__dataclass_fields__)
    problems += [f"{key} is not a field of ClusterConfig" for key in raw if key not in fields]
    try:
        load_config_from_file(str(path))  # what `accelerate launch` reads the file with
    except (ValueError, TypeError) as err:
        problems.append(f"accelerate cannot load it: {err}")
    # `_validate_launch_command` copies fsdp_config.KEY to the launch argument fsdp_KEY ("fsdp_" prefixed
    # unless already there) and deepspeed_config.KEY to the argument KEY; an unknown one is silently ignored
    options = {
        group.title: {a.dest for a in group._group_actions}
        for group in launch_command_parser()._action_groups
    }
    for section, group, prefix in (("fsdp_config", "FSDP Arguments", "fsdp_"),
                                   ("deepspeed_config", "DeepSpeed Arguments", "")):  # fmt: skip
        for key in raw.get(section) or {}:
            name = key if key.startswith(prefix) else prefix + key
            if name not in options[group]:
                problems.append(f"{section}.{key} is not an option of accelerate launch ({group})")
    return problems


def _launch_environment(path: Path, *args: str) -> tuple[SimpleNamespace, dict[str, str]]:
    """The arguments and environment `accelerate launch --config_file path ARGS -m hf_slm.train r.yaml`
    would start its processes with (nothing is started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parsed = launch_command_parser().parse_args(
        ["--config_file", str(path), *args, "-m", "hf_slm.train", "r.yaml"]
    )
    parsed, defaults, _ = _validate_launch_command(parsed)
    if parsed.use_deepspeed:
        parsed.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(parsed)
    else:
        env = prepare_multi_gpu_env(parsed)
    return parsed, {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


def test_accelerate_configs_are_valid(tmp_path):
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin, patch_environment

    configs = sorted(CONFIGS.glob("*.yaml"))
    assert {p.name for p in configs} >= {"cpu_ddp.yaml", "fsdp.yaml", "deepspeed_zero2.yaml"}
    for path in configs:
        assert _config_problems(path) == [], path.name

    # the check catches a misspelled key at each level
    fsdp = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())
    deepspeed = yaml.safe_load((CONFIGS / "deepspeed_zero2.yaml").read_text())
    misspelled = {
        "num_machine": {**fsdp, "num_machine": 2},
        "fsdp_state_dict_typ": {**fsdp, "fsdp_config": {**fsdp["fsdp_config"], "fsdp_state_dict_typ": "x"}},
        "auto_wrap_policies": {**fsdp, "fsdp_config": {**fsdp["fsdp_config"], "auto_wrap_policies": "x"}},
        "zero_stag": {**deepspeed, "deepspeed_config": {**deepspeed["deepspeed_config"], "zero_stag": 2}},
    }
    for key, config in misspelled.items():
        problems = _config_problems(_write(tmp_path / f"{key}.yaml", config))
        assert problems and all(key in p for p in problems), (key, problems)

    # what the processes would be started with, for one machine and for the second of two machines
    for name in ("fsdp.yaml", "deepspeed_zero2.yaml"):
        text = (CONFIGS / name).read_text()
        assert "-m hf_slm.train RECIPE.yaml" in text and "-m hf_slm.finetune --model" in text
        assert "--machine_rank $RANK" in text and "--main_process_ip $MASTER" in text
        one, _ = _launch_environment(CONFIGS / name, "--num_machines", "1", "--num_processes", "8",
                                     "--main_process_port", "0")  # fmt: skip
        assert (one.num_machines, one.nproc_per_node) == (1, "8")
        two, env = _launch_environment(CONFIGS / name, "--num_machines", "2", "--machine_rank", "1",
                                       "--main_process_ip", "10.0.0.1")  # fmt: skip
        assert (two.nnodes, two.nproc_per_node, int(two.machine_rank)) == ("2", "8", 1)
        with patch_environment(**env):
            if name == "fsdp.yaml":
                plugin = FullyShardedDataParallelPlugin()  # reads FSDP_* as in every launched process
                assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "FULL_STATE_DICT"
                assert plugin.reshard_after_forward is True and plugin.cpu_ram_efficient_loading
                assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
            else:
                plugin = DeepSpeedPlugin()  # deepspeed itself is not needed to build its config
                config = plugin.deepspeed_config
                assert config["zero_optimization"]["stage"] == 2 and config["gradient_clipping"] == 1.0
                assert config["gradient_accumulation_steps"] == "auto"  # filled from the loop's plugin


def test_unreadable_clips_are_skipped_counted_and_listed(tiny_corpus, tmp_path, capsys):
    """`hf-slm train` on a user's audio dataset (a speech LM tokenises it to units itself): a broken file
    costs its row only, and the log and the run summary say which one and why."""
    import soundfile as sf
    from datasets import Audio, Dataset, DatasetDict

    from hf_slm import load_audio

    rows = tiny_corpus["train"].select(range(8))
    paths = []
    for k, row in enumerate(rows):
        paths.append(str(tmp_path / f"clip_{k}.wav"))
        sf.write(paths[-1], load_audio(row["audio"]), 16_000)
    (tmp_path / "broken.wav").write_bytes(Path(paths[0]).read_bytes()[:100])
    (tmp_path / "not_audio.wav").write_text("not audio\n")
    train_paths = [*paths[:6], str(tmp_path / "broken.wav"), str(tmp_path / "not_audio.wav")]
    dsd = DatasetDict(
        train=Dataset.from_dict({"audio": train_paths}), validation=Dataset.from_dict({"audio": paths[6:]})
    ).cast_column("audio", Audio(sampling_rate=16_000))
    dsd.save_to_disk(str(tmp_path / "data"))
    recipe = _recipe(
        tmp_path / "data", tmp_path / "run", training={"max_steps": 2, "per_device_batch_size": 4}
    )
    recipe["model"] = {"model_name_or_path": str(REPO / "zoo" / "speech-lm-tiny")}
    summary = train(recipe)
    assert summary["steps"] == 2
    skipped = summary["skipped_audio"]
    assert [Path(s["path"]).name for s in skipped] == ["broken.wav", "not_audio.wav"]
    assert [s["index"] for s in skipped] == [6, 7] and all(s["error"] for s in skipped)
    printed = capsys.readouterr()
    assert "broken.wav" in printed.out + printed.err and "not_audio.wav" in printed.out + printed.err
    log = json.loads((tmp_path / "run" / "training_log.json").read_text())
    assert log["summary"]["skipped_audio"] == skipped
