"""Weight-update learning for local models: LoRA adapters trained between generations.

Importing this package registers ``researcher.kind: local-lm`` and imports no torch;
``train``, ``generate``, ``tiny`` and ``runtime`` need the ``train`` extra.
"""

from .config import LoraTrainConfig, TinySpec
from .researcher import LocalLMResearcher, LocalLMResearcherConfig
from .vllm_adapters import VLLMAdapterClient, VLLMServerConfig

__all__ = [
    "LocalLMResearcher",
    "LocalLMResearcherConfig",
    "LoraTrainConfig",
    "TinySpec",
    "VLLMAdapterClient",
    "VLLMServerConfig",
]
