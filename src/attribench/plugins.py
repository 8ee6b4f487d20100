"""The one place that loads every plugin. Importing a plugin module registers its entries; registries
themselves are leaf modules that import no plugin, so nothing depends on import order elsewhere.

Loaded by the CLI, by experiment runs and by the tests: generator backends, prompt sources, transforms,
attributors (the package's own and the literature methods'), training hooks and trainers.
"""

from attribench.data import generators  # noqa: F401  diffusers, gan, folder, openai backends
from attribench import transforms  # noqa: F401  perturbations, representations, learned, inpainting, patches
from attribench.models import attributors  # noqa: F401  timm_scratch, heads, finetune, text fusion
from attribench import methods  # noqa: F401  ju_fusion, deepfeaturex, jiang_* attributors; supcon trainer; their hooks
