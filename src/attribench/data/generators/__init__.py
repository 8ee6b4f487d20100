"""Generator backends. A generator in params.yaml names a backend; each backend is one registry entry."""

from attribench.data.generators.base import BACKENDS, Backend, RenderItem, get_backend, register_backend  # noqa: F401

from attribench.core.registry import import_submodules  # noqa: E402

import_submodules(__name__)  # every module here registers its backend
