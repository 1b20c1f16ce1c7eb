"""``researcher.kind: local-lm``: a local causal LM that proposes methods as JSON and learns by LoRA.

One generation, as the loop sees it:

* ``propose(n, rng)`` samples completions of one prompt (the environment's description
  plus an instruction) from base model + current adapter, through transformers
  ``generate`` or a user's vLLM server; parses each completion's first line as a method
  (``env.parse_method``). Invalid outputs are counted, never raised: up to
  ``resample_rounds`` more rounds replace them, then the batch is returned short. The
  counts are in ``state()`` (``invalid``, ``proposed``, ``invalid_total``).
* ``learn(pool)`` fine-tunes a LoRA adapter on (prompt, accepted method) pairs and saves
  it under ``RUN_DIR/adapters/ARM/seed-S/``: the cohort's first learn (on the real data,
  before generation 0) writes ``initial/``, the learn of generation g writes
  ``gen-{g:03d}/``. An empty pool teaches nothing: the adapter stays.
* ``state()`` names the current adapter (relative to the run directory), so that
  ``ouro resume`` puts a fresh process's researcher back on the adapter of the last
  finished generation.

Torch, transformers and peft (the ``train`` extra) are imported only when a researcher
is built, so configs validate and other experiments run without them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..base import RESEARCHERS, ResearcherConfig
from .config import LoraTrainConfig, TinySpec
from .text import DEFAULT_PROMPT, parse_completion, render_method, render_prompt
from .vllm_adapters import VLLMAdapterClient, VLLMServerConfig, adapter_name

TRAIN_MODULES = ("torch", "transformers", "peft", "safetensors", "tokenizers")


@RESEARCHERS.register
class LocalLMResearcherConfig(ResearcherConfig):
    kind: Literal["local-lm"] = "local-lm"
    model: str = Field(..., description="a local Hugging Face model folder (or cached id), or 'tiny'")
    learner: Literal["lora", "none"] = Field("lora", description="lora: fine-tune each generation; none: frozen model")
    lora: LoraTrainConfig = Field(default_factory=LoraTrainConfig)
    server: VLLMServerConfig | None = Field(None, description="generate through a vLLM server; null: transformers")
    prompt: str = Field(DEFAULT_PROMPT, description="prompt template; {description} is the environment's description")
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="0: greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(64, ge=1, le=4096)
    resample_rounds: int = Field(2, ge=0, le=20, description="extra sampling rounds that replace invalid outputs")
    generation_batch_size: int = Field(64, ge=1, le=4096, description="rows per transformers generate call")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    cpu_threads: int | None = Field(
        None, ge=1, le=1024, description="torch CPU threads for this process (1 is fastest for tiny models)"
    )
    tiny: TinySpec = Field(default_factory=TinySpec, description="the model built when model is 'tiny'")

    def unavailable(self) -> str | None:
        """Why this researcher cannot run in this Python (``None``: it can); the run's
        preflight says it in one line before anything starts."""
        missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
        if not missing:
            return None
        return (
            f"researcher 'local-lm' needs the train extra (missing: {', '.join(missing)}). Install torch first "
            "(https://pytorch.org/get-started: the build for your GPU or CPU), then: pip install 'ouro[train]'"
        )

    def build(self, env: Any) -> "LocalLMResearcher":
        reason = self.unavailable()
        if reason:
            raise ImportError(reason)
        return LocalLMResearcher(self, env)


class LocalLMResearcher:
    def __init__(self, config: LocalLMResearcherConfig, env: Any) -> None:
        self.config = config
        self.env = env
        self.prompt = render_prompt(config.prompt, env.describe())
        self.run_dir: Path | None = None
        self.arm = "arm"
        self.seed = 0
        self.learns = 0  # learn() calls so far; names the next adapter
        self.adapter: Path | None = None  # the current adapter folder; None: the base model
        self.invalid_total = 0
        self.family: dict | None = None  # exact family distribution of the current model
        self._last_propose: dict | None = None
        self._last_train: dict | None = None
        self._model = None
        self._tokenizer = None
        self._holds: Path | None = None  # which adapter the in-memory model's weights equal
        self._client: VLLMAdapterClient | None = None
        self._served: str | None = None

    # ------------------------------------------------------------ wiring
    def bind(self, run_dir: str | Path, arm: str, seed: int) -> None:
        """Where adapters go, and the (arm, seed) they belong to. The cohort calls this once."""
        self.run_dir = Path(run_dir)
        self.arm = arm
        self.seed = int(seed)

    def _root(self) -> Path:
        if self.run_dir is None:  # used outside a run: adapters go to a scratch directory
            self.run_dir = Path(tempfile.mkdtemp(prefix="ouro-local-lm-"))
        return self.run_dir

    def adapters_dir(self) -> Path:
        return self._root() / "adapters" / self.arm / f"seed-{self.seed}"

    def _load_model(self) -> None:
        if self._model is not None:
            return
        import torch

        from .runtime import load_base, resolve_device, resolve_dtype
        from .train import attach_lora

        if self.config.cpu_threads:
            torch.set_num_threads(self.config.cpu_threads)
        device = resolve_device(self.config.lora.device)
        dtype = resolve_dtype(self.config.dtype, device)
        if self.config.model == "tiny":
            from .tiny import ensure_tiny

            path = ensure_tiny(self._root() / "models" / "tiny", self.prompt, self.config.tiny)
        else:
            path = Path(self.config.model).expanduser()
        base, self._tokenizer = load_base(path, device, dtype)
        if self.config.learner == "lora":
            self._model = attach_lora(base, self.config.lora, self._train_seed(0))
        else:
            self._model = base
        self._holds = None

    def _sync_weights(self) -> None:
        """Make the in-memory model equal base + the current adapter (after a load_state)."""
        self._load_model()
        if self.config.learner != "lora" or self._holds == self.adapter:
            return
        from .train import load_adapter_weights, reset_adapter

        if self.adapter is None:
            reset_adapter(self._model, self._train_seed(0))
        else:
            load_adapter_weights(self._model, self.adapter)
        self._holds = self.adapter

    def _train_seed(self, index: int) -> int:
        from .runtime import derive_seed

        return derive_seed(self.config.lora.seed, self.seed, index)

    # ------------------------------------------------------------ proposing
    def propose(self, n: int, rng: np.random.Generator, feedback: Any = None) -> list:
        valid: list = []
        proposed = invalid = tokens_in = tokens_out = 0
        seconds = 0.0
        entropies: list[tuple[float, int]] = []
        for _ in range(1 + self.config.resample_rounds):
            need = n - len(valid)
            if need <= 0:
                break
            seed = int(rng.integers(0, 2**63 - 1))
            texts, t_in, t_out, secs, ent = self._generate(need, seed)
            proposed += len(texts)
            tokens_in, tokens_out, seconds = tokens_in + t_in, tokens_out + t_out, seconds + secs
            if not math.isnan(ent):
                entropies.append((ent, t_out))
            for text in texts:
                method = parse_completion(text, self.env.parse_method)
                if method is None:
                    invalid += 1
                else:
                    valid.append(method)
        self.invalid_total += invalid
        weight = sum(w for _, w in entropies)
        self._last_propose = {
            "proposed": proposed,
            "invalid": invalid,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "seconds": round(seconds, 4),
            "tokens_per_s": round(tokens_out / seconds, 1) if seconds > 0 else None,
            "token_entropy": sum(e * w for e, w in entropies) / weight if weight else None,
        }
        return valid[:n]

    def _generate(self, n: int, seed: int) -> tuple[list[str], int, int, float, float]:
        """n raw completions: (texts, tokens in, tokens out, seconds, mean token entropy or nan)."""
        c = self.config
        if c.server is not None:
            model = self._served_model()
            start = time.perf_counter()
            out = self._client.complete(
                model, self.prompt, n, max_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p, seed=seed
            )
            return out.texts, out.tokens_in, out.tokens_out, time.perf_counter() - start, float("nan")
        from .generate import sample_completions

        self._sync_weights()
        s = sample_completions(
            self._model,
            self._tokenizer,
            self.prompt,
            n,
            seed,
            max_new_tokens=c.max_new_tokens,
            temperature=c.temperature,
            top_p=c.top_p,
            batch_size=c.generation_batch_size,
        )
        return s.texts, s.tokens_in, s.tokens_out, s.seconds, s.token_entropy

    def _served_model(self) -> str:
        """The server-side name of the current adapter, loading it (and dropping the last) if needed."""
        server = self.config.server
        if self._client is None:
            self._client = VLLMAdapterClient(server)
        if self.adapter is None:
            if server.model is None:
                raise ValueError("server.model (the served base model's name) is needed before the first adapter")
            return server.model
        name = adapter_name(self._root().name, self.arm, self.seed, self.adapter.name)
        if name != self._served:
            self._client.load(name, self._client.server_path(self.adapter, self._root()))
            if server.unload_previous and self._served is not None and self._served != server.model:
                self._client.unload(self._served)
            self._served = name
        return name

    # ------------------------------------------------------------ learning
    def learn(self, pool: list) -> None:
        index = self.learns
        self.learns += 1
        if self.config.learner == "lora" and pool:
            from .train import TRAIN_LOG, train_adapter

            self._sync_weights()
            tag = "initial" if index == 0 else f"gen-{index - 1:03d}"
            init = self.adapter if self.config.lora.init == "previous" else None
            examples = [(self.prompt, render_method(m)) for m in pool]
            out = train_adapter(
                self._model,
                self._tokenizer,
                examples,
                self.adapters_dir() / tag,
                self.config.lora,
                init_adapter=init,
                seed=self._train_seed(index),
            )
            self.adapter = self._holds = out
            log = json.loads((out / TRAIN_LOG).read_text())
            self._last_train = {k: log[k] for k in ("examples", "steps", "loss_first", "loss_last", "seconds", "tokens_per_s")}
        else:
            self._last_train = {"examples": 0}
        self.family = self._family_distribution()

    def _family_distribution(self) -> dict | None:
        """The current model's exact distribution over method families (estimators only)."""
        if getattr(self.env, "name", None) != "estimators":
            return None
        from ouro.environments.estimators.methods import FAMILY_NAMES

        from .probe import family_distribution

        self._sync_weights()
        return family_distribution(self._model, self._tokenizer, self.prompt, FAMILY_NAMES)

    def log_likelihood(self, methods: list) -> np.ndarray:
        """log P(method's line, then end of text | prompt): lets a ``model: self`` judge use this researcher."""
        from .generate import completion_logprobs

        self._sync_weights()
        eos = self._tokenizer.eos_token or ""
        return completion_logprobs(self._model, self._tokenizer, self.prompt, [render_method(m) + eos for m in methods])

    # ------------------------------------------------------------ state
    def state(self) -> dict:
        root = self._root()
        return {
            "adapter": None if self.adapter is None else self.adapter.resolve().relative_to(root.resolve()).as_posix(),
            "learns": self.learns,
            "invalid": None if self._last_propose is None else self._last_propose["invalid"],
            "proposed": None if self._last_propose is None else self._last_propose["proposed"],
            "invalid_total": self.invalid_total,
            "family": self.family,
            "propose": self._last_propose,
            "train": self._last_train,
        }

    def load_state(self, state: dict) -> None:
        """Back to a recorded state; the adapter's weights are loaded when next needed."""
        self.learns = int(state["learns"])
        self.adapter = None if state.get("adapter") is None else self._root() / state["adapter"]
        if self.adapter is not None and not (self.adapter / "adapter_model.safetensors").is_file():
            raise FileNotFoundError(f"the recorded adapter {self.adapter} is missing: cannot resume this researcher")
        self.invalid_total = int(state.get("invalid_total", 0))
        self.family = state.get("family")
        self._last_propose = self._last_train = None
