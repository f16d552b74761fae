"""Import torchvision on machines whose torchvision cannot load its compiled ops.

On a CPU-only machine the registry's torchvision wheel is a CUDA build; its C++ ops
fail to load against CPU torch, and ``import torchvision`` then dies while registering
fake kernels for them, with ``operator torchvision::nms does not exist``
(upstream pytorch/vision#9085).  kdbench never uses those detection ops, but
segmentation-models-pytorch and timm import torchvision.  The workaround: only when
that exact error happens, skip torchvision's ``_meta_registrations`` module (fake
kernels for the missing detection ops) and import again.  Anywhere else torchvision is
imported untouched.
"""

from __future__ import annotations

import sys
import types

NMS_ERROR = "operator torchvision::nms does not exist"


def import_torchvision() -> types.ModuleType | None:
    """Import torchvision, working around pytorch/vision#9085 if (and only if) it hits."""
    try:
        import torchvision
    except ModuleNotFoundError:
        return None
    except RuntimeError as exc:
        if NMS_ERROR not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision
    return torchvision
