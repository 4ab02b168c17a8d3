"""GPUs, LLM architectures and SLOs as frozen dataclasses (catalog entries and instance fields).

Units live in names. GPU throughput and bandwidths are dense (no 2:4 sparsity) datasheet peaks;
the cost model applies measured efficiency factors on top (costmodel/).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from servopt.errors import InputError
from servopt.instances import fields


@dataclass(frozen=True)
class GPU:
    name: str
    bf16_tflops: float  # dense bf16 tensor-core peak, TFLOP/s
    hbm_gb_per_s: float  # HBM bandwidth, GB/s (1e9 bytes)
    memory_gib: float  # usable device memory, GiB (2**30 bytes)
    nvlink_gb_per_s: float  # per-GPU unidirectional NVLink bandwidth, GB/s; 0 if none
    pcie_gb_per_s: float  # unidirectional host/peer PCIe bandwidth, GB/s
    usd_per_hour: float  # typical on-demand price of one GPU
    aliases: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict)
    # NVIDIA architecture (hopper, ampere, ada, turing, volta; "" if unknown): the cost model lends
    # a measured efficiency profile only to a GPU of the same architecture (costmodel/transfer.py).
    architecture: str = ""

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30

    @property
    def interconnect_gb_per_s(self) -> float:
        """Bandwidth a TP all-reduce runs over: NVLink if present, else PCIe."""
        return self.nvlink_gb_per_s if self.nvlink_gb_per_s > 0 else self.pcie_gb_per_s

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LLM:
    """A decoder-only transformer's architecture (Llama/Qwen/Mistral/OPT families).

    ``gated_mlp``: SwiGLU (3 matrices, Llama/Qwen/Mixtral) vs a 2-matrix MLP (OPT).
    ``num_experts``/``experts_per_token``: MoE (Mixtral: 8 and 2); 1 and 1 for dense models.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_experts: int = 1
    experts_per_token: int = 1
    gated_mlp: bool = True
    tied_embeddings: bool = False
    dtype_bytes: int = 2
    aliases: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict)

    # Parameter counts follow research/costmodel-anchors.md §3.2 (standard transformer counts):
    # attention d*h_q*d_h (Q) + 2*d*h_kv*d_h (K, V) + h_q*d_h*d (O); MLP 3*d*d_ff gated, 2*d*d_ff
    # plain; embedding V*d, plus an LM head V*d unless tied. Norms, biases and position tables
    # are left out (< 0.1 % of the weights for every catalog model).

    @property
    def attention_params_per_layer(self) -> int:
        d, dh = self.hidden_size, self.head_dim
        return d * self.num_heads * dh + 2 * d * self.num_kv_heads * dh + self.num_heads * dh * d

    @property
    def mlp_params_per_expert(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden_size * self.num_experts if self.num_experts > 1 else 0

    def num_params(self) -> int:
        """All weights: layers (every expert) + embedding + LM head (once if tied)."""
        per_layer = self.attention_params_per_layer + self.num_experts * self.mlp_params_per_expert + self.router_params_per_layer
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return self.num_layers * per_layer + embeddings

    def active_params_per_token(self) -> int:
        """Weights one token multiplies through in the layers (top-k experts for MoE), no embedding/LM head."""
        per_layer = self.attention_params_per_layer + self.experts_per_token * self.mlp_params_per_expert + self.router_params_per_layer
        return self.num_layers * per_layer

    def weight_bytes(self) -> int:
        return self.num_params() * self.dtype_bytes

    def kv_bytes_per_token(self) -> int:
        """K and V of one token over all layers and all KV heads: 2 * L * h_kv * d_h * bytes."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SLO:
    """Latency targets: time to first token and time per output token (both optional)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def slo_from_dict(data: dict, path: str = "slo") -> SLO:
    if not isinstance(data, dict):
        raise InputError(path, "expected an object")
    unknown = set(data) - {"ttft_ms", "tpot_ms", "e2e_ms"}
    if unknown:
        raise InputError(f"{path}.{sorted(unknown)[0]}", "unknown field (expected ttft_ms, tpot_ms, e2e_ms)")
    values = {k: fields.number(data, k, path, exclusive_minimum=0, default=None, allow_none=True) for k in ("ttft_ms", "tpot_ms", "e2e_ms")}
    return SLO(**values)
