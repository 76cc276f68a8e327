"""The model zoo. Importing this package registers every family (explicitly, below)."""
from lightvid.models.registry import create_model, is_model, list_models, register_model  # noqa: F401
from lightvid.models.base import Classifier  # noqa: F401

# Every family module, imported here so the registry never depends on import order.
from lightvid.models import c3d  # noqa: F401,E402
from lightvid.models import resnet3d  # noqa: F401,E402
from lightvid.models import fsb  # noqa: F401,E402
from lightvid.models import googlenet  # noqa: F401,E402
from lightvid.models import i3d  # noqa: F401,E402
from lightvid.models import x3d  # noqa: F401,E402
from lightvid.models import vgg  # noqa: F401,E402
from lightvid.models import resnet  # noqa: F401,E402
from lightvid.models import densenet  # noqa: F401,E402
from lightvid.models import highway  # noqa: F401,E402
from lightvid.models import cifar  # noqa: F401,E402
from lightvid.models import stn  # noqa: F401,E402
from lightvid.models import plain3d  # noqa: F401,E402
