"""A tiny causal LM and tokenizer, built from a config and pre-trained on real methods.

Tests and demos need a model that knows the method format before the loop starts, and
nothing may be downloaded. So: a character-level tokenizer (printable ASCII plus the
corpus's characters), a 2-layer GPT-2 from ``GPT2Config``, and a few hundred steps of
full pre-training on the estimators seed corpus rendered as JSON lines, each after the
same prompt the researcher will use. The pre-trained model's mix of families is the
corpus's mix (about 1.85 nats of entropy), the starting point the loop drifts from.
"""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path
from typing import Iterable

import torch

from .config import TinySpec
from .runtime import seeded
from .text import render_method
from .train import encode_examples, fit

SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")


def corpus_lines() -> list[str]:
    """The estimators seed corpus as canonical JSON lines (duplicates kept: they are its mix)."""
    from ouro.environments.estimators import SEED_CORPUS

    return [render_method(m) for m in SEED_CORPUS]


def build_tokenizer(texts: Iterable[str]):
    """A character-level tokenizer: one token per character, EOS and PAD as specials.

    Built with ``tokenizers`` (a BPE model with no merges is a character model) and
    wrapped as a ``PreTrainedTokenizerFast`` so it saves and loads like any other.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c\r") | set("".join(texts)))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({c: len(SPECIAL_TOKENS) + i for i, c in enumerate(chars)})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_model(tokenizer, spec: TinySpec):
    """A randomly initialized GPT-2 (no dropout: the loop's randomness is the sampling)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with seeded(spec.seed):
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model


def pretrain(model, tokenizer, prompt: str, lines: list[str], spec: TinySpec) -> dict:
    """Full-parameter training on prompt -> line, loss on the line only."""
    if spec.pretrain_steps == 0:
        return {"steps": 0}
    encoded = encode_examples(tokenizer, [(prompt, line) for line in lines], spec.n_positions)
    return fit(
        model,
        encoded,
        tokenizer.pad_token_id,
        epochs=1,
        batch_size=spec.pretrain_batch_size,
        learning_rate=spec.pretrain_learning_rate,
        seed=spec.seed,
        max_steps=spec.pretrain_steps,
    )


def build_tiny(prompt: str, spec: TinySpec = TinySpec(), lines: list[str] | None = None):
    """Tokenizer and pre-trained tiny model, in memory; returns (model, tokenizer, pretrain log)."""
    lines = corpus_lines() if lines is None else lines
    tokenizer = build_tokenizer([prompt, *lines])
    model = build_model(tokenizer, spec)
    log = pretrain(model, tokenizer, prompt, lines, spec)
    return model, tokenizer, log


def save_tiny(model, tokenizer, out_dir: str | Path) -> Path:
    """Save model and tokenizer as one Hugging Face folder, atomically (arms may race to build it)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished the same deterministic build first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").is_file():
            raise
    return out


def ensure_tiny(out_dir: str | Path, prompt: str, spec: TinySpec = TinySpec()) -> Path:
    """The tiny base model folder at ``out_dir``, built and pre-trained if it is not there yet."""
    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    with torch.device("cpu"):
        model, tokenizer, _ = build_tiny(prompt, spec)
    return save_tiny(model, tokenizer, out)
