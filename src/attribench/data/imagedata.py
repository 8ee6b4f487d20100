"""Images of a dataset index as a torch Dataset, with the paper's transforms (Xu et al. 2024, app. B).

Train: resize the short side to `input_size` (bicubic, antialiased), centre-crop, flip
horizontally with p=0.5. Eval: resize + centre-crop only. Both normalise with ImageNet statistics.
The resize + crop is deterministic, so it is done once and kept as uint8, in memory or in a
streamed pixel file (pixelcache.py, `pixels=`): training then never decodes or resizes again (it
would be input-bound on CPU), and only the flip is random. Items are uint8; the training loop
normalises whole batches on its device (`normalise`, the same numbers as per item on the CPU).
A training dataset may take an augmentation hook (hooks.py, e.g. Ju et al.'s blur + JPEG): it is
drawn per (seed, epoch, image) and applied to the decoded image at its own size, before the resize
(so the encoded bytes are kept for the images it fires on); images it leaves alone use the cache.
An image dataset may also carry one text vector per image (its prompt's embedding, app. B "image
attributors with text prompts"); items are then (image, text vector, label), the text as it is.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from attribench.data.shards import decode

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def decode_pixels(data: bytes) -> torch.Tensor:
    """Encoded image -> uint8 (3, H, W) at its own size."""
    return torch.from_numpy(np.array(decode(data))).permute(2, 0, 1).contiguous()


def resize_crop_pixels(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, size, size): short side to `size`, bicubic + antialias, centre crop."""
    pixels = TF.resize(pixels, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.center_crop(pixels, [size, size])


def resize_crop(data: bytes, size: int) -> torch.Tensor:
    """Encoded image -> uint8 (3, size, size): short side to `size`, bicubic + antialias, centre crop."""
    return resize_crop_pixels(decode_pixels(data), size)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 normalised with ImageNet mean/std, on the pixels' device."""
    mean, std = IMAGENET_MEAN.to(pixels.device), IMAGENET_STD.to(pixels.device)
    return (pixels.float() / 255.0 - mean) / std


class ImageDataset(Dataset):
    """Preprocessed uint8 images, in memory or streamed (`pixels`: a pixelcache.PixelFile, then
    `images` is only needed for an augmentation hook); yields (uint8 image, class index), or
    (uint8 image, text vector, class index) when `text` (n, D) is given."""

    def __init__(
        self,
        images: Sequence[bytes],
        labels: Sequence[int],
        input_size: int,
        train: bool,
        seed: int = 0,
        image_ids: Sequence[str] | None = None,
        text: torch.Tensor | None = None,
        augment=None,
        pixels=None,
    ):
        if pixels is None and len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if text is not None and len(text) != len(labels):
            raise ValueError(f"{len(text)} text vectors but {len(labels)} labels")
        self.text = text.float() if text is not None else None
        self.input_size = input_size
        self.train = train
        self.image_ids = list(image_ids) if image_ids is not None else None
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.pixels = pixels if pixels is not None else (
            torch.stack([resize_crop(b, input_size) for b in images])
            if len(images)
            else torch.empty((0, 3, input_size, input_size), dtype=torch.uint8)
        )
        if len(self.pixels) != len(self.labels):
            raise ValueError(f"{len(self.pixels)} images but {len(self.labels)} labels")
        # Own generator: flips depend only on the seed and the order items are requested in.
        self.flip_rng = torch.Generator().manual_seed(seed)
        # Augmentation hook (training only): draws from its own per-(seed, epoch, item) stream, so the
        # flip stream, and any run without augmentation, is exactly what it was.
        self.augment = augment if train else None
        if self.augment is not None and images is None:
            raise ValueError("an augmentation hook needs the encoded images (images=)")
        self.encoded = images if self.augment is not None else None  # a list, or a streamed EncodedFile
        self.seed, self.epoch = seed, 0
        self.flip = True  # the training loop turns it off and flips whole batches from the same stream

    def set_epoch(self, epoch: int) -> None:
        """The training loop calls this before each epoch: augmentation draws depend on it."""
        self.epoch = int(epoch)

    def train_pixels(self, i: int) -> torch.Tensor:
        """Item i's uint8 training image before the flip: augmented (then resized) or the cached one."""
        if self.augment is not None:
            op = self.augment(np.random.default_rng([self.seed, self.epoch, i]))
            if op is not None:
                return resize_crop_pixels(op(decode_pixels(self.encoded[i])), self.input_size)
        return self.pixels[i]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        pixels = self.train_pixels(i) if self.train else self.pixels[i]
        if self.train and self.flip and torch.rand((), generator=self.flip_rng).item() < 0.5:
            pixels = pixels.flip(-1)
        if self.text is not None:
            return pixels, self.text[i], self.labels[i]
        return pixels, self.labels[i]


def index_dataset(
    index: pd.DataFrame,
    images: dict[str, bytes] | Sequence[bytes] | None,
    classes: Sequence[str],
    input_size: int,
    train: bool,
    seed: int = 0,
    text_inputs: dict[str, torch.Tensor] | None = None,
    augment=None,
    pixels=None,
) -> ImageDataset:
    """Dataset over the rows of `index` (in row order); labels are positions in `classes`.
    images: {image_id: bytes}, a row-aligned sequence of bytes (pixelcache.EncodedFile), or None with
    `pixels` (the rows' streamed pixel file) and no augment.
    text_inputs: {image_id: 1-D text vector} to carry alongside each image; augment: a hook's
    draw(rng) (hooks.make_augmentation), used only when train is True."""
    class_idx = {c: i for i, c in enumerate(classes)}
    ids = index["image_id"].tolist()
    return ImageDataset(
        [images[i] for i in ids] if isinstance(images, dict) else images,
        [class_idx[g] for g in index["generator"]],
        input_size,
        train,
        seed,
        image_ids=ids,
        text=_stack(ids, text_inputs, "text vector") if text_inputs is not None else None,
        augment=augment,
        pixels=pixels,
    )


def _stack(ids: list[str], inputs: dict[str, torch.Tensor], what: str) -> torch.Tensor:
    """(len(ids), D) tensor of inputs[id], row by row; every id must have one."""
    missing = [i for i in ids if i not in inputs]
    if missing:
        raise KeyError(f"{len(missing)} image id(s) have no {what}, e.g. {missing[:3]}")
    return torch.stack([torch.as_tensor(inputs[i]) for i in ids]) if ids else torch.empty((0, 0))


class VectorDataset(Dataset):
    """Precomputed input vectors (frozen features, +text, Gram) held in memory; yields (vector, class
    index) with no augmentation and no normalisation: the vectors are the model's input as they are."""

    def __init__(self, vectors: torch.Tensor, labels: Sequence[int], image_ids: Sequence[str] | None = None):
        if len(vectors) != len(labels):
            raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
        self.vectors = vectors.float()
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.image_ids = list(image_ids) if image_ids is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vectors[i], self.labels[i]


def vector_dataset(index: pd.DataFrame, inputs: dict[str, torch.Tensor], classes: Sequence[str]) -> VectorDataset:
    """Dataset over the rows of `index` (in row order) with inputs[image_id] as each row's input."""
    ids = index["image_id"].tolist()
    class_idx = {c: i for i, c in enumerate(classes)}
    return VectorDataset(_stack(ids, inputs, "input vector"), [class_idx[g] for g in index["generator"]], image_ids=ids)
