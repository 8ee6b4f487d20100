"""Methods from the literature run on attribench's bench (see each module's docstring for the paper).

Importing this package registers the attributors `ju_fusion`, `deepfeaturex`, `jiang_siamese` and
`jiang_probe`, and the `supcon` trainer (attribench.training.trainers).
"""

from attribench.methods import deepfeaturex, jiang_siamese, ju_fusion  # noqa: F401
from attribench.methods import jiang_train  # noqa: F401,E402
