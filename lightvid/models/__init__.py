"""The model zoo. Importing this package registers every family (explicitly, below)."""
from lightvid.models.registry import create_model, is_model, list_models, register_model  # noqa: F401
from lightvid.models.base import Classifier  # noqa: F401

# Every family module, imported here so the registry never depends on import order.
from lightvid.models import c3d  # noqa: F401,E402
