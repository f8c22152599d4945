"""``hf-slm zoo build [NAME ...]``: rebuild zoo folders from their recipes, in dependency order.

Every folder of ``zoo/`` is written by a recipe of ``modeling/recipes/`` (a step whose ``out`` is
``zoo/<name>``): the recipe makes its data, trains, evaluates with the harness and exports the
folder with its card (the card's numbers are the evaluation's, never typed). A recipe that reads
another zoo folder (``unit_tokenizer: zoo/units-ctc-phones``) runs after the recipe that writes it.
``--dry-run`` validates every step of the plan and prints it without running anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["build_plan", "build_zoo", "recipes_for_zoo"]

_ZOO_PATH = re.compile(r"(?:^|[\s,=])zoo/([A-Za-z0-9_.-]+)")


def _recipe_io(path: Path) -> tuple[set[str], set[str]]:
    """The zoo folders a recipe writes (a step's ``out``) and the ones it reads (any other argument)."""
    import yaml

    recipe = yaml.safe_load(path.read_text()) or {}
    writes, reads = set(), set()
    for step in recipe.get("steps") or []:
        for key, value in (step.get("args") or {}).items():
            for name in _ZOO_PATH.findall(f" {value}"):
                (writes if key == "out" and str(value).rstrip("/") == f"zoo/{name}" else reads).add(name)
    return writes, reads - writes


def recipes_for_zoo(recipes_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``{recipe path: {"writes": zoo names, "reads": zoo names}}`` for the recipes that write zoo folders
    (training recipes, ``*.train.yaml``, are steps of those and are skipped)."""
    found = {}
    for path in sorted(Path(recipes_dir).glob("*.yaml")):
        if path.name.endswith(".train.yaml"):
            continue
        writes, reads = _recipe_io(path)
        if writes:
            found[str(path)] = {"writes": sorted(writes), "reads": sorted(reads)}
    return found


def build_plan(names: list[str] | None, recipes_dir: str | Path, with_upstream: bool = True) -> list[str]:
    """The recipes to run, dependencies first, to build ``names`` (default: every zoo folder a recipe writes).

    With ``with_upstream`` the plan also holds every recipe upstream of the request (a rebuild of
    ``speech-lm-tiny`` from nothing rebuilds its unit tokenizer first); without it, only the recipes of
    ``names`` run, on the zoo folders as they are.
    """
    from hf_slm.zoo import ZooError

    recipes = recipes_for_zoo(recipes_dir)
    writer = {name: path for path, io in recipes.items() for name in io["writes"]}
    wanted = list(writer) if not names else list(names)
    unknown = [n for n in wanted if n not in writer]
    if unknown:
        raise ZooError(
            f"no recipe in {recipes_dir} writes zoo/{unknown[0]}; the recipes build {sorted(writer)}"
        )
    order: list[str] = []
    visiting: set[str] = set()

    def visit(path: str) -> None:
        if path in order:
            return
        if path in visiting:
            raise ZooError(f"the recipes read each other's zoo folders in a cycle, at {path}")
        visiting.add(path)
        for name in recipes[path]["reads"] if with_upstream else []:
            if name in writer and writer[name] != path:
                visit(writer[name])
        visiting.discard(path)
        order.append(path)

    for name in wanted:
        visit(writer[name])
    return order


def build_zoo(
    names: list[str] | None = None,
    *,
    recipes_dir: str | Path = "modeling/recipes",
    with_upstream: bool = True,
    dry_run: bool = False,
) -> list[str]:
    """Run the plan of [`build_plan`] (every step of every recipe is validated before the first runs).

    Returns:
        The recipes, in the order they ran (or would run, with ``dry_run``).
    """
    from hf_slm.cli import build_parser
    from hf_slm.recipes import load_recipe

    plan = build_plan(names, recipes_dir, with_upstream)
    parser = build_parser()
    steps = {path: load_recipe(path, parser) for path in plan}  # all validated before anything runs
    io = recipes_for_zoo(recipes_dir)
    for k, path in enumerate(plan, 1):
        print(
            f"({k}/{len(plan)}) {path}: writes {', '.join('zoo/' + n for n in io[path]['writes'])}",
            flush=True,
        )
        for i, argv in enumerate(steps[path], 1):
            print(f"    [{i}/{len(steps[path])}] hf-slm {' '.join(argv)}", flush=True)
            if dry_run:
                continue
            step = parser.parse_args(argv)
            if hasattr(step, "recipe_command"):  # provenance for the model card
                step.recipe, step.recipe_command = path, f"hf-slm recipe run {path}"
            code = step.func(step)
            if code:
                raise RuntimeError(f"{path} step {i} (`hf-slm {' '.join(argv)}`) exited with {code}")
    return plan


def _cmd_build(args) -> int:
    plan = build_zoo(
        args.names or None, recipes_dir=args.recipes, with_upstream=not args.no_upstream, dry_run=args.dry_run
    )
    print(("would run " if args.dry_run else "ran ") + f"{len(plan)} recipe(s)")
    return 0


def add_zoo_build_parser(zoo_subparsers) -> None:
    build = zoo_subparsers.add_parser(
        "build",
        help="rebuild zoo folders from their recipes in modeling/recipes (data, training, evaluation, card)",
    )
    build.add_argument(
        "names", nargs="*", help="zoo folders to rebuild (default: all); upstream recipes run first"
    )
    build.add_argument(
        "--recipes", default="modeling/recipes", help="the recipes folder (default modeling/recipes)"
    )
    build.add_argument("--dry-run", action="store_true", help="validate and print the plan, run nothing")
    build.add_argument(
        "--no-upstream", action="store_true", help="run only the named folders' recipes, on the zoo as it is"
    )
    build.set_defaults(func=_cmd_build)
