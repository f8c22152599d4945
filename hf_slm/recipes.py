"""Recipes: commented YAML files in ``modeling/recipes/`` that list ``hf-slm`` commands to run.

A recipe is data, not code (timm's ``pretrained_cfg``, open_clip's model configs)::

    name: units-mfcc-256
    steps:
      - run: data synth          # any `hf-slm` subcommand
        args: {out: data/corpus, hours: 2, seed: 0}

Every step is checked against the command's own arguments before anything runs: an unknown
command or key fails with the list of keys the command takes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["RecipeError", "load_recipe", "subcommand_parser"]

_TOP_KEYS = {"name", "description", "steps"}
_STEP_KEYS = {"run", "args"}


class RecipeError(ValueError):
    """A recipe that does not match the commands it names."""


def subcommand_parser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The argparse parser of ``hf-slm WORDS...`` (e.g. ``["units", "fit"]``)."""
    current = parser
    for word in words:
        sub = next((a for a in current._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            known = sorted(sub.choices) if sub else []
            raise RecipeError(f"unknown command {' '.join(words)!r}: {word!r} is not one of {known}")
        current = sub.choices[word]
    if any(isinstance(a, argparse._SubParsersAction) for a in current._actions):
        raise RecipeError(f"{' '.join(words)!r} is not a complete command")
    return current


def _to_argv(words: list[str], args: dict[str, Any], sub: argparse.ArgumentParser, where: str) -> list[str]:
    options = {a.dest: a for a in sub._actions if a.option_strings and a.help != argparse.SUPPRESS}
    positionals = {a.dest: a for a in sub._actions if not a.option_strings}
    argv = list(words)
    for key, value in args.items():
        dest = key.replace("-", "_")
        if dest in positionals:
            argv.append(str(value))
            continue
        if dest not in options:
            allowed = sorted(d for d in [*options, *positionals] if d != "help")
            raise RecipeError(f"{where}: `{' '.join(words)}` takes no key {key!r}; it takes {allowed}")
        action = options[dest]
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise RecipeError(f"{where}: {key!r} is a switch: write true or false")
            if value:
                argv.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for v in value if isinstance(value, list) else [value]:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def load_recipe(path: str | Path, parser: argparse.ArgumentParser) -> list[list[str]]:
    """Read and validate a recipe; returns the argv of each step."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise RecipeError(f"recipe {path} does not exist (recipes live in modeling/recipes/)")
    recipe = yaml.safe_load(path.read_text())
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with keys {sorted(_TOP_KEYS)}")
    unknown = set(recipe) - _TOP_KEYS
    if unknown:
        raise RecipeError(
            f"{path}: unknown top-level keys {sorted(unknown)}; a recipe has {sorted(_TOP_KEYS)}"
        )
    steps = recipe.get("steps") or []
    if not steps:
        raise RecipeError(f"{path}: no steps")
    out = []
    for i, step in enumerate(steps, 1):
        where = f"{path} step {i}"
        if not isinstance(step, dict) or "run" not in step or set(step) - _STEP_KEYS:
            raise RecipeError(f"{where}: a step is {{run: 'COMMAND', args: {{...}}}}, got {step!r}")
        words = str(step["run"]).split()
        sub = subcommand_parser(parser, words)
        argv = _to_argv(words, step.get("args") or {}, sub, where)
        try:
            sub.parse_args(argv[len(words) :])
        except SystemExit as err:
            raise RecipeError(
                f"{where}: `hf-slm {' '.join(argv)}` does not parse (see the message above)"
            ) from err
        out.append(argv)
    return out
