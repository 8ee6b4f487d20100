"""Methods from the literature run on attribench's bench (see each module's docstring for the paper).

Importing this package registers the attributors `ju_fusion` and `deepfeaturex`.
"""

from attribench.methods import deepfeaturex, jiang_siamese, ju_fusion  # noqa: F401
