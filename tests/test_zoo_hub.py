"""The zoo as Hub repos: `hf-slm zoo list`, `zoo install` into the Hugging Face cache (then loading by
Hub id offline, in a fresh process, as a user does), and the call plan of `zoo push`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_slm.cli import main as cli_main
from hf_slm.zoo import ZooError, install_zoo, list_zoo, push_to_hub

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"
LMS = ["speech-aware-lm-tiny", "speech-lm-tiny", "speech-text-lm-tiny"]


def test_list_reads_kinds_sizes_and_the_cards_results(capsys):
    entries = {e.name: e for e in list_zoo(ZOO)}
    assert {"speech-lm-tiny", "speech-text-lm-tiny", "speech-aware-lm-tiny", "units-hubert-256"} <= set(
        entries
    )
    assert (
        entries["speech-lm-tiny"].kind == "speech LM" and entries["units-mfcc-256"].kind == "unit tokenizer"
    )
    from safetensors.torch import load_file

    weights = load_file(str(ZOO / "speech-lm-tiny" / "model.safetensors"))
    assert entries["speech-lm-tiny"].parameters == sum(t.numel() for t in weights.values())
    asr = [r for r in entries["speech-text-lm-tiny"].results if r["task"] == "automatic-speech-recognition"]
    card = (ZOO / "speech-text-lm-tiny" / "README.md").read_text()
    assert asr and f"value: {asr[0]['value']}" in card  # the number comes from the card's model-index
    assert cli_main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "speech-aware-lm-tiny" in out and "speech+text LM" in out and "MB" in out


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf") / "hub"
    assert cli_main(["zoo", "install", *LMS, "--cache-dir", str(cache)]) == 0
    return cache


def test_install_writes_the_hub_cache_layout(hub_cache):
    from huggingface_hub import scan_cache_dir

    repos = {r.repo_id: r for r in scan_cache_dir(hub_cache).repos}
    assert set(repos) == {f"hf-slm/{n}" for n in LMS}
    for name in LMS:
        repo = hub_cache / f"models--hf-slm--{name}"
        revision = (repo / "refs" / "main").read_text()
        assert len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)
        snapshot = repo / "snapshots" / revision
        source = sorted(p.relative_to(ZOO / name) for p in (ZOO / name).rglob("*") if p.is_file())
        files = sorted(p.relative_to(snapshot) for p in snapshot.rglob("*") if p.is_file())
        code = [rel for rel in files if rel.suffix == ".py"]  # the remote code (tests/test_remote_code.py)
        assert sorted(set(files) - set(code)) == source and code
        for rel in files:
            link = snapshot / rel
            assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative, as the Hub's
            blob = link.resolve()
            assert blob.parent.name == "blobs" and blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()
            if rel.suffix != ".py" and rel.name not in ("config.json", "processor_config.json"):
                assert blob.read_bytes() == (ZOO / name / rel).read_bytes()
        assert set(repos[f"hf-slm/{name}"].refs) == {"main"}
    # installing again changes nothing: same revision, no second copy of any blob
    before = sorted(p.name for p in hub_cache.rglob("blobs/*"))
    again = install_zoo(LMS[:1], root=ZOO, cache_dir=hub_cache)
    assert again[0]["revision"] == (hub_cache / f"models--hf-slm--{LMS[0]}" / "refs" / "main").read_text()
    assert sorted(p.name for p in hub_cache.rglob("blobs/*")) == before


LOAD_BY_ID = r"""
import json, sys
import numpy as np, torch
import hf_slm
from transformers import AutoModel, AutoModelForCausalLM, AutoProcessor, pipeline
from safetensors.torch import load_file

zoo = sys.argv[1]
out = {}
for name, auto in (("speech-lm-tiny", AutoModelForCausalLM), ("speech-text-lm-tiny", AutoModelForCausalLM),
                   ("speech-aware-lm-tiny", AutoModel)):
    model = auto.from_pretrained(f"hf-slm/{name}")
    AutoProcessor.from_pretrained(f"hf-slm/{name}")
    stored = load_file(f"{zoo}/{name}/model.safetensors")
    state = model.state_dict()
    out[name] = {"path": model.name_or_path, "same": all(torch.equal(state[k].float(), v.float())
                                                         for k, v in stored.items() if k in state)}
wave = hf_slm.load_audio(sys.argv[2])
# the first second as the prompt: a whole sentence is often continued by its end
cont = pipeline("speech-continuation", model="hf-slm/speech-lm-tiny")(wave[:16000], sampling_rate=16000,
                                                                     max_new_tokens=30, seed=0)
out["continuation_units"] = len(cont["units"])
out["continuation_seconds"] = len(cont["audio"]) / cont["sampling_rate"]
asr = pipeline("automatic-speech-recognition", model="hf-slm/speech-aware-lm-tiny")
out["asr"] = asr({"raw": wave, "sampling_rate": 16000})["text"]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_models_load_by_hub_id_offline_in_a_fresh_process(hub_cache, tiny_corpus, tmp_path):
    import soundfile as sf

    from hf_slm import load_audio

    clip = tmp_path / "clip.wav"
    row = tiny_corpus["test"][0]
    sf.write(clip, load_audio(row["audio"]), 16_000)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "OMP_NUM_THREADS": "1"}
    env.pop("HF_SLM_ZOO", None)
    done = subprocess.run([sys.executable, "-c", LOAD_BY_ID, str(ZOO), str(clip)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for name in LMS:
        assert out[name]["same"], name
        assert str(hub_cache) in out[name]["path"] or out[name]["path"] == f"hf-slm/{name}"
    assert out["continuation_units"] > 0 and out["continuation_seconds"] > 0
    assert isinstance(out["asr"], str) and out["asr"].strip()

    # without the install, the same id fails offline: the cache is what made it resolve
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    done = subprocess.run([sys.executable, "-c", "import hf_slm; from transformers import AutoModel; "
                           "AutoModel.from_pretrained('hf-slm/speech-lm-tiny')"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0


class _FakeApi:
    """Records what `push_to_hub` asks of `huggingface_hub.HfApi` (the Hub cannot be reached here)."""

    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "https://huggingface.co/some/commit"


def test_push_plan_and_offline_refusal(capsys):
    api = _FakeApi()
    plan = push_to_hub(
        "speech-lm-tiny", "someone/speech-lm-tiny", root=ZOO, private=True, api=api, remote_code=False
    )
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    create, upload = api.calls[0][1], api.calls[1][1]
    assert create == {
        "repo_id": "someone/speech-lm-tiny",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    assert (
        upload["folder_path"] == str(ZOO / "speech-lm-tiny") and upload["repo_id"] == "someone/speech-lm-tiny"
    )
    assert {"README.md", "config.json", "model.safetensors"} <= set(plan["files"])
    # this machine is offline: the real call refuses with the reason and the fix
    assert cli_main(["zoo", "push", "speech-lm-tiny", "--repo-id", "someone/x"]) == 2
    assert "HF_HUB_OFFLINE=1 is set" in capsys.readouterr().err
    with pytest.raises(ZooError, match="no zoo folder 'nope'"):
        push_to_hub("nope", "someone/x", root=ZOO, api=api)
    with pytest.raises(ZooError, match="no zoo folder"):
        install_zoo(["nope"], root=ZOO, cache_dir="/tmp/unused-hf-cache")


def _numbers(node) -> set[float]:
    if isinstance(node, dict):
        return set().union(*(_numbers(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_numbers(v) for v in node)) if node else set()
    return {node} if isinstance(node, float) else set()


@pytest.mark.parametrize("name", LMS)
def test_cards_hold_what_the_hub_shows_and_numbers_come_from_results(name):
    """Card metadata the Hub reads, the recipe that reproduces the folder, and a model-index whose every
    number is one of the folder's measured results (eval_*.json), not typed by hand."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(ZOO / name / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.license and data.pipeline_tag and data.datasets
    assert "hf-slm" in data.tags and data.base_model  # composed from zoo parts: hf-slm/<part>
    assert all(b.startswith("hf-slm/") and (ZOO / b.split("/")[1]).is_dir() for b in data.base_model)
    assert f"hf-slm recipe run modeling/recipes/{name}.yaml" in card.text
    measured = set()
    for path in (ZOO / name).glob("*.json"):
        if path.name.startswith("eval") or path.name.startswith("topline"):
            measured |= {round(x, 4) for x in _numbers(json.loads(path.read_text()))}
    assert data.eval_results
    for result in data.eval_results:
        assert round(result.metric_value, 4) in measured, (
            result.task_name or result.task_type,
            result.metric_value,
        )


# The zoo's components and the measurement each card's model-index records (a JSON kept in the folder).
COMPONENTS = {
    "ctc-phones-tiny": "training_log.json",  # phone error rate on validation, at the end of training
    "hubert-tiny-it1": "resynthesis.json",  # the resynthesis of its layer-3 k-means units
    "units-ctc-phones": "resynthesis.json",
    "units-hubert-256": "resynthesis.json",
    "units-mfcc-256": "resynthesis.json",
    "vocoder-ctc-phones": "resynthesis.json",
    "vocoder-hubert-256": "resynthesis.json",
    "vocoder-mfcc-256": "resynthesis.json",
}


def _measured(folder: Path) -> set[float]:
    """The folder's measured results: every number of its evaluation JSONs, and the evaluations logged at the
    end of training (not the training losses)."""
    measured = set()
    for path in folder.glob("*.json"):
        if path.name.startswith(("eval", "topline", "resynthesis")):
            measured |= {round(x, 4) for x in _numbers(json.loads(path.read_text()))}
    log = folder / "training_log.json"
    if log.is_file():
        for entry in json.loads(log.read_text()).get("history", []):
            measured |= {round(v, 4) for k, v in entry.items() if k.endswith("error_rate")}
    return measured


def test_every_zoo_folder_is_covered():
    assert set(COMPONENTS) | set(LMS) == {p.name for p in ZOO.iterdir() if (p / "README.md").is_file()}


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_cards_carry_a_model_index_of_measured_results(name):
    """Every component card has a model-index, and every number in it is one of the folder's measured results
    (the JSON of the measurement stays in the folder), not typed by hand."""
    from huggingface_hub import ModelCard

    folder = ZOO / name
    assert (folder / COMPONENTS[name]).is_file()
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.license and data.datasets and "hf-slm" in data.tags
    assert "hf-slm recipe run modeling/recipes/" in card.text and "## Results" in card.text
    assert data.eval_results, f"{name}: no model-index"
    measured = _measured(folder)
    for result in data.eval_results:
        assert result.dataset_split in ("validation", "test")  # voices never heard in training
        assert round(result.metric_value, 4) in measured, (
            result.task_name,
            result.metric_name,
            result.metric_value,
        )
