"""transformers' own common test mixins, taken from the source distribution of the installed version.

transformers does not ship its tests in the wheel. Its source distribution on PyPI carries
`tests/test_modeling_common.py`, `tests/test_configuration_common.py` and
`tests/test_processing_common.py`, which hold `ModelTesterMixin`, `ConfigTester` and
`ProcessorTesterMixin`: the tests every model of transformers must pass. This module downloads that
distribution once (`pip download --no-binary :all: --no-deps transformers==<installed>`) into a cache
outside the repository (`$HF_SLM_TRANSFORMERS_TESTS`, default `~/.cache/hf-slm/transformers-tests`),
extracts the three files into a package there, and imports the mixins from it, as a dependency.

Those files import four modules of transformers' repository that the source distribution leaves
out; ours stand in for them (they are ours, nothing of transformers' test code is in this repository):
- `generation/test_utils.py` (`GenerationTesterMixin`): `generation_common.py`, our own tests of
  `generate` on our models.
- `exporters/test_export.py` (`ExportTesterMixin`): `export_common.py`, our `torch.export` test.
- `utils/test_configuration_utils.py` (`config_common_kwargs`): non-default values for the
  attributes every `PreTrainedConfig` has (below).
- `fetch_hub_objects_for_ci.py` (`url_to_local_path`): the processor tests' sample media. Only audio
  applies to our processors; every audio URL maps to a clip spoken by espeak-ng into the cache.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import transformers

PACKAGE = "transformers_common_tests"
FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_processing_common.py")


def cache_root() -> Path:
    default = Path.home() / ".cache" / "hf-slm" / "transformers-tests"
    return Path(os.environ.get("HF_SLM_TRANSFORMERS_TESTS", default)) / transformers.__version__


def fetch() -> Path:
    """The folder holding the package of transformers' common test files (downloaded on first use)."""
    root = cache_root()
    package = root / PACKAGE
    if all((package / f).is_file() for f in FILES):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
               f"transformers=={transformers.__version__}", "-d", tmp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("transformers-*.tar.gz"))
        if done.returncode or not archives:
            raise RuntimeError(
                f"could not download the transformers {transformers.__version__} source distribution "
                f"(it carries the common model tests): {done.stderr[-2000:]}\nrun `{' '.join(cmd)}` by hand"
            )
        staging = Path(tmp) / PACKAGE
        staging.mkdir()
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) == 3 and parts[1] == "tests" and parts[2] in FILES:
                    source = tar.extractfile(member)
                    (staging / parts[2]).write_bytes(source.read())
        missing = [f for f in FILES if not (staging / f).is_file()]
        if missing:
            raise RuntimeError(f"the transformers source distribution lacks {missing}")
        (staging / "__init__.py").write_text("")
        if package.exists():  # a partial earlier extraction
            import shutil

            shutil.rmtree(package)
        staging.rename(package)  # atomic: a parallel run sees all files or none
    return root


# Non-default values of the attributes every PreTrainedConfig has (what ConfigTester checks a
# config's __init__ passes on; ours).
config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "tie_word_embeddings": True,
    "is_encoder_decoder": True,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
    "chunk_size_feed_forward": 5,
    "pad_token_id": 2,
    "bos_token_id": 3,
    "eos_token_id": 4,
    "sep_token_id": 5,
    "decoder_start_token_id": 6,
    "cross_attention_hidden_size": 128,
    "add_cross_attention": True,
    "is_decoder": True,
    "tokenizer_class": "BertTokenizerFast",
    "prefix": "Prefix",
    "task_specific_params": {"translation": "some_params"},
    "finetuning_task": "translation",
}


def _sample_audio(url: str) -> str:
    """A local clip for one of the processor tests' sample URLs (espeak-ng speech, any URL)."""
    if not url.startswith("http"):
        return url
    name = Path(url).stem
    out = cache_root() / "media" / f"{name}.wav"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.wav")
        subprocess.run(["espeak-ng", "-w", str(tmp), "a sample clip for the processor tests"], check=True)
        tmp.rename(out)
    return str(out)


def _install_stand_ins() -> None:
    import export_common
    import generation_common

    def module(name: str, **attrs: object) -> None:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod

    module(f"{PACKAGE}.generation", __path__=[])
    module(f"{PACKAGE}.generation.test_utils", GenerationTesterMixin=generation_common.GenerationTesterMixin)
    module(f"{PACKAGE}.exporters", __path__=[])
    module(f"{PACKAGE}.exporters.test_export", ExportTesterMixin=export_common.ExportTesterMixin)
    module(f"{PACKAGE}.utils", __path__=[])
    module(f"{PACKAGE}.utils.test_configuration_utils", config_common_kwargs=config_common_kwargs)
    module("fetch_hub_objects_for_ci", url_to_local_path=_sample_audio)


def load(name: str) -> types.ModuleType:
    """One of transformers' common test modules, e.g. `load("test_modeling_common")`."""
    root = str(fetch())
    if root not in sys.path:
        sys.path.insert(0, root)
    if f"{PACKAGE}.generation.test_utils" not in sys.modules:
        importlib.import_module(PACKAGE)
        _install_stand_ins()
    return importlib.import_module(f"{PACKAGE}.{name}")


def as_in_tree(module: types.ModuleType, mapping: str, model_type: str, class_name: str) -> None:
    """Let a common test module see our class in one of transformers' `*_MAPPING_NAMES` tables, as an
    in-tree model would be (e.g. `MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`, which decides which tests treat a
    class as a causal LM). Only that module's own reference is replaced: transformers' table is untouched."""
    table = dict(getattr(module, mapping))
    table[model_type] = class_name
    setattr(module, mapping, table)


def model_tests() -> tuple[types.ModuleType, type]:
    """`test_modeling_common` (`ModelTesterMixin`, `ids_tensor`, ...) and `ConfigTester`."""
    return load("test_modeling_common"), load("test_configuration_common").ConfigTester
