"""Settings of LoRA fine-tuning between generations.

Kept free of torch imports, so that a YAML config naming ``learner: lora`` validates
(and ``ouro run`` of any other experiment works) on an install without the train extra.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LoraTrainConfig(BaseModel):
    """How each generation's adapter is trained on the pool (prompt -> accepted proposal).

    ``init`` is the choice the model-collapse literature makes both ways: ``previous``
    continues from the last generation's adapter, so changes compound like repeated
    fine-tuning of one model; ``base`` starts every generation from the same fresh
    adapter on the base model, so each generation is the base model fitted to the last
    generation's outputs only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(16, ge=1, le=1024, description="LoRA rank r")
    alpha: float = Field(32.0, gt=0, description="LoRA scaling numerator: updates are scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    learning_rate: float = Field(2e-4, gt=0, le=1.0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    epochs: int = Field(3, ge=1, le=1000, description="passes over the pool per generation")
    batch_size: int = Field(16, ge=1, le=4096, description="examples per optimizer step")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    init: Literal["previous", "base"] = Field("previous", description="continue the last adapter, or start fresh")
    max_length: int = Field(512, ge=8, le=131072, description="prompt + completion tokens; longer prompts lose their start")
    target_modules: list[str] | None = Field(
        None, description="module names to adapt; null: peft's default for the architecture (GPT-2: c_attn)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu")
    seed: int = Field(0, ge=0, description="mixed with the loop's seed and the generation for every training run")


class TinySpec(BaseModel):
    """A tiny GPT-2 built from a config and pre-trained on the real methods, for tests and demos.

    About 120k parameters with the defaults: big enough to learn the JSON format and the
    corpus's mix of families in a few seconds on a CPU, small enough that a LoRA step
    takes milliseconds. Nothing is downloaded: the tokenizer is character-level, built
    from the corpus and printable ASCII.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layer: int = Field(2, ge=1, le=48)
    n_head: int = Field(2, ge=1, le=64)
    n_embd: int = Field(64, ge=8, le=4096)
    n_positions: int = Field(256, ge=32, le=8192)
    pretrain_steps: int = Field(150, ge=0, le=1_000_000)
    pretrain_learning_rate: float = Field(5e-3, gt=0, le=1.0)
    pretrain_batch_size: int = Field(32, ge=1, le=4096)
    seed: int = Field(0, ge=0)
