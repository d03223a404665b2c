"""Jitted rollout sampling for the policy (any family): prefill + decode over a
preallocated, donated KV cache, bucketed shapes, greedy / temperature / top-k / top-p, EOS and
stop strings, shared-prefill group rollouts and multi-turn continuation. See sampler.py."""

from jaxseg.models.inputs import Prompt, bucket

from .batch import History, SegmentBatch, assemble_segment
from .filters import SamplingParams, raw_log_probs, sample_tokens, truncated_logits
from .sampler import Sampler
from .state import DecodeState, Rollout
from .stop import StopTable, build_stop_table, first_stop_in_text, stop_spellings

__all__ = [
    "DecodeState",
    "History",
    "Prompt",
    "Rollout",
    "Sampler",
    "SamplingParams",
    "SegmentBatch",
    "StopTable",
    "assemble_segment",
    "bucket",
    "build_stop_table",
    "first_stop_in_text",
    "raw_log_probs",
    "sample_tokens",
    "stop_spellings",
    "truncated_logits",
]
