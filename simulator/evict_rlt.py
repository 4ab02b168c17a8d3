"""RLT (randomised leaf-token eviction): a uniformly random unmarked leaf goes; marking phases.

Source: Wu, Silwal, Zhang, "Randomization Boosts KV Caching, Learning Balances Query Load: A Joint
Perspective", ICLR 2026, arXiv 2601.18999 (research/eviction-routing-anchors.md §2.3): RLT evicts
leaf tokens of the prefix tree at random and is O(log n)-competitive. Our reading at block
granularity follows the randomised marking algorithm it builds on (Fiat, Karp, Luby, McGeoch, Sleator,
Young 1991): a block used in the current phase is marked; the victim is a uniformly random unmarked
leaf; when every evictable leaf is marked a new phase begins and all marks clear. ``seed`` makes runs
repeatable. In the serving simulator's ``PrefixCache`` (no leaf restriction) it is random marking over
single blocks.
"""

import random

NAME = "rlt"
ALIASES = ("randomized_leaf", "random_leaf_token")


class RandomLeafToken:
    LEAF_ONLY = True

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.phase = 0
        self.phase_start = 0  # cache clock when the current phase began: later uses are marked

    def priority(self, entry, cache):
        marked = entry.last_access >= self.phase_start
        return (self.phase if marked else self.phase - 1, self.rng.random())

    def on_evict(self, entry, priority, cache):
        # the victim came off the heap's top; if it was marked, every evictable leaf was: new phase
        if priority[0] >= self.phase:
            self.phase += 1
            self.phase_start = cache.clock + 1


def make(seed: int = 0):
    return RandomLeafToken(seed)
