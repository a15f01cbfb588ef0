"""How a page's words name the loaded model: one rule, used wherever a label says whose numbers they are.

The app teaches with GPT-2, so many sentences were written about it ("GPT-2's probability"). When
another checkpoint is loaded (the bundled mini GPT-2, a random model, a local directory), a label
about the model's own output names that model instead, and a sentence that only holds for GPT-2
gets a note saying what differs (`is_gpt2` decides)."""
from __future__ import annotations

from core.model import GPT2_FAMILY


def is_gpt2(lm) -> bool:
    """Whether the loaded model is one of OpenAI's GPT-2 checkpoints, of which the teaching text speaks."""
    return lm.name in GPT2_FAMILY


def model_name(lm) -> str:
    """The model as a label names it, in "{model}'s probability": "GPT-2" for the GPT-2 family, else
    its short label (`mini-gpt2-kjv`), never a path. Plain text: escape it (md, esc) where it is shown."""
    return "GPT-2" if is_gpt2(lm) else lm.label
