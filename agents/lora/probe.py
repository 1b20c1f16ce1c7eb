"""Measuring what a model would propose, exactly, without sampling.

The entropy of a batch of 32 proposals is a noisy estimate of the model's diversity
(its standard error is about 0.1 nats). For the estimators environment the model's
distribution over method families can be read off directly: the probability of the
prefix ``{"family":"NAME"`` after the prompt, for each family. Used for the researcher's
recorded state and by tests and benchmarks that follow entropy across generations.
"""

from __future__ import annotations

import numpy as np

from .generate import completion_logprobs
from .text import render_method


def family_distribution(model, tokenizer, prompt: str, families: tuple[str, ...]) -> dict:
    """``{"entropy": nats, "mass": P(any well-formed family), "probs": {family: P(family | well-formed)}}``."""
    prefixes = [render_method({"family": f})[:-1] for f in families]  # without the closing brace
    p = np.exp(completion_logprobs(model, tokenizer, prompt, prefixes))
    mass = float(p.sum())
    q = p / mass
    nz = q[q > 0]
    return {
        "entropy": float(-(nz * np.log(nz)).sum()),
        "mass": mass,
        "probs": {f: float(x) for f, x in zip(families, q)},
    }


def load_with_adapter(base_dir, adapter_dir, device: str = "cpu"):
    """Base model + one saved adapter, fresh from disk, and the tokenizer: how a resumed run sees it."""
    import torch
    from peft import PeftModel

    from .runtime import load_base

    base, tokenizer = load_base(base_dir, torch.device(device), torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    return model, tokenizer


def adapter_trajectory(base_dir, adapter_dirs: list, prompt: str, families: tuple[str, ...], probes: list[str]):
    """For each adapter in order: its family distribution and its next-token logits on ``probes``.

    One base model is loaded and each adapter's weights are swapped in, so the rows differ
    only by adapter. Returns ``(distributions, logits)`` with logits of shape (A, P, V).
    """
    import torch

    from .generate import next_token_logits
    from .train import load_adapter_weights

    model, tokenizer = load_with_adapter(base_dir, adapter_dirs[0])
    dists, logits = [], []
    for adapter in adapter_dirs:
        load_adapter_weights(model, adapter)
        dists.append(family_distribution(model, tokenizer, prompt, families))
        logits.append(next_token_logits(model, tokenizer, probes))
    return dists, torch.stack(logits)
