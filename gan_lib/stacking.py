"""Seed stacking: S independent runs of one configuration trained as ONE model.

A stacked network (``Generator(..., stack=S)``, ``Critic(..., stack=S)``) holds the S copies side by side in
the channel dimension: every convolution is grouped (groups=S), every norm acts per copy, so copy s computes
exactly what the plain network with copy s's weights computes, and the S copies never mix (a NaN in one stays
in it). Why this layout and not ``torch.func.stack_module_state`` + ``vmap``: vmap's batching rule for a
convolution whose weight and input are both batched folds the batch into groups, i.e. it runs this very grouped
convolution, while vmap would also need batching rules for the involution's custom autograd functions (with
their double backward for the gradient penalty), in-place spectral-norm and batch-norm buffer updates under
vmap, and per-copy parameters that are views of one stacked tensor for the optimizer. The grouped layout is
plain modules, plain autograd and one optimizer over ordinary parameters.

Every tensor of a stacked state dict (parameters, buffers, Adam's moments) is the copies' tensors concatenated
along dim 0; 0-dim tensors (BatchNorm's ``num_batches_tracked``, Adam's ``step``) are shared, since the copies
take the same steps. So a stacked state is `stack_states` of the per-seed state dicts, and `unstack_state`
gives back each seed's state in exactly the plain model's format: a seed's checkpoint is the same file whether
it trained alone or stacked, and a run can move between the two.

Batches: `stack_images` puts S per-seed batches (B, C, H, W) side by side as (B, S*C, H, W);
`unstack_images` takes them apart again as (S, B, C, H, W).
"""
from __future__ import annotations

import torch

__all__ = ["stack_states", "unstack_state", "stack_optimizer_states", "unstack_optimizer_state", "stack_images",
           "unstack_images"]


def stack_states(states: list[dict]) -> dict:
    """Per-copy state dicts (same keys) -> one stacked state dict (concatenated along dim 0; 0-dim shared)."""
    out = {}
    for key, first in states[0].items():
        if not isinstance(first, torch.Tensor) or first.dim() == 0:
            out[key] = first
        else:
            out[key] = torch.cat([s[key] for s in states], dim=0)
    return out


def unstack_state(state: dict, stack: int, copies=None) -> list[dict]:
    """A stacked state dict -> per-copy state dicts (clones: independent of the stacked tensors), for every one
    of the ``stack`` copies or only for the indices ``copies`` (in that order)."""
    copies = range(stack) if copies is None else list(copies)
    out = [{} for _ in copies]
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            for d in out:
                d[key] = value.clone() if isinstance(value, torch.Tensor) else value
            continue
        if value.shape[0] % stack:
            raise ValueError(f"{key}: dim 0 of shape {tuple(value.shape)} does not hold {stack} copies")
        parts = value.chunk(stack, dim=0)
        for d, c in zip(out, copies):
            d[key] = parts[c].clone()
    return out


def stack_optimizer_states(states: list[dict]) -> dict:
    """Per-copy ``optimizer.state_dict()``s (Adam: exp_avg, exp_avg_sq per parameter) -> the stacked one."""
    first = states[0]
    per_param = {i: stack_states([s["state"][i] for s in states]) for i in first["state"]}
    return {"state": per_param, "param_groups": first["param_groups"]}


def unstack_optimizer_state(state: dict, stack: int, copies=None) -> list[dict]:
    """The stacked ``optimizer.state_dict()`` -> per-copy ones (all ``stack`` copies, or the indices ``copies``)."""
    copies = range(stack) if copies is None else list(copies)
    parts = {i: unstack_state(s, stack, copies) for i, s in state["state"].items()}
    return [{"state": {i: parts[i][c] for i in parts}, "param_groups": [dict(g) for g in state["param_groups"]]}
            for c in range(len(copies))]


def stack_images(batches: list[torch.Tensor]) -> torch.Tensor:
    """S batches (B, C, H, W) -> (B, S*C, H, W) (the copies' channels side by side); S=1: the batch itself."""
    return batches[0] if len(batches) == 1 else torch.cat(batches, dim=1)


def unstack_images(x: torch.Tensor, stack: int) -> torch.Tensor:
    """(B, S*C, H, W) -> (S, B, C, H, W)."""
    b, sc = x.shape[:2]
    return x.view(b, stack, sc // stack, *x.shape[2:]).transpose(0, 1)
