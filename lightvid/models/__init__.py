"""The model zoo. Importing this package registers every family (explicitly, below)."""
# Every family module, imported here so the registry never depends on import order.
from lightvid.models import (
    c3d,  # noqa: F401,E402
    cifar,  # noqa: F401,E402
    densenet,  # noqa: F401,E402
    fsb,  # noqa: F401,E402
    googlenet,  # noqa: F401,E402
    highway,  # noqa: F401,E402
    i3d,  # noqa: F401,E402
    resnet,  # noqa: F401,E402
    resnet3d,  # noqa: F401,E402
    stn,  # noqa: F401,E402
    vgg,  # noqa: F401,E402
    x3d,  # noqa: F401,E402
)
from lightvid.models.base import Classifier  # noqa: F401
from lightvid.models.registry import create_model, is_model, list_models, register_model  # noqa: F401
