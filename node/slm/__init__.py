"""Model-backed agents: chat backends, the embedded SmolLM2 server and :class:`SLMAgent`."""

from .agent import ConfidencePolicy, ModelSkill, SLMAgent, Tier
from .backends import (
    BackendError,
    Capabilities,
    ChatBackend,
    ChatRequest,
    ChatResult,
    OpenAIChatBackend,
    Price,
    ScriptedBackend,
)

__all__ = [
    "BackendError",
    "Capabilities",
    "ChatBackend",
    "ChatRequest",
    "ChatResult",
    "ConfidencePolicy",
    "ModelSkill",
    "OpenAIChatBackend",
    "Price",
    "SLMAgent",
    "ScriptedBackend",
    "Tier",
]
