"""The model zoo. Importing this package registers every family (explicitly, below)."""
# Every family module, imported here so the registry never depends on import order.
from lightvid.models import (  # noqa: F401
    c3d,
    cifar,
    densenet,
    fsb,
    googlenet,
    highway,
    i3d,
    plain3d,
    resnet,
    resnet3d,
    sint,
    stn,
    vgg,
    x3d,
)
from lightvid.models.base import Classifier  # noqa: F401
from lightvid.models.registry import create_model, is_model, list_models, register_model  # noqa: F401
