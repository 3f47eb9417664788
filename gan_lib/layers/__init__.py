"""Layers: involution (Li et al. 2021) and SAGAN self-attention."""
from .attention import SelfAttention2d
from .involution import (
    Involution2d,
    count_parameters,
    get_backend,
    involution2d,
    involution2d_unfold,
    paper_param_count,
    set_backend,
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
]
