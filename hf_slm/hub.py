"""Model cards and Hub-layout folders for the zoo.

Cards are rendered with `huggingface_hub.ModelCard` from the templates in ``cards/``; their
numbers come from the training logs and evaluation results, never typed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["render_card", "update_card_results", "write_card", "zoo_bases"]

CARDS_DIR = Path(__file__).resolve().parent.parent / "cards"


def _template(name: str) -> str:
    path = CARDS_DIR / name
    if not path.exists():
        raise FileNotFoundError(
            f"card template {path} is missing: cards are rendered from a checkout of hf-slm"
        )
    return path.read_text()


def render_card(
    *,
    model_name: str,
    summary: str,
    command: str,
    repo_id: str | None = None,
    recipe: str | None = None,
    usage: str = "",
    tags: list[str] | None = None,
    pipeline_tag: str | None = None,
    base_model: str | list[str] | None = None,
    training: dict[str, Any] | None = None,
    eval_results: list[Any] | None = None,
    results_table: str = "",
    template: str = "component_card.md",
):
    """A `huggingface_hub.ModelCard` for a zoo folder."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        tags=["hf-slm", "speech", *(tags or [])],
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        datasets=["hf-slm/synthetic-espeak-corpus"],
        model_name=model_name,
        eval_results=eval_results or None,
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in (training or {}).items())
    return ModelCard.from_template(
        data,
        template_str=_template(template),
        model_name=model_name,
        summary=summary,
        repo_id=repo_id or f"hf-slm/{model_name}",
        usage=usage,
        command=command,
        recipe=recipe,
        training_table=rows,
        results_table=results_table,
    )


def zoo_bases(folder: str | Path) -> list[str] | None:
    """The Hub ids of the zoo folders a model was composed from, read from its config: every sub-config
    whose ``_name_or_path`` is a ``zoo/<name>`` folder gives ``hf-slm/<name>`` (the card's ``base_model``)."""
    import json

    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    found: set[str] = set()

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            source = str(node.get("_name_or_path") or "")
            if not top and source.startswith("zoo/"):
                found.add(f"hf-slm/{source.split('/')[1]}")
            for value in node.values():
                walk(value, False)

    walk(json.loads(path.read_text()), True)
    return sorted(found) or None


def write_card(folder: str | Path, **kwargs: Any) -> Path:
    path = Path(folder) / "README.md"
    if kwargs.get("base_model") is None:
        kwargs["base_model"] = zoo_bases(folder)
    render_card(**kwargs).save(path)
    return path


def update_card_results(folder: str | Path, results_markdown: str, eval_results: list[Any]) -> Path:
    """Put measured results into an existing card: ``model-index`` metadata and a Results section."""
    from huggingface_hub import ModelCard

    path = Path(folder) / "README.md"
    card = ModelCard.load(path)
    card.data.eval_results = eval_results
    text = card.text
    section = f"## Results\n\n{results_markdown.strip()}\n\n"
    if "## Results" in text:
        start = text.index("## Results")
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    elif "## Limitations" in text:
        i = text.index("## Limitations")
        text = text[:i] + section + text[i:]
    else:
        text = text.rstrip() + "\n\n" + section
    card.text = text
    card.save(path)
    return path
