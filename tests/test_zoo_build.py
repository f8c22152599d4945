"""`hf-slm zoo build`: every zoo folder has the recipe that writes it, recipes run dependencies first,
and a real (tiny) build writes zoo folders that load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hf_slm.cli import main as cli_main
from hf_slm.zoo import ZooError, list_zoo
from hf_slm.zoo_build import build_plan, build_zoo, recipes_for_zoo

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "modeling" / "recipes"


def test_every_zoo_folder_has_a_recipe_and_upstream_recipes_come_first():
    io = recipes_for_zoo(RECIPES)
    written = {name for entry in io.values() for name in entry["writes"]}
    assert {e.name for e in list_zoo(REPO / "zoo")} <= written
    plan = [Path(p).stem for p in build_plan(None, RECIPES)]
    assert plan.index("units-ctc-phones") < plan.index("speech-lm-tiny") < plan.index("speech-text-lm-tiny")
    assert plan.index("units-ctc-phones") < plan.index("speech-aware-lm-tiny")  # it reads zoo/ctc-phones-tiny
    assert [Path(p).stem for p in build_plan(["speech-lm-tiny"], RECIPES)] == [
        "units-ctc-phones",
        "speech-lm-tiny",
    ]
    assert [Path(p).stem for p in build_plan(["speech-lm-tiny"], RECIPES, with_upstream=False)] == [
        "speech-lm-tiny"
    ]
    with pytest.raises(ZooError, match=r"no recipe .* writes zoo/nope"):
        build_plan(["nope"], RECIPES)


def test_dry_run_validates_every_step_of_every_recipe(capsys):
    assert cli_main(["zoo", "build", "--dry-run", "--recipes", str(RECIPES)]) == 0
    out = capsys.readouterr().out
    assert "would run 6 recipe(s)" in out and "hf-slm speech-lm export" in out and "hf-slm train" in out


@pytest.mark.slow
def test_a_tiny_build_runs_upstream_first_and_writes_loadable_folders(tmp_path, monkeypatch, capsys):
    from transformers import AutoModel

    import hf_slm  # noqa: F401  (registers the unit tokenizer and the vocoder)

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "units-a.yaml").write_text(yaml.safe_dump({"name": "units-a", "steps": [
        {"run": "data synth", "args": {"out": "data/c", "hours": 0.01, "seed": 0, "workers": 1}},
        {"run": "units fit", "args": {"data": "data/c", "out": "zoo/units-a", "n_units": 8, "epochs": 1}},
    ]}))  # fmt: skip
    (recipes / "vocoder-b.yaml").write_text(yaml.safe_dump({"name": "vocoder-b", "steps": [
        {"run": "vocoder train", "args": {"tokenizer": "zoo/units-a", "data": "data/c", "out": "zoo/vocoder-b",
                                          "steps": 2, "batch_size": 2, "hidden_size": 16}},
    ]}))  # fmt: skip
    (recipes / "something.train.yaml").write_text("not: a zoo recipe\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert build_zoo(["vocoder-b"], recipes_dir=recipes) == [str(recipes / "units-a.yaml"), str(recipes / "vocoder-b.yaml")]  # fmt: skip
    for name in ("units-a", "vocoder-b"):
        assert AutoModel.from_pretrained(tmp_path / "zoo" / name) is not None
    printed = capsys.readouterr().out
    assert printed.index("hf-slm units fit") < printed.index("hf-slm vocoder train")
