"""Torch plumbing shared by training and generation: devices, seeds, loading a base model.

Everything random in this package runs inside ``seeded(seed)``, which forks torch's
global generators, so a researcher's draws depend on its own seeds only and never on
what else ran in the process (another seed's researcher, a test before it).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks the GPU when torch sees one. Asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no GPU (set device: auto or cpu)")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on a GPU that supports it (half the memory), float32 on a CPU."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (config seed, loop seed, generation, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's generators seeded, restoring the previous state afterwards."""
    cuda = device is not None and device.type == "cuda"
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def load_base(path: str | Path, device: torch.device, dtype: torch.dtype):
    """A causal LM and its tokenizer from a local folder (or the local Hugging Face cache).

    ``local_files_only``: a run never downloads; a model that is not on disk is an error
    that names the path.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    except OSError as e:
        raise RuntimeError(f"cannot load a causal LM from {path} (a local folder with config and weights): {e}") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return model, tokenizer
