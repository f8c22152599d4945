"""The zoo as Hub repos: list it, install it into the local Hugging Face cache, push it.

``hf-slm zoo list`` prints the zoo (family, parameters, size, the results its card records);
``hf-slm zoo install`` writes every folder of ``zoo/`` into the Hugging Face cache exactly as a
download from the Hub would leave it (``models--hf-slm--<name>/blobs``, ``snapshots/<revision>/``,
``refs/main``), so that with ``HF_HUB_OFFLINE=1``::

    AutoModel.from_pretrained("hf-slm/speech-lm-tiny")
    pipeline("speech-continuation", model="hf-slm/speech-lm-tiny")

resolve offline as they would from the Hub; ``hf-slm zoo push NAME --repo-id ID`` uploads a folder
with `huggingface_hub` (``create_repo`` then ``upload_folder``) where the Hub is reachable.

Both add the models' remote code by default (``hf_slm/remote_code.py``: flat copies of the hf-slm
modules a model needs and ``auto_map`` in its ``config.json`` / ``processor_config.json``), so that the
repos also load with ``trust_remote_code=True`` where hf-slm is not installed; ``--no-remote-code``
installs or pushes the folders as they are.

The cache layout is written here by hand (``huggingface_hub`` only fills its cache by downloading):
blobs named by the SHA-256 of their bytes, relative symlinks from the snapshot to them (plain copies
where the file system has no symlinks), the revision a 40-hex digest of the folder's files, and
``refs/main`` holding it. ``huggingface_hub.scan_cache_dir`` reads it back as a model repo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_ORG",
    "ZooEntry",
    "ZooError",
    "install_zoo",
    "list_zoo",
    "push_to_hub",
    "zoo_dir",
]

DEFAULT_ORG = "hf-slm"
FAMILIES = {
    "hf_slm_speech_lm": "speech LM",
    "hf_slm_speech_text_lm": "speech+text LM",
    "hf_slm_speech_aware_lm": "speech-aware LM",
    "hf_slm_unit_tokenizer": "unit tokenizer",
    "hf_slm_unit_vocoder": "unit vocoder",
}


class ZooError(ValueError):
    """A zoo request that cannot be carried out, with what to do about it."""


def zoo_dir() -> Path:
    """The bundled zoo: ``$HF_SLM_ZOO`` if set, else ``zoo/`` of the repository hf_slm runs from."""
    if os.environ.get("HF_SLM_ZOO"):
        return Path(os.environ["HF_SLM_ZOO"])
    return Path(__file__).resolve().parents[1] / "zoo"


@dataclass
class ZooEntry:
    """One folder of the zoo."""

    name: str
    path: Path
    model_type: str
    kind: str
    parameters: int
    bytes: int
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def repo_id(self) -> str:
        return f"{DEFAULT_ORG}/{self.name}"


def _parameters(folder: Path) -> int:
    """Parameters stored in the folder's safetensors files, read from their headers (nothing loaded)."""
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        for key, info in header.items():
            if key != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= d
                total += n
    return total


def _card_results(folder: Path) -> list[dict[str, Any]]:
    """The results recorded in the card's ``model-index`` (written by the export commands from measurements)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return []
    from huggingface_hub import ModelCard

    data = ModelCard.load(readme).data
    out = []
    for r in data.eval_results or []:
        name = r.task_name or r.task_type
        metric = r.metric_type or r.metric_name
        out.append({"task": name, "metric": metric, "value": r.metric_value, "dataset": r.dataset_name})
    return out


def list_zoo(root: str | os.PathLike | None = None) -> list[ZooEntry]:
    """Every model folder of the zoo (folders with a ``config.json``), sorted by name."""
    root = Path(root) if root is not None else zoo_dir()
    if not root.is_dir():
        raise ZooError(f"{root} is not a folder: pass the zoo folder (a clone of hf-slm has one in zoo/)")
    entries = []
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        config = json.loads((folder / "config.json").read_text())
        model_type = config.get("model_type", "?")
        kind = FAMILIES.get(model_type)
        if kind is None:  # a transformers encoder trained by hf-slm (HuBERT pretraining, CTC phones)
            kind = f"{model_type} encoder"
        entries.append(
            ZooEntry(
                name=folder.name,
                path=folder,
                model_type=model_type,
                kind=kind,
                parameters=_parameters(folder),
                bytes=sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
                results=_card_results(folder),
            )
        )
    return entries


def print_zoo(entries: list[ZooEntry], max_results: int = 3) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"the hf-slm zoo ({len(entries)} folders)")
    for column in ("name", "kind", "parameters", "size", "results (from the card)"):
        table.add_column(column, justify="right" if column in ("parameters", "size") else "left")
    for e in entries:
        shown = [f"{r['task']}: {r['metric']} {r['value']:.3g}" for r in e.results[:max_results]]
        if len(e.results) > max_results:
            shown.append(f"(+{len(e.results) - max_results} more)")
        table.add_row(
            e.name, e.kind, f"{e.parameters / 1e6:.2f}M", f"{e.bytes / 1e6:.1f} MB", "\n".join(shown) or "—"
        )
    Console(width=max(120, shutil.get_terminal_size().columns)).print(table)


# -- the local Hub cache ------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _revision(files: dict[str, str]) -> str:
    """A 40-hex revision for a folder: the SHA-1 of its file names and contents' hashes (stable)."""
    return hashlib.sha1("".join(f"{name}\0{h}\n" for name, h in sorted(files.items())).encode()).hexdigest()


def _place(blob: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        target.symlink_to(os.path.relpath(blob, target.parent))
    except OSError:  # no symlinks here (e.g. some Windows set-ups): a copy, as huggingface_hub does
        shutil.copy2(blob, target)


def install_zoo(
    names: list[str] | None = None,
    *,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    org: str = DEFAULT_ORG,
    remote_code: bool = True,
) -> list[dict[str, str]]:
    """Write zoo folders into the Hugging Face cache as ``<org>/<name>`` repos.

    Args:
        names (`list[str]`, *optional*): the folders to install (default: all).
        root: the zoo folder (default: [`zoo_dir`]).
        cache_dir: the hub cache (default: ``huggingface_hub.constants.HF_HUB_CACHE``, i.e.
            ``$HF_HUB_CACHE`` or ``$HF_HOME/hub``).
        org (`str`): the namespace of the repo ids.
        remote_code (`bool`): add the remote code of hf-slm models ([`write_remote_code`]): the generated
            files and the ``config.json`` / ``processor_config.json`` with ``auto_map`` go into the snapshot
            (as blobs, like every file) in place of the folder's own JSON files; the zoo is not modified.

    Returns:
        One ``{"repo_id", "revision", "snapshot"}`` per installed folder.
    """
    from huggingface_hub import constants

    entries = {e.name: e for e in list_zoo(root)}
    names = names or list(entries)
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise ZooError(f"no zoo folder {unknown[0]!r}; the zoo has {sorted(entries)}")
    cache = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    installed = []
    for name in names:
        folder = entries[name].path
        files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        scratch = tempfile.TemporaryDirectory(prefix="hf-slm-remote-code-") if remote_code else None
        if scratch is not None:
            files.update(_remote_code_files(folder, Path(scratch.name)))
        hashes = {rel: _sha256(p) for rel, p in files.items()}
        revision = _revision(hashes)
        repo = cache / f"models--{org}--{name}"
        snapshot = repo / "snapshots" / revision
        for rel, path in files.items():
            blob = repo / "blobs" / hashes[rel]
            if not blob.exists():
                blob.parent.mkdir(parents=True, exist_ok=True)
                tmp = blob.with_suffix(".incomplete")
                shutil.copy2(path, tmp)
                os.replace(tmp, blob)
            _place(blob, snapshot / rel)
        if scratch is not None:
            scratch.cleanup()
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        installed.append({"repo_id": f"{org}/{name}", "revision": revision, "snapshot": str(snapshot)})
    return installed


def _remote_code_files(folder: Path, scratch: Path) -> dict[str, Path]:
    """The remote code of the model in ``folder``, written in ``scratch`` (``{name in the repo: file}``):
    the generated modules and its JSON files with ``auto_map``; nothing for a transformers model."""
    from hf_slm.remote_code import write_remote_code

    for name in ("config.json", "processor_config.json"):
        if (folder / name).is_file():
            (scratch / name).unlink(missing_ok=True)  # a link to the zoo's file (push's copy) is replaced
            shutil.copy2(folder / name, scratch / name)
    return {Path(p).name: Path(p) for p in write_remote_code(scratch)}


# -- the Hub ----------------------------------------------------------------------------------------------
def push_to_hub(
    name: str,
    repo_id: str,
    *,
    root: str | os.PathLike | None = None,
    private: bool = False,
    token: str | None = None,
    api: Any = None,
    remote_code: bool = True,
) -> dict[str, Any]:
    """Upload the zoo folder ``name`` to the Hub repo ``repo_id``: ``create_repo(exist_ok=True)``, then
    ``upload_folder`` of the folder (card, config, weights, processor files).

    Args:
        api: a `huggingface_hub.HfApi` (default: a new one with ``token``).
        remote_code (`bool`): upload a temporary copy of the folder with the model's remote code added
            ([`write_remote_code`]); the zoo folder itself is not modified.

    Returns:
        The plan that was carried out: the repo, the files and their sizes, the commit URL.
    """
    from huggingface_hub import HfApi, constants

    entries = {e.name: e for e in list_zoo(root)}
    if name not in entries:
        raise ZooError(f"no zoo folder {name!r}; the zoo has {sorted(entries)}")
    if api is None:
        if constants.HF_HUB_OFFLINE:
            raise ZooError(
                "the Hub cannot be reached: HF_HUB_OFFLINE=1 is set. Unset it (and log in with "
                "`hf auth login` or pass a token) on a machine that reaches huggingface.co"
            )
        api = HfApi(token=token)
    folder = entries[name].path
    scratch = tempfile.TemporaryDirectory(prefix="hf-slm-push-") if remote_code else None
    if scratch is not None:  # a copy: links to the folder's files, real copies of what the code changes
        copy = Path(scratch.name) / name
        shutil.copytree(folder, copy, copy_function=os.symlink)
        _remote_code_files(folder, copy)
        folder = copy
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()
    }
    url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        commit_message=f"hf-slm zoo: {name}",
    )
    if scratch is not None:
        scratch.cleanup()
    return {"repo_id": repo_id, "repo_url": str(url), "files": files, "commit": str(commit)}


# -- the command line ------------------------------------------------------------------------------------
def _cmd_list(args) -> int:
    print_zoo(list_zoo(args.zoo))
    return 0


def _cmd_install(args) -> int:
    done = install_zoo(
        args.names or None,
        root=args.zoo,
        cache_dir=args.cache_dir,
        org=args.org,
        remote_code=not args.no_remote_code,
    )
    for item in done:
        print(f"{item['repo_id']} @ {item['revision'][:12]} -> {item['snapshot']}")
    print(
        f'installed {len(done)} model(s); with HF_HUB_OFFLINE=1, from_pretrained("{done[0]["repo_id"]}") '
        "and pipeline(..., model=...) load them from the cache"
    )
    return 0


def _cmd_push(args) -> int:
    plan = push_to_hub(
        args.name, args.repo_id, root=args.zoo, private=args.private, remote_code=not args.no_remote_code
    )
    print(f"pushed {len(plan['files'])} files of {args.name} to {plan['repo_url']} ({plan['commit']})")
    return 0


def add_zoo_parser(subparsers) -> None:
    """``hf-slm zoo build | list | install | push``."""
    zoo = subparsers.add_parser("zoo", help="the zoo as Hub repos: list, install into the HF cache, push")
    sub = zoo.add_subparsers(dest="zoo_command", required=True)
    from hf_slm.zoo_build import add_zoo_build_parser

    add_zoo_build_parser(sub)  # hf-slm zoo build [NAME ...]: the recipes, dependencies first
    common = {"default": None, "help": "the zoo folder (default: $HF_SLM_ZOO, else the repository's zoo/)"}
    no_code = {
        "action": "store_true",
        "help": "leave out the remote code (the generated modules and auto_map that let the models load "
        "with trust_remote_code=True where hf-slm is not installed)",
    }
    ls = sub.add_parser("list", help="a table of the zoo: kind, parameters, size, the results of each card")
    ls.add_argument("--zoo", **common)
    ls.set_defaults(func=_cmd_list)
    inst = sub.add_parser(
        "install",
        help="write the zoo into the Hugging Face cache as hf-slm/<name>, so that from_pretrained and "
        "pipeline load it by id offline (HF_HUB_OFFLINE=1)",
    )
    inst.add_argument("names", nargs="*", help="zoo folders to install (default: all)")
    inst.add_argument("--zoo", **common)
    inst.add_argument(
        "--cache-dir", default=None, help="the hub cache (default: $HF_HUB_CACHE or $HF_HOME/hub)"
    )
    inst.add_argument("--org", default=DEFAULT_ORG, help=f"namespace of the repo ids (default {DEFAULT_ORG})")
    inst.add_argument("--no-remote-code", **no_code)
    inst.set_defaults(func=_cmd_install)
    push = sub.add_parser(
        "push",
        help="upload a zoo folder to the Hub (create_repo + upload_folder; needs the network and a token)",
    )
    push.add_argument("name", help="the zoo folder, e.g. speech-lm-tiny")
    push.add_argument("--repo-id", required=True, help="the Hub repo, e.g. your-name/speech-lm-tiny")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--zoo", **common)
    push.add_argument("--no-remote-code", **no_code)
    push.set_defaults(func=_cmd_push)
