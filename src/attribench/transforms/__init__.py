"""Image transforms: perturbations (Fig. 6, JPEG) and mid-level representations (Fig. 7), one registry.

Images are numpy uint8 (N, H, W, 3) RGB in and out (see `registry`). Typical use:

    from attribench.transforms import apply, apply_to_shard, availability, make_spec
    out = apply({"name": "gaussian_blur", "radius": 5}, images)
    apply_to_shard("in.parquet", "out.parquet", {"name": "jpeg", "quality": 50})
    availability({"name": "depth"})  # "ok" | "needs weights" | "not available"

Adding a transform is one `@register(...)` function in any module of this package.
"""

from attribench.core.registry import import_submodules  # noqa: E402
from attribench.transforms.derive import apply_to_shard, compose, transform_chain  # noqa: F401,E402
from attribench.transforms.registry import (  # noqa: F401
    AVAILABILITY,
    TRANSFORMS,
    BatchMeta,
    NeedsWeights,
    NotAvailable,
    Transform,
    apply,
    availability,
    encode,
    get,
    make_spec,
    register,
    spec_json,
)

import_submodules(__name__)  # every module here registers its transforms
