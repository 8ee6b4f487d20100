"""The project's two offline prompt grammars: COCO-style scene captions and creative/surreal prompts
in the style of popular T2I prompts (Xu et al. Fig. 11). Deterministic for a seed."""

from __future__ import annotations

import random
import re
from typing import Callable

_NATURAL = {
    "subject": [
        "a man", "a woman", "a young boy", "a little girl", "two people", "a group of friends",
        "an elderly couple", "a dog", "a black cat", "a brown horse", "a herd of sheep", "a flock of birds",
        "a giraffe", "an elephant", "a zebra", "a cow", "a teddy bear", "a red bus", "a yellow taxi",
        "a train", "a small boat", "a motorcycle", "a bicycle", "a skateboarder", "a surfer", "a chef",
    ],
    "action": [
        "standing next to", "walking along", "sitting on", "riding down", "parked near", "resting beside",
        "looking at", "crossing", "waiting by", "playing in", "eating near", "running across",
    ],
    "place": [
        "a busy city street", "a wooden bench", "a sandy beach", "a grassy field", "a kitchen counter",
        "a snowy hillside", "a train platform", "a park path", "a river bank", "a dining table",
        "a fenced pasture", "a parking lot", "a tennis court", "a living room couch", "a harbour",
    ],
    "detail": [
        "on a sunny day", "in the rain", "at dusk", "in the early morning", "under a cloudy sky",
        "with trees in the background", "near a row of houses", "while people watch", "", "", "",
    ],
}

_CREATIVE = {
    "subject": [
        "a clockwork whale", "a crystal fox", "an astronaut knight", "a floating lighthouse",
        "a cybernetic eagle", "a library of glowing books", "a dragon made of autumn leaves",
        "a steampunk tea party", "a neon samurai", "a giant snail carrying a village",
        "an underwater cathedral", "a robot gardener", "a phoenix of stained glass", "a moon-sized jellyfish",
        "a wizard's observatory", "a cat emperor on a throne", "a desert made of sugar", "a mechanical owl",
    ],
    "setting": [
        "drifting above a cyberpunk city", "in a bioluminescent forest", "on the rings of Saturn",
        "inside a melting clock tower", "over an ocean of clouds", "in a candy-coloured dreamscape",
        "at the edge of a cosmic waterfall", "in a ruined art deco palace", "among floating islands",
        "in a labyrinth of mirrors",
    ],
    "style": [
        "in the style of Salvador Dali", "in the style of Moebius", "in the style of Studio Ghibli",
        "in the style of H.R. Giger", "as an ukiyo-e woodblock print", "as a vaporwave poster",
        "as a baroque oil painting", "in the style of Simon Stalenhag", "as a pixel art scene",
        "as a watercolour illustration", "in the style of Alphonse Mucha", "as a low-poly render",
    ],
    "finish": [
        "hyper-detailed, 8k", "volumetric lighting, trending on artstation", "vibrant colours, intricate details",
        "cinematic composition, dramatic lighting", "soft pastel palette, dreamy atmosphere",
        "octane render, highly detailed",
    ],
}


def _natural(rng: random.Random) -> str:
    g = _NATURAL
    text = f"{rng.choice(g['subject'])} {rng.choice(g['action'])} {rng.choice(g['place'])} {rng.choice(g['detail'])}"
    text = re.sub(r"\s+", " ", text).strip()
    return text[0].upper() + text[1:] + "."


def _creative(rng: random.Random) -> str:
    g = _CREATIVE
    return f"{rng.choice(g['subject']).capitalize()} {rng.choice(g['setting'])}, {rng.choice(g['style'])}, {rng.choice(g['finish'])}"


GRAMMARS: dict[str, Callable[[random.Random], str]] = {"natural": _natural, "creative": _creative}


def grammar_prompts(style: str, count: int, seed: int = 0) -> list[str]:
    """`count` distinct prompts, deterministic in (style, seed)."""
    if style not in GRAMMARS:
        raise KeyError(f"prompt style '{style}' is not one of {sorted(GRAMMARS)}")
    rng, seen, out = random.Random(f"{style}:{seed}"), set(), []
    for _ in range(count * 200):
        text = GRAMMARS[style](rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
            if len(out) == count:
                return out
    raise ValueError(f"the {style} grammar yields only {len(out)} distinct prompts; asked for {count}")
