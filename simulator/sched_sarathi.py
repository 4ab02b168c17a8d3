"""Sarathi-Serve / vLLM V1 chunked prefill: decode-first, prompts split to fill a per-iteration token budget.

Source: Agrawal et al., "Taming Throughput-Latency Tradeoff in LLM Inference with Sarathi-Serve",
OSDI'24 (stall-free batching: ongoing decodes first, then chunks of prefills up to the token
budget); the same rule is vLLM V1's default scheduler. Admission is FCFS with vLLM's 1 % free-block
watermark; the newest request is preempted by recompute when decode growth runs out of blocks
(Vidur's ``sarathi`` scheduler does the same, research/costmodel-anchors.md §1.3).
"""
from servopt.simulator.scheduler import ContinuousBatching

NAME = "sarathi"
ALIASES = ("vllm_v1", "chunked_prefill")


class Sarathi(ContinuousBatching):
    mixed = True
    chunked = True
    chunk_stretch = True  # its plan repeats while one long prompt fills the budget (replica.py)


def make(**options):
    return Sarathi(**options)
