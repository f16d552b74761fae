"""kdbench: a benchmark suite and leaderboard toolkit for knowledge distillation in
medical image segmentation.

The public API mirrors timm: ``create_model`` / ``list_models``, ``create_method`` /
``list_methods``, ``create_dataset`` / ``list_datasets``, plus ``load_grid``,
``build_plan`` and ``run_grid`` for whole benchmarks.
"""

from kdbench._compat import import_torchvision

import_torchvision()

__version__ = "0.1.0"

from kdbench.datasets import create_dataset, list_datasets, register_dataset  # noqa: E402
from kdbench.methods import create_method, list_methods, register_method  # noqa: E402
from kdbench.models import create_model, list_models, register_model  # noqa: E402

__all__ = [
    "__version__", "create_dataset", "create_method", "create_model", "list_datasets",
    "list_methods", "list_models", "register_dataset", "register_method", "register_model",
]
