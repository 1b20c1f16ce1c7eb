"""Generation from a base model plus adapter through transformers, and exact scoring.

``generate`` has no generator argument, so sampling runs inside ``seeded(seed)``: the
seed comes from the loop's numpy stream for (seed, generation, "propose"), and a
generation re-run after a crash draws the same texts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .runtime import seeded


@dataclass
class Samples:
    """Completions of one prompt, with what producing them cost."""

    texts: list[str]
    tokens_in: int
    tokens_out: int
    seconds: float
    token_entropy: float  # mean entropy (nats) of the sampling distribution over the generated tokens

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_out / self.seconds if self.seconds > 0 else float("nan")


def sample_completions(
    model,
    tokenizer,
    prompt: str,
    n: int,
    seed: int,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
) -> Samples:
    """``n`` completions of ``prompt``, each ending at EOS or after ``max_new_tokens``.

    Every row shares the prompt, so batches need no padding. ``temperature`` 0 is
    greedy decoding. Sampling is from the model's full distribution (``top_k`` 0).
    """
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    width = prompt_ids.shape[1]
    texts: list[str] = []
    tokens_out = 0
    entropy_sum = 0.0
    start = time.perf_counter()
    sampling = temperature > 0
    options = dict(do_sample=True, temperature=temperature, top_k=0, top_p=top_p) if sampling else dict(do_sample=False)
    with seeded(seed, device), torch.no_grad():
        for b in range(0, n, batch_size):
            rows = min(batch_size, n - b)
            ids = prompt_ids.expand(rows, width)
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=pad if pad is not None else eos,
                output_logits=True,
                return_dict_in_generate=True,
                **options,
            )
            new = out.sequences[:, width:]
            alive = _alive_mask(new, eos)
            logits = torch.stack(out.logits, dim=1).float()  # (rows, steps, vocab)
            logp = torch.log_softmax(logits / (temperature if sampling else 1.0), dim=-1)
            step_entropy = -(logp.exp() * logp).sum(-1)
            entropy_sum += float((step_entropy * alive).sum())
            tokens_out += int(alive.sum())
            for row, keep in zip(new, alive):
                texts.append(tokenizer.decode(row[keep.bool()], skip_special_tokens=True))
    seconds = time.perf_counter() - start
    return Samples(
        texts=texts,
        tokens_in=width * n,
        tokens_out=tokens_out,
        seconds=seconds,
        token_entropy=entropy_sum / tokens_out if tokens_out else float("nan"),
    )


def _alive_mask(new: torch.Tensor, eos: int) -> torch.Tensor:
    """1 for generated tokens up to and including the first EOS of each row, 0 after it."""
    is_eos = (new == eos).long()
    before = torch.cumsum(is_eos, dim=1) - is_eos  # EOS seen strictly before this position
    return (before == 0).float()


def completion_logprobs(model, tokenizer, prompt: str, completions: list[str], batch_size: int = 64) -> np.ndarray:
    """log P(completion | prompt), summed over the completion's tokens, for each completion.

    The completion's tokens are those of ``prompt + completion`` after the prompt's, so a
    character-level tokenizer scores exactly what generation would produce; a BPE
    tokenizer may split a bare prefix differently from a finished line (an approximation).
    """
    device = next(model.parameters()).device
    p_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = np.empty(len(completions))
    with torch.no_grad():
        for b in range(0, len(completions), batch_size):
            chunk = [tokenizer(prompt + c, add_special_tokens=False)["input_ids"] for c in completions[b : b + batch_size]]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(chunk):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            ids, mask = ids.to(device), mask.to(device)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            token_lp = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # log P(token t | tokens < t)
            for i, row in enumerate(chunk):
                out[b + i] = float(token_lp[i, p_len - 1 : len(row) - 1].sum())
    return out


def next_token_logits(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """Logits after each text's last token (rows of the vocabulary): a fingerprint of a model."""
    device = next(model.parameters()).device
    with torch.no_grad():
        rows = []
        for t in texts:
            ids = tokenizer(t, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
            rows.append(model(input_ids=ids).logits[0, -1].float().cpu())
    return torch.stack(rows)
