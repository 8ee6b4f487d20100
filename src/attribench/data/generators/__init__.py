"""Generator backends. A generator in params.yaml names a backend; each backend is one registry entry."""

from attribench.data.generators.base import BACKENDS, Backend, RenderItem, get_backend, register_backend  # noqa: F401

# Importing the modules registers their backends.
from attribench.data.generators import diffusers_backend, folder_backend, gan_backend, openai_backend  # noqa: F401,E402
