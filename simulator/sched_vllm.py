"""vLLM V0: FCFS, prefill-first (whole prompts in prefill-only iterations), preempt the newest.

Source: Kwon et al., "Efficient Memory Management for Large Language Model Serving with
PagedAttention", SOSP'23: paged KV blocks, an iteration is prefill-only whenever waiting requests
can be admitted (up to ``max_num_batched_tokens``, default here 4096), else decode-only; when a
decode cannot get a block the most recently admitted sequence is preempted (recompute by default,
swap optional), and swapped sequences come back before new ones.
"""
from servopt.simulator.scheduler import ContinuousBatching

NAME = "vllm"
ALIASES = ("vllm_v0", "fcfs")


class VLLM(ContinuousBatching):
    mixed = False
    chunked = False


def make(**options):
    options.setdefault("token_budget", 4096)
    return VLLM(**options)
