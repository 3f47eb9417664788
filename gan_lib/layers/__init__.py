"""Layers: involution (Li et al. 2021) and SAGAN self-attention."""
from .attention import SelfAttention2d
from .involution import (
    Involution2d,
    count_parameters,
    get_backend,
    get_bf16_path,
    involution2d,
    involution2d_unfold,
    paper_param_count,
    set_backend,
    set_bf16_path,
)

__all__ = [
    "Involution2d",
    "SelfAttention2d",
    "count_parameters",
    "involution2d",
    "involution2d_unfold",
    "paper_param_count",
    "get_backend",
    "set_backend",
    "get_bf16_path",
    "set_bf16_path",
]
