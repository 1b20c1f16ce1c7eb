"""LoRA fine-tuning of a causal LM on prompt -> completion pairs.

A short manual loop rather than trl's SFTTrainer: the whole job is "loss on the
completion tokens only, AdamW, a few epochs", and a loop that fits on one screen is
easier to make deterministic (one seed decides adapter initialization, shuffling and
dropout) and to read than a trainer configured to do the same. trl did not earn its
place.

The model a researcher keeps is one ``PeftModel`` for its whole life: each generation
either loads the previous adapter's weights into it or resets the adapter to a fresh
initialization, then trains and saves. Saving writes a PEFT folder
(``adapter_config.json``, ``adapter_model.safetensors``) that vLLM can load at run time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .config import LoraTrainConfig
from .runtime import load_base, resolve_device, seeded

ADAPTER_NAME = "default"
TRAIN_LOG = "ouro_train.json"


# ------------------------------------------------------------------ attaching adapters


def _peft_lora_config(model, config: LoraTrainConfig):
    """peft's LoraConfig for this model; GPT-2's Conv1D layers need ``fan_in_fan_out``."""
    from peft import LoraConfig
    from transformers.pytorch_utils import Conv1D

    targets = config.target_modules
    if targets is None:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

        targets = defaults.get(getattr(model.config, "model_type", ""), None)
        if targets is None:
            raise ValueError(
                f"no default LoRA target modules for model type {model.config.model_type!r}: set lora.target_modules"
            )
    names = set(targets)
    conv1d = any(isinstance(m, Conv1D) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in names)
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(targets),
        fan_in_fan_out=conv1d,
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_lora(model, config: LoraTrainConfig, seed: int):
    """Wrap a base model with one fresh LoRA adapter (in place: peft injects layers into it)."""
    from peft import get_peft_model

    device = next(model.parameters()).device
    with seeded(seed, device):
        peft_model = get_peft_model(model, _peft_lora_config(model, config), adapter_name=ADAPTER_NAME)
    peft_model.eval()
    return peft_model


def _lora_layers(model) -> Iterator:
    from peft.tuners.lora import LoraLayer

    return (m for m in model.modules() if isinstance(m, LoraLayer))


def reset_adapter(model, seed: int) -> None:
    """A fresh adapter: A drawn anew from ``seed``, B zero, so the model equals its base again."""
    device = next(model.parameters()).device
    with seeded(seed, device):
        for layer in _lora_layers(model):
            layer.reset_lora_parameters(ADAPTER_NAME, init_lora_weights=True)


def load_adapter_weights(model, adapter_dir: str | Path) -> None:
    """Load a saved adapter's weights into the model's adapter (same rank and targets)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no adapter weights at {path}")
    device = next(model.parameters()).device
    result = set_peft_model_state_dict(model, load_file(str(path), device=str(device)), adapter_name=ADAPTER_NAME)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise ValueError(f"adapter {adapter_dir} does not match the model: {len(missing)} LoRA weights missing")


# ------------------------------------------------------------------ data


def encode_examples(tokenizer, examples: Sequence[tuple[str, str]], max_length: int) -> list[tuple[list[int], int]]:
    """Token ids of prompt + completion + EOS, and where the completion starts.

    The completion is tokenized after the prompt's text, not separately, so that a BPE
    tokenizer splits it as it would in generation. A prompt too long for ``max_length``
    loses its start; the completion is never cut short of its EOS if it fits at all.
    """
    eos = tokenizer.eos_token_id
    out = []
    for prompt, completion in examples:
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
        start = len(p_ids)
        if full[:start] != p_ids:  # the tokenizer merged across the boundary: split where they agree
            start = next((i for i, (a, b) in enumerate(zip(p_ids, full)) if a != b), len(p_ids))
        ids = full + [eos]
        if len(ids) > max_length:
            cut = len(ids) - max_length
            if cut > start:
                raise ValueError(f"a completion of {len(ids) - start} tokens does not fit max_length={max_length}")
            ids, start = ids[cut:], start - cut
        out.append((ids, start))
    return out


def collate(batch: list[tuple[list[int], int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask, and labels that are -100 outside the completions."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, start) in enumerate(batch):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[i, : len(ids)] = t
        mask[i, : len(ids)] = 1
        labels[i, start : len(ids)] = t[start:]
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def fit(
    model,
    encoded: list[tuple[list[int], int]],
    pad_id: int,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    seed: int,
    max_steps: int | None = None,
) -> dict:
    """AdamW on the trainable parameters, completion-only loss; returns what it did.

    Used for LoRA (only the adapter is trainable) and for pre-training the tiny model
    (everything is). ``max_steps`` cycles over the data until that many steps.
    """
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    losses: list[float] = []
    tokens = 0
    start_time = time.perf_counter()
    model.train()
    with seeded(seed, device):
        gen = torch.Generator().manual_seed(seed)
        epoch = 0
        while True:
            order = torch.randperm(len(encoded), generator=gen).tolist()
            epoch_losses = []
            for b in range(0, len(order), batch_size):
                batch = collate([encoded[i] for i in order[b : b + batch_size]], pad_id, device)
                loss = model(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
                epoch_losses.append(float(loss.detach()))
                tokens += int(batch["attention_mask"].sum())
                if max_steps is not None and len(losses) + len(epoch_losses) >= max_steps:
                    break
            losses += epoch_losses
            epoch += 1
            if (max_steps is not None and len(losses) >= max_steps) or (max_steps is None and epoch >= epochs):
                break
    model.eval()
    seconds = time.perf_counter() - start_time
    return {
        "steps": len(losses),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else float("nan"),
    }


# ------------------------------------------------------------------ the entry point


def save_adapter(model, out_dir: str | Path, log: dict | None = None) -> Path:
    """Write the adapter folder atomically: a reader sees the old folder or the whole new one."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=[ADAPTER_NAME])
    if log is not None:
        (tmp / TRAIN_LOG).write_text(json.dumps(log, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def train_adapter(
    base_model_path_or_model,
    tokenizer,
    examples: Sequence[tuple[str, str]],
    out_dir: str | Path,
    config: LoraTrainConfig,
    init_adapter: str | Path | None = None,
    *,
    seed: int | None = None,
) -> Path:
    """Train a LoRA adapter on (prompt, completion) pairs and save it to ``out_dir``.

    ``base_model_path_or_model``: a folder (the base is loaded, ``tokenizer`` may be
    None), a base model (wrapped with an adapter in place), or a ``PeftModel`` from an
    earlier call (trained in place, which is how a researcher keeps one model). The
    adapter starts from ``init_adapter``'s weights when given, else from a fresh
    initialization drawn from ``seed`` (default ``config.seed``). Deterministic given
    the seed on a CPU; on a GPU up to the non-determinism of its kernels. The model is
    left holding the trained adapter, in eval mode.
    """
    from peft import PeftModel

    if not examples:
        raise ValueError("train_adapter needs at least one example")
    seed = config.seed if seed is None else seed
    model = base_model_path_or_model
    if isinstance(model, (str, Path)):
        device = resolve_device(config.device)
        model, loaded_tok = load_base(model, device, torch.float32 if device.type == "cpu" else torch.bfloat16)
        tokenizer = tokenizer or loaded_tok
    if tokenizer is None:
        raise ValueError("train_adapter needs a tokenizer when given a model object")
    if not isinstance(model, PeftModel):
        model = attach_lora(model, config, seed)
    if init_adapter is not None:
        load_adapter_weights(model, init_adapter)
    else:
        reset_adapter(model, seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = encode_examples(tokenizer, examples, config.max_length)
    log = fit(
        model,
        encoded,
        pad_id,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=seed,
    )
    log.update(examples=len(examples), init=str(init_adapter) if init_adapter else "fresh", seed=seed)
    return save_adapter(model, out_dir, log)
