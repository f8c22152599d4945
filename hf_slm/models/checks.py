"""Input checks that the three families share: clear errors that name the problem and the fix."""

from __future__ import annotations

from typing import Any

__all__ = ["ContextLengthError", "check_config_dict", "check_context_length"]


class ContextLengthError(ValueError):
    """A prompt (with what is to be generated) longer than the model's context."""


def check_config_dict(config_class: type, config_dict: dict[str, Any]) -> None:
    """Refuse a checkpoint of another kind of model (e.g. a bare Llama folder given to a speech LM).

    transformers only warns and then builds a default-sized model of the requested kind around the
    wrong config (for ours: a 7B-parameter default Llama). A folder of ours names its `model_type`.
    """
    found = config_dict.get("model_type")
    if found in (None, config_class.model_type):
        return
    raise ValueError(
        f"this checkpoint holds a {found!r} model, not a {config_class.model_type!r} one "
        f"({config_class.__name__}): load it with its own class (AutoModel / AutoModelForCausalLM), or build "
        "a model of ours around it with `from_components(...)`"
    )


def check_context_length(
    config: Any, prompt_length: int, max_new_tokens: int | None = None, what: str = "the prompt"
) -> None:
    """Raise if `prompt_length` (+ `max_new_tokens`) tokens do not fit the LLM's `max_position_embeddings`.

    transformers' `generate` only warns and then runs past the positions the model was trained on (or
    fails deep inside with an index error): say what the limit is and how to stay inside it.
    """
    text_config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    limit = getattr(text_config, "max_position_embeddings", None)
    if not limit:
        return
    new = int(max_new_tokens or 0)
    if prompt_length + new <= limit:
        return
    if prompt_length > limit:
        raise ContextLengthError(
            f"{what} is {prompt_length} tokens, longer than the model's context of {limit} tokens "
            f"(max_position_embeddings): shorten the text (or the audio) to under {limit} tokens"
        )
    raise ContextLengthError(
        f"{what} is {prompt_length} tokens and max_new_tokens={new} would reach {prompt_length + new}, past the "
        f"model's context of {limit} tokens (max_position_embeddings): "
        + (
            f"ask for at most max_new_tokens={limit - prompt_length}, or shorten the prompt"
            if prompt_length < limit
            else "shorten the prompt to leave room for the answer"
        )
    )
