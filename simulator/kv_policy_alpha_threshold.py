"""``alpha-threshold``: FCFS with a memory threshold alpha and clearing on overflow.

Source: the "alpha-protection greedy" and "alpha-protection beta-clearing" baselines of Jaillet
et al., arXiv 2502.07115, §6 (research notes scheduling-anchors.md §1.6 (i)-(ii)). Waiting
requests are admitted in arrival order while the next round's memory, with the candidate, stays
<= (1 - alpha) M (stopping at the first that does not). When the running batch would overflow M
in the next round, each running request is cleared (preempted, KV lost, restarted later)
independently with probability beta, repeated over the survivors until the batch fits
(beta = 1: every running request is cleared, the paper's alpha-greedy). The paper picks
alpha = 0.21 / 0.24 on its trace and sweeps alpha in {0.3, 0.25, 0.2, 0.1}, beta in {0.2, 0.1};
the defaults here are alpha = 0.2, beta = 0.2 (with beta = 1 the shipped example already clears
forever at alpha = 0.2). Draws use numpy's default_rng(seed): one ``random()`` per running
request per overflow pass, in the view's running order (start round, then position), none when
beta = 1.
A too-small alpha can make the policy clear forever; the simulator stops it with a clear error.
"""
from __future__ import annotations

import numpy as np

from servopt.errors import InputError
from servopt.simulator.kv_rounds import greedy_prefix, next_round_fits

NAME = "alpha-threshold"
PARAMS = {"alpha": 0.2, "beta": 0.2, "seed": 0}


class AlphaThreshold:
    preempt_only_until_fit = False

    def __init__(self, alpha: float, beta: float, seed: int):
        self.alpha = alpha
        self.beta = beta
        self.rng = np.random.default_rng(seed)

    def admit(self, view):
        return greedy_prefix(view, view.waiting, next_round_fits(view, (1.0 - self.alpha) * view.memory_tokens))

    def on_overflow(self, view):
        if self.beta >= 1.0:
            return [r.id for r in view.running]
        return [r.id for r in view.running if self.rng.random() < self.beta]


def make(alpha: float = 0.2, beta: float = 0.2, seed: int = 0):
    if not isinstance(alpha, (int, float)) or not 0 <= alpha < 1:
        raise InputError("--param alpha", f"must be in [0, 1), got {alpha!r}")
    if not isinstance(beta, (int, float)) or not 0 < beta <= 1:
        raise InputError("--param beta", f"must be in (0, 1], got {beta!r}")
    return AlphaThreshold(float(alpha), float(beta), int(seed))
