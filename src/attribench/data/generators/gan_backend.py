"""A real pretrained GAN offline: the DCGAN (64x64 faces, DigiFace1M) shipped in `gan-face-generate`.

It is unconditional: each prompt slot just fixes the latent seed, and the prompt is recorded only
so that the prompt-disjoint split treats this class like every other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attribench.data.generators.base import Backend, RenderItem, base_provenance, register_backend, resolve_device
from attribench.data.shards import encode_png

NZ, NGF, NC = 100, 64, 3  # the architecture the shipped checkpoint was trained with


def default_weights() -> Path:
    import gan_face_generate

    return Path(gan_face_generate.__file__).parent / "weights.tar"


@register_backend
class GanBackend(Backend):
    name = "gan"

    def load(self, spec: dict, device: str) -> Any:
        import torch
        from gan_face_generate.models import Generator

        weights = Path(spec.get("weights") or default_weights())
        if not weights.is_file():
            raise FileNotFoundError(f"GAN checkpoint not found: {weights}")
        # weights_only: never unpickle arbitrary objects from a checkpoint.
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net = Generator(0, NC, NZ, NGF)
        net.load_state_dict(state["netG_state_dict"])
        label = spec.get("weights") or "gan-face-generate:weights.tar"
        return net.eval().to(resolve_device(device)), label

    def render(self, state: Any, gen: str, spec: dict, items: list[RenderItem]) -> list[dict]:
        import torch
        from PIL import Image

        net, weights = state
        device = next(net.parameters()).device
        z = torch.stack([torch.randn(NZ, 1, 1, generator=torch.Generator("cpu").manual_seed(it.seed)) for it in items])
        with torch.inference_mode():
            out = net(z.to(device)).cpu()
        pix = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [
            dict(image=encode_png(Image.fromarray(p)), format="png", checkpoint=weights, origin="gan-face-generate",
                 width=p.shape[1], height=p.shape[0], **base_provenance(gen, spec, it))
            for it, p in zip(items, pix)
        ]
