"""Methods from the literature run on attribench's bench (see each module's docstring for the paper).

Importing this package registers the attributors `ju_fusion`, `deepfeaturex`, `jiang_siamese` and
`jiang_probe`, and the `supcon` trainer (attribench.training.trainers).
"""

from attribench.core.registry import import_submodules

import_submodules(__name__)  # every method module registers its attributors, trainers and hooks
