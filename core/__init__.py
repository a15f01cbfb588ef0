"""Model-side code of Inside GPT-2. Never imports streamlit.

    from core import load_model, trace
    lm = load_model("gpt2")          # hub id or local directory
    t = trace(lm, "The best thing about AI is its ability to")
    t.attention.shape                # (layer, head, query_pos, key_pos)
"""
from .cache import ByteBoundedCache
from .model import GPT2_FAMILY, LoadedModel, ModelLoadError, default_model_name, load_model, pick_device
from .store import ModelStore
from .trace import PromptError, Trace, estimate_trace_bytes, prompt_ids, trace, trace_ids

__all__ = [
    "ByteBoundedCache",
    "GPT2_FAMILY",
    "LoadedModel",
    "ModelLoadError",
    "ModelStore",
    "PromptError",
    "Trace",
    "default_model_name",
    "estimate_trace_bytes",
    "load_model",
    "pick_device",
    "prompt_ids",
    "trace",
    "trace_ids",
]
