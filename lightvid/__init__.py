"""lightvid: build, measure, train, compress and accelerate ConvNets for video and images."""
from lightvid.models import create_model, list_models, register_model  # noqa: F401

__version__ = "0.1.0"
