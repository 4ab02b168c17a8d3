"""Least outstanding tokens: the replica with the fewest prompt + output tokens assigned and unfinished.

Source: the token-weighted variant of least-outstanding-requests used by LLM gateways (e.g. the
llm-d / Dynamo load terms of research/eviction-routing-anchors.md §4.3-4.4, where load counts
tokens or KV blocks rather than requests). Output lengths are what the router sees: the
prediction when the trace has one, else the truth.
"""

NAME = "least_tokens"
ALIASES = ("least_outstanding_tokens", "lot")


class LeastTokens:
    def route(self, req, replicas, now):
        return min(replicas, key=lambda r: (r.assigned_tokens, r.index))


def make(rng=None):
    return LeastTokens()
