"""Temporal residual gradient (the light-weight 3D networks review): exact values, inverse, and the
create_model wrapper."""
import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.models.base import Classifier, make_cfg
from lightvid.models.input_transforms import (
    TemporalResidualGradient,
    inverse_temporal_residual_gradient,
    temporal_residual_gradient,
    with_input_transform,
)


def test_exact_values_mean_first_then_forward_differences():
    # one channel, 4 frames, 1x2 pixels: frame t holds (t^2, 10 t)
    t = torch.arange(4.0)
    x = torch.stack([t ** 2, 10 * t], dim=-1).reshape(1, 4, 1, 2)  # (C=1, T=4, H=1, W=2)
    g = temporal_residual_gradient(x)
    assert g.shape == x.shape
    torch.testing.assert_close(g[0, :, 0, 0], torch.tensor([3.5, 1.0, 3.0, 5.0]))  # mean 14/4; 1-0, 4-1, 9-4
    torch.testing.assert_close(g[0, :, 0, 1], torch.tensor([15.0, 10.0, 10.0, 10.0]))


def test_batch_matches_clip_and_inverse_round_trips():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 6, 5, 4)
    g = temporal_residual_gradient(x)
    torch.testing.assert_close(g[1], temporal_residual_gradient(x[1]))
    torch.testing.assert_close(inverse_temporal_residual_gradient(g), x, atol=1e-5, rtol=1e-5)
    # a static ("boring") clip has zero residuals and its frame as the mean
    still = x[:, :, :1].expand(-1, -1, 6, -1, -1)
    gs = temporal_residual_gradient(still)
    assert gs[:, :, 1:].abs().max() == 0
    torch.testing.assert_close(gs[:, :, 0], x[:, :, 0])


def test_data_pipeline_callable_takes_uint8_and_rejects_bad_shapes():
    clip = torch.randint(0, 255, (3, 8, 4, 4), dtype=torch.uint8)
    g = temporal_residual_gradient(clip)
    assert g.dtype == torch.float32 and g.shape == (3, 8, 4, 4)
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        temporal_residual_gradient(torch.zeros(3, 4, 4))


def test_trg_model_is_the_inner_model_on_trg_input():
    torch.manual_seed(0)
    wrapped = lightvid.create_model("c3d", num_classes=5, width_mult=0.125, input_transform="trg").eval()
    plain = lightvid.create_model("c3d", num_classes=5, width_mult=0.125).eval()
    plain.load_state_dict(wrapped.model.state_dict())
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), plain(temporal_residual_gradient(x)))
        torch.testing.assert_close(wrapped.forward_head(wrapped.forward_features(x)), wrapped(x))
    assert wrapped.model.conv1.in_channels == 3  # TRG keeps C x T: the first layer keeps its shape
    cfg = wrapped.default_cfg
    assert cfg["input_transform"] == "trg" and cfg["architecture"] == "c3d" and cfg["input_size"][0] == 3
    assert isinstance(wrapped, Classifier) and wrapped.num_classes == 5
    assert sum(p.numel() for p in wrapped.head_parameters()) == sum(p.numel() for p in plain.head_parameters())
    wrapped.train()
    wrapped(x).pow(2).mean().backward()
    assert all(p.grad is not None for p in wrapped.parameters())
    wrapped.eval()
    wrapped.reset_classifier(0)
    with torch.no_grad():
        assert wrapped(x).shape == (2, wrapped.num_features)


def test_rgb_trg_doubles_the_first_layer_inputs():
    m = lightvid.create_model("x3d_xs", num_classes=4, width_mult=0.25, input_transform="rgb_trg").eval()
    assert m.model.stem_xy.in_channels == 6
    assert m.default_cfg["input_size"] == (3, 4, 160, 160)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert m(x).shape == (1, 4)
    both = TemporalResidualGradient(keep_rgb=True)(x)
    torch.testing.assert_close(both[:, :3], x)
    torch.testing.assert_close(both[:, 3:], temporal_residual_gradient(x))


class _Image(Classifier):
    def __init__(self, in_chans=3, **kwargs):
        super().__init__()
        self.init_head(4, 2, video=False)
        self.default_cfg = make_cfg((in_chans, 8, 8), "none")


def test_errors():
    with pytest.raises(ValueError, match="unknown input_transform 'tgr'"):
        lightvid.create_model("c3d", input_transform="tgr")
    with pytest.raises(ValueError, match="needs a video model"):
        with_input_transform(_Image, "trg")
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        TemporalResidualGradient()(torch.zeros(3, 4, 4, 4))
    assert isinstance(TemporalResidualGradient(), nn.Module)
