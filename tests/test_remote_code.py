"""Remote code (`hf_slm/remote_code.py`): the import rewriting, and every LM of the zoo installed into a
Hugging Face cache, loaded with ``trust_remote_code=True`` in a virtualenv where hf_slm cannot be
imported, giving the same state dict and the same greedy outputs as hf_slm itself."""

from __future__ import annotations

import importlib
import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_slm.remote_code import (
    RemoteCodeError,
    flat_name,
    import_closure,
    remote_code_plan,
    rewrite_module,
    write_remote_code,
)
from hf_slm.zoo import install_zoo

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"
LMS = {"speech-lm-tiny": "AutoModelForCausalLM", "speech-text-lm-tiny": "AutoModelForCausalLM",
       "speech-aware-lm-tiny": "AutoModel"}  # fmt: skip


# --- the import rewriting (a small hf_slm tree of our own) ------------------------------------------------
def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


FAKE = {
    "hf_slm/__init__.py": """
        from hf_slm.audio import load_audio
        from hf_slm.a import x as ex

        __version__ = "9.9"
    """,
    "hf_slm/audio.py": """
        def load_audio(path):
            return f"audio of {path}"
    """,
    "hf_slm/a/__init__.py": "from hf_slm.a.b import x\n",
    "hf_slm/a/b.py": "x = 1\n\ndef double(v):\n    return 2 * v\n",
    "hf_slm/a/c.py": '''
        """A module using hf_slm every way.

            >>> from hf_slm.a.b import x   (a doctest line: text, not an import)
        """

        from __future__ import annotations

        import os, hf_slm.a.b as bee
        from hf_slm.a.b import x
        from hf_slm import load_audio, ex as y
        from . import b
        import hf_slm.audio


        def f():
            from hf_slm.a.b import (
                double,
                x as z,
            )

            return z + y + bee.x + b.x, double(2), load_audio("a.wav"), hf_slm.audio.load_audio("b.wav"), os.sep
    ''',
}


def test_rewrites_every_import_of_hf_slm_into_flat_siblings(tmp_path):
    root = _tree(tmp_path / "src", FAKE)
    code, needed = rewrite_module((root / "hf_slm/a/c.py").read_text(), "hf_slm.a.c", root)
    assert needed == ["hf_slm.a.b", "hf_slm.audio"]
    lines = code.splitlines()
    assert "    >>> from hf_slm.a.b import x   (a doctest line: text, not an import)" in lines  # untouched
    assert "from .hf_slm_a_b import x" in lines
    # a package's re-exports resolve to the module that defines each name
    assert "from .hf_slm_audio import load_audio" in lines and "from .hf_slm_a_b import x as y" in lines
    # a module bound by name: a `from .x import` line (what transformers follows), then the binding
    assert lines[lines.index("import os") + 1 : lines.index("import os") + 3] == [
        "from .hf_slm_a_b import __name__ as _hf_slm_a_b__name__",
        "from . import hf_slm_a_b as bee",
    ]
    assert "from . import hf_slm_a_b as b" in lines  # a relative import of a submodule
    assert "from . import hf_slm_audio" in lines  # bare `import hf_slm.audio` ...
    assert "hf_slm_audio.load_audio('b.wav')" in code.replace('"', "'")  # ... and its uses renamed
    assert "    from .hf_slm_a_b import double, x as z" in lines  # inside a function, indented
    assert "hf_slm." not in code.replace(">>> from hf_slm.a.b", "")

    # transformers finds the same sibling files, and asks for no hf_slm package
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    out = tmp_path / "flat"
    out.mkdir()
    closure = import_closure(["hf_slm.a.c"], root)
    assert list(closure) == ["hf_slm.a.c", "hf_slm.a.b", "hf_slm.audio"]
    for module, text in closure.items():
        (out / f"{flat_name(module)}.py").write_text(text)
    (out / "__init__.py").write_text("")
    assert sorted(get_relative_imports(out / "hf_slm_a_c.py")) == ["hf_slm_a_b", "hf_slm_audio"]
    assert "hf_slm" not in get_imports(out / "hf_slm_a_c.py")

    # and the flat files run as a package: every rewritten import resolves
    sys.path.insert(0, str(tmp_path))
    try:
        flat = importlib.import_module("flat.hf_slm_a_c")
        assert flat.f() == (4, 4, "audio of a.wav", "audio of b.wav", os.sep)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "flat" or m.startswith("flat.")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    "source,message",
    [
        ("from hf_slm import __version__\n", "defined in the package hf_slm's __init__"),
        ("import hf_slm.a\n", "binds a package"),
        ("x = 1; from hf_slm.a.b import x\n", "on a line of its own"),
        ("from hf_slm.nope import x\n", "no module hf_slm.nope"),
    ],
)
def test_refuses_what_cannot_be_flattened(tmp_path, source, message):
    root = _tree(tmp_path / "src", FAKE)
    with pytest.raises(RemoteCodeError, match=message):
        rewrite_module(source, "hf_slm.a.d", root)


def test_plan_follows_the_auto_registrations():
    plan = remote_code_plan("hf_slm_speech_aware_lm")
    model = "hf_slm_models_speech_aware_lm_modeling_speech_aware_lm.SpeechAwareLMForConditionalGeneration"
    assert plan.config_auto_map == {
        "AutoConfig": "hf_slm_models_speech_aware_lm_configuration_speech_aware_lm.SpeechAwareLMConfig",
        "AutoModel": model,
        "AutoModelForSpeechSeq2Seq": model,
    }
    assert set(remote_code_plan("hf_slm_speech_lm").config_auto_map) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForCausalLM",
    }
    assert remote_code_plan("hubert") is None  # transformers' own: no code needed
    with pytest.raises(RemoteCodeError, match="not registered"):
        remote_code_plan("hf_slm_nope")


def test_writes_into_a_copy_of_a_zoo_folder(tmp_path):
    import shutil

    folder = tmp_path / "units"
    shutil.copytree(ZOO / "units-mfcc-256", folder)
    written = [Path(p).name for p in write_remote_code(folder)]
    assert written[-1] == "config.json" and "hf_slm_units_modeling_unit_tokenizer.py" in written
    header = (folder / "hf_slm_units_kmeans.py").read_text().splitlines()[0]
    assert header.startswith("# Generated from hf-slm ") and "hf_slm.units.kmeans" in header
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "hf_slm_units_configuration_unit_tokenizer.SpeechUnitTokenizerConfig",
        "AutoModel": "hf_slm_units_modeling_unit_tokenizer.SpeechUnitTokenizer",
    }
    before = json.loads((ZOO / "units-mfcc-256" / "config.json").read_text())
    assert {k: v for k, v in config.items() if k != "auto_map"} == before  # nothing else changed


# --- loading without hf_slm ---------------------------------------------------------------------------------
RUN = r'''
"""Load each model as a user does and run it once (greedy); print JSON. Runs with or without hf_slm."""
import json
import sys

import soundfile as sf
import torch
from safetensors.torch import load_file
import transformers
from transformers import AutoConfig, AutoProcessor


def run(sources, zoo, clip, autos):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for name, source in sources.items():
            config = AutoConfig.from_pretrained(source, trust_remote_code=True)
            model = getattr(transformers, autos[name]).from_pretrained(source, trust_remote_code=True).eval()
            proc = AutoProcessor.from_pretrained(source, trust_remote_code=True)
            stored = load_file(f"{zoo}/{name}/model.safetensors")
            state = model.state_dict()
            same = all(k in state and torch.equal(state[k], v) for k, v in stored.items())
            with torch.no_grad():
                wave = []
                if name == "speech-lm-tiny":  # continue its first second in units, voiced by the vocoder
                    audio, rate = sf.read(clip, dtype="float32")
                    inputs = proc(audio=audio[:rate], sampling_rate=rate)
                    ids = model.generate(**inputs, do_sample=False, min_new_tokens=8, max_new_tokens=12)
                    prompt = model.encode_audio(**inputs, add_eos=False)["input_ids"].shape[1]
                    wave = model.decode_speech(ids[:, prompt:])[0].tolist()
                    text = None
                elif name == "speech-text-lm-tiny":  # speech recognition
                    inputs = proc(audio=clip, task="asr")
                    ids = model.generate(**inputs, do_sample=False, max_new_tokens=12)
                    prompt = inputs["input_ids"].shape[1]
                    text = proc.batch_decode(ids[:, prompt:], skip_special_tokens=True)[0]
                else:  # the chat template: an audio item and an instruction
                    chat = [{"role": "user", "content": [{"type": "audio", "audio": clip},
                                                         {"type": "text", "text": "transcribe the audio"}]}]
                    inputs = proc.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True, return_tensors="pt")
                    ids = model.generate(**inputs, do_sample=False, max_new_tokens=12)
                    prompt = inputs["input_ids"].shape[1]
                    text = proc.batch_decode(ids[:, prompt:], skip_special_tokens=True, answer_only=True)[0]
            out[name] = {
                "classes": [type(o).__module__ + "." + type(o).__name__ for o in (config, model, proc)],
                "same_state": same,
                "stored_tensors": len(stored),
                "ids": ids.tolist(),
                "new_tokens": ids.shape[1] - prompt,
                "text": text,
                "wave": wave,
            }
    finally:
        torch.set_num_threads(threads)
    out["hf_slm_imported"] = "hf_slm" in sys.modules
    return out


if __name__ == "__main__":
    print(json.dumps(run(*(json.loads(a) for a in sys.argv[1:]))))
'''


@pytest.fixture(scope="module")
def venv_without_hf_slm(tmp_path_factory) -> Path:
    """A virtualenv of the same interpreter whose only packages are this venv's site-packages, added by a
    ``.pth`` line: the folder joins ``sys.path`` but the ``.pth`` files in it are not processed, so hf_slm's
    editable-install finder never runs and ``import hf_slm`` fails (run from a folder that has no hf_slm)."""
    import site
    import sysconfig

    base = Path(tmp_path_factory.mktemp("venv"))
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    packages = Path(sysconfig.get_paths()["purelib"])
    assert packages in map(Path, site.getsitepackages())
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (Path(target) / "hf_slm_test_site.pth").write_text(f"{packages}\n")
    probe = "import importlib.util as u, torch, transformers; print(u.find_spec('hf_slm') is None)"
    done = subprocess.run([str(python), "-c", probe], cwd=base, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
    failed = subprocess.run([str(python), "-c", "import hf_slm"], cwd=base, capture_output=True, text=True)
    assert failed.returncode != 0 and "No module named 'hf_slm'" in failed.stderr
    return python


@pytest.mark.slow
def test_zoo_lms_load_with_trust_remote_code_without_hf_slm(venv_without_hf_slm, tiny_corpus, tmp_path):
    import soundfile as sf

    from hf_slm import load_audio

    cache = tmp_path / "hub"
    done = install_zoo(list(LMS), root=ZOO, cache_dir=cache)
    for item in done:  # the snapshot has the code and the auto_map, through blobs like every file
        snapshot = Path(item["snapshot"])
        config = json.loads((snapshot / "config.json").read_text())
        module = config["auto_map"]["AutoConfig"].split(".")[0]
        assert (snapshot / f"{module}.py").is_symlink() and (
            snapshot / f"{module}.py"
        ).resolve().parent.name == "blobs"
        assert "AutoProcessor" in json.loads((snapshot / "processor_config.json").read_text())["auto_map"]

    clip = tmp_path / "clip.wav"
    sf.write(clip, load_audio(tiny_corpus["test"][0]["audio"]), 16_000)
    script = tmp_path / "run_models.py"
    script.write_text(RUN)
    work = tmp_path / "work"  # no hf_slm folder next to the script or in the working directory
    work.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}  # fmt: skip
    sources = {name: f"hf-slm/{name}" for name in LMS}
    args = [json.dumps(a) for a in (sources, str(ZOO), str(clip), LMS)]
    proc = subprocess.run([str(venv_without_hf_slm), str(script), *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    remote = json.loads(proc.stdout.strip().splitlines()[-1])
    assert remote.pop("hf_slm_imported") is False

    # the same, in this process, with hf_slm: from the zoo folders as they are
    local = runpy.run_path(str(script))["run"]({n: str(ZOO / n) for n in LMS}, str(ZOO), str(clip), LMS)
    assert local.pop("hf_slm_imported") is True
    for name in LMS:
        r, here = remote[name], local[name]
        assert all(c.startswith("transformers_modules.hf_hyphen_slm.") for c in r["classes"]), r["classes"]
        assert all(c.startswith("hf_slm.") for c in here["classes"]), here["classes"]
        assert [c.rsplit(".", 1)[1] for c in r["classes"]] == [c.rsplit(".", 1)[1] for c in here["classes"]]
        assert r["same_state"] and here["same_state"] and r["stored_tensors"] > 0, name
        assert r["ids"] == here["ids"], name  # greedy: the same tokens
        assert r["text"] == here["text"], name
        assert r["new_tokens"] > 0 and (r["text"] is None or r["text"].strip()), (name, r["text"])
        assert r["wave"] == pytest.approx(here["wave"], abs=1e-5), name
    assert len(remote["speech-lm-tiny"]["wave"]) > 1600  # the continuation voiced: > 0.1 s


# --- zoo install / push with and without the code ---------------------------------------------------------
def test_install_and_push_add_the_code_and_leave_the_zoo_alone(tmp_path):
    from hf_slm.cli import main as cli_main
    from hf_slm.zoo import push_to_hub

    zoo_files = {p: p.read_bytes() for p in (ZOO / "speech-lm-tiny").glob("*.json")}
    seen = {}

    class Api:  # what push_to_hub asks of huggingface_hub.HfApi, recording the folder while it exists
        def create_repo(self, **kwargs):
            return f"https://huggingface.co/{kwargs['repo_id']}"

        def upload_folder(self, folder_path, **kwargs):
            folder = Path(folder_path)
            seen[folder_path] = {
                "files": sorted(p.name for p in folder.iterdir()),
                "config": json.loads((folder / "config.json").read_text()),
                "weights": (folder / "model.safetensors").resolve(),
            }
            return "https://huggingface.co/some/commit"

    plan = push_to_hub("speech-lm-tiny", "someone/x", root=ZOO, api=Api())
    (folder, upload), = seen.items()  # fmt: skip
    assert folder != str(ZOO / "speech-lm-tiny") and not Path(folder).exists()  # a temporary copy, removed
    assert (
        "hf_slm_models_speech_lm_modeling_speech_lm.py" in upload["files"] and "README.md" in upload["files"]
    )
    assert set(upload["files"]) == set(plan["files"])
    assert upload["config"]["auto_map"]["AutoModelForCausalLM"].endswith(".SpeechLMForCausalLM")
    assert upload["weights"] == ZOO / "speech-lm-tiny" / "model.safetensors"  # linked, not copied
    seen.clear()
    push_to_hub("speech-lm-tiny", "someone/x", root=ZOO, api=Api(), remote_code=False)
    assert list(seen) == [str(ZOO / "speech-lm-tiny")]
    assert {p: p.read_bytes() for p in (ZOO / "speech-lm-tiny").glob("*.json")} == zoo_files

    # install: the code by default, the folder as it is with --no-remote-code; encoders get no code
    names = ["speech-lm-tiny", "ctc-phones-tiny"]
    for flag, cache in (([], tmp_path / "with"), (["--no-remote-code"], tmp_path / "without")):
        assert cli_main(["zoo", "install", *names, "--cache-dir", str(cache), *flag]) == 0
    for name in names:
        source = sorted(p.name for p in (ZOO / name).iterdir())
        with_code, without = (
            next((cache / f"models--hf-slm--{name}" / "snapshots").iterdir())
            for cache in (tmp_path / "with", tmp_path / "without")
        )
        assert sorted(p.name for p in without.iterdir()) == source
        extra = sorted(set(p.name for p in with_code.iterdir()) - set(source))
        code = (
            [] if name == "ctc-phones-tiny" else import_closure(remote_code_plan("hf_slm_speech_lm").modules)
        )
        assert extra == sorted(f"{flat_name(m)}.py" for m in code)
        assert ("auto_map" in json.loads((with_code / "config.json").read_text())) == (
            name == "speech-lm-tiny"
        )
        assert (with_code.name == without.name) == (name == "ctc-phones-tiny")  # the revision covers the code
    assert {p: p.read_bytes() for p in (ZOO / "speech-lm-tiny").glob("*.json")} == zoo_files
