"""Attributor registry: name -> builder(spec, num_classes) -> torch.nn.Module.

Adding an attributor is one module with a `@register("name")` builder plus its import in
`attributors/__init__.py`; the training code only ever goes through `build_attributor`.
"""

from __future__ import annotations

from typing import Callable

import torch

Builder = Callable[[dict, int], torch.nn.Module]
ATTRIBUTORS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        if name in ATTRIBUTORS:
            raise ValueError(f"attributor {name!r} is already registered")
        ATTRIBUTORS[name] = fn
        return fn

    return deco


def build_attributor(name: str, spec: dict, num_classes: int) -> torch.nn.Module:
    try:
        builder = ATTRIBUTORS[name]
    except KeyError:
        raise KeyError(f"unknown attributor {name!r}; registered: {sorted(ATTRIBUTORS)}") from None
    return builder(spec, num_classes)
