"""Attributor registry: name -> builder(spec, num_classes) -> torch.nn.Module.

Adding an attributor is one module with a `@register("name")` builder plus its import in
`attributors/__init__.py`; the training code only ever goes through `build_attributor`.
"""

from __future__ import annotations

from typing import Callable

import torch

from attribench.core.registry import Registry

Builder = Callable[[dict, int], torch.nn.Module]
ATTRIBUTORS = Registry("attributor")
register = ATTRIBUTORS.register


def build_attributor(name: str, spec: dict, num_classes: int) -> torch.nn.Module:
    return ATTRIBUTORS.lookup(name)(spec, num_classes)
