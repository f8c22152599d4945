"""Training machinery shared by every model hf-slm trains.

[`train`] is the one accelerate + PEFT loop (``hf-slm train RECIPE.yaml``, or
``accelerate launch -m hf_slm.train RECIPE.yaml``); a training recipe is validated into a
[`TrainRecipe`] of [`ModelArguments`], [`DataArguments`], [`TrainingArguments`] and [`LoraArguments`].
Heavy libraries (accelerate, peft, datasets) are imported when the loop runs, not here.
"""

from hf_slm.training.arguments import (
    DataArguments,
    LoraArguments,
    ModelArguments,
    TrainingArguments,
    TrainRecipe,
    load_train_recipe,
    recipe_from_dict,
)
from hf_slm.training.loop import TrainingError, train
from hf_slm.training.schedule import warmup_cosine

__all__ = [
    "DataArguments",
    "LoraArguments",
    "ModelArguments",
    "TrainRecipe",
    "TrainingArguments",
    "TrainingError",
    "load_train_recipe",
    "recipe_from_dict",
    "train",
    "warmup_cosine",
]
