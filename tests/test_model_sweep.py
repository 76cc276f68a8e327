"""One test sweeps every registered model: shape, finiteness, gradients, interface."""
import pytest
import torch

import lightvid
from lightvid.models.base import Classifier

SWEEP_CLASSES = 7


def small_input(model):
    cfg = model.default_cfg
    size = cfg.get("test_input_size") or cfg["input_size"]
    return torch.randn(2, *size)


@pytest.mark.parametrize("name", lightvid.list_models())
def test_every_model(name):
    torch.manual_seed(0)
    model = lightvid.create_model(name, num_classes=SWEEP_CLASSES, width_mult=0.25)
    assert isinstance(model, Classifier)
    cfg = model.default_cfg
    assert cfg["architecture"] == name
    assert len(cfg["input_size"]) in (3, 4) and len(cfg["mean"]) == len(cfg["std"]) and cfg["paper"]
    x = small_input(model)
    model.train()
    out = model(x)
    assert out.shape == (2, SWEEP_CLASSES)
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None)]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    # the interface: features -> head == forward; reset_classifier; pooled features
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
        model.reset_classifier(0)
        feats = model(x)
        assert feats.shape == (2, model.num_features)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)


def test_registry_errors():
    with pytest.raises(KeyError, match="c3d"):
        lightvid.create_model("c3dd")
    with pytest.raises(ValueError, match="already registered"):
        @lightvid.register_model
        def c3d(**kwargs):  # noqa: F811
            return None
    assert "c3d_mc4" in lightvid.list_models("c3d_mc*")


def test_num_classes_zero_returns_pooled_features():
    m = lightvid.create_model("c3d", num_classes=0, width_mult=0.125).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 16, 32, 32)).shape == (1, m.num_features)
