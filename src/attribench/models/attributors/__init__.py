"""Image attributors: classifiers that name the generator of an image. One registry entry each."""

from attribench.models.attributors.registry import ATTRIBUTORS, build_attributor, register  # noqa: F401

from attribench.core.registry import import_submodules  # noqa: E402

import_submodules(__name__)  # every module here registers its builders
