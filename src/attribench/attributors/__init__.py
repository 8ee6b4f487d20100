"""Image attributors: classifiers that name the generator of an image. One registry entry each."""

from attribench.attributors.registry import ATTRIBUTORS, build_attributor, register  # noqa: F401

# Importing the modules registers their builders.
from attribench.attributors import finetune, heads, timm_scratch  # noqa: F401,E402
from attribench.attributors import text_fusion  # noqa: F401,E402
from attribench import methods  # noqa: F401,E402  (ju_fusion, deepfeaturex)
