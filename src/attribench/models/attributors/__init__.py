"""Image attributors: classifiers that name the generator of an image. One registry entry each."""

from attribench.models.attributors.registry import ATTRIBUTORS, build_attributor, register  # noqa: F401

# Importing the modules registers their builders.
from attribench.models.attributors import finetune, heads, timm_scratch  # noqa: F401,E402
from attribench.models.attributors import text_fusion  # noqa: F401,E402
