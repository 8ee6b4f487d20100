"""DALL-E through the OpenAI images API: accepted by the registry now, implemented with the OpenAI issue."""

from __future__ import annotations

from typing import Any

from attribench.generators.base import Backend, RenderItem, register_backend


class BackendNotConfigured(RuntimeError):
    pass


@register_backend
class OpenAIBackend(Backend):
    name = "openai"

    def load(self, spec: dict, device: str) -> Any:
        raise BackendNotConfigured(
            f"generator backend 'openai' (model {spec.get('model')}) is not configured yet: the DALL-E backend "
            "arrives with the OpenAI issue. Disable this generator (enabled: false) or import its images with the "
            "'folder' backend."
        )

    def render(self, state: Any, gen: str, spec: dict, items: list[RenderItem]) -> list[dict]:
        raise BackendNotConfigured("generator backend 'openai' is not configured yet")
