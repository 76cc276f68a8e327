"""lightvid: build, measure, train, compress and accelerate ConvNets for video and images."""
import importlib

from lightvid.models import create_model, list_models, register_model  # noqa: F401

__version__ = "0.1.0"

# Heavier entry points, imported on first use so `import lightvid` stays light.
_LAZY = {
    "accelerate": "lightvid.accel.winograd",
    "optimize": "lightvid.accel.backends",
    "inflate": "lightvid.compress.inflate",
    "summarize": "lightvid.analysis.summary",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lightvid' has no attribute {name!r}")
