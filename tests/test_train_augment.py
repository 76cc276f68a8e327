"""Augmentation and regularisation keys: each does what it says (lightvid.train.augment)."""
import math

import lightning as L
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.errors import UserError
from lightvid.train.augment import (
    Mixer,
    TemporalRandAugment,
    WeightEMA,
    cutmix_box,
    repeated_order,
)
from lightvid.train.config import load_config
from lightvid.train.datamodule import EpochSampler
from lightvid.train.module import ClassificationModule


def _clip_batch(b=6, t=4, h=16, w=16):
    # every sample constant in space and time, distinct per sample: a mix is easy to read off
    return torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, 3, t, h, w).contiguous()


def test_cutmix_box_is_the_same_on_every_frame_and_targets_follow_the_area():
    torch.manual_seed(0)
    x, y = _clip_batch(), torch.arange(6)
    mixer = Mixer(num_classes=6, cutmix_alpha=1.0)
    mixed, target = mixer(x, y, torch.Generator().manual_seed(3))
    changed = (mixed != x).any(dim=1)  # (B, T, H, W)
    assert changed.any()
    for b in range(6):
        for t in range(1, 4):
            assert torch.equal(changed[b, t], changed[b, 0])  # one box through time
        kept = 1.0 - changed[b, 0].float().mean().item()
        if changed[b, 0].any():
            assert target[b, b].item() == pytest.approx(kept, abs=1e-6)  # lam is the area actually kept
    assert torch.allclose(target.sum(1), torch.ones(6))


def test_cutmix_box_area_matches_lambda():
    top, bottom, left, right = cutmix_box(100, 100, 0.75, torch.Generator().manual_seed(0))
    assert (bottom - top) * (right - left) <= 0.25 * 100 * 100 + 1


def test_mixup_mixes_whole_clips_with_one_lambda():
    x, y = _clip_batch(), torch.arange(6)
    mixed, target = Mixer(num_classes=6, mixup_alpha=0.4)(x, y, torch.Generator().manual_seed(1))
    for b in range(6):
        assert torch.all(mixed[b] == mixed[b, 0, 0, 0, 0])  # same mix on every pixel of every frame
        partners = target[b].nonzero().flatten().tolist()
        value = sum(target[b, p].item() * p for p in partners)
        assert mixed[b, 0, 0, 0, 0].item() == pytest.approx(value, abs=1e-5)


def test_mixer_off_gives_one_hot_targets_and_the_same_batch():
    x, y = _clip_batch(), torch.tensor([0, 1, 2, 0, 1, 2])
    mixed, target = Mixer(num_classes=3)(x, y)
    assert mixed is x and torch.equal(target, F.one_hot(y, 3).float())


def test_randaugment_same_op_and_magnitude_on_every_frame():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (1, 24, 24, 3), dtype=torch.uint8)
    clip = frame.expand(5, 24, 24, 3).contiguous()  # five identical frames
    ra = TemporalRandAugment(num_ops=2, magnitude=9)
    for seed in range(20):
        out = ra(clip, torch.Generator().manual_seed(seed))
        assert out.dtype == torch.uint8 and out.shape == clip.shape
        for t in range(1, 5):
            assert torch.equal(out[t], out[0])  # identical frames stay identical: one draw per clip
    changed = sum(not torch.equal(ra(clip, torch.Generator().manual_seed(s)), clip) for s in range(20))
    assert changed >= 10  # and it does change clips


@pytest.mark.parametrize("op", TemporalRandAugment().ops)
def test_each_randaugment_op_runs_and_identity_is_identity(op):
    clip = torch.randint(50, 200, (3, 20, 20, 3), dtype=torch.uint8)  # not full range: autocontrast acts
    out = TemporalRandAugment(num_ops=1, ops=(op,)).apply(clip, [(op, 0.8, 1.0)])
    assert out.shape == clip.shape
    assert torch.equal(out, clip) == (op == "identity")


def test_label_smoothing_changes_the_loss_as_the_formula_says():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 2])
    eps = 0.2
    m0 = ClassificationModule("r3d_10", 3, {"width_mult": 0.0625})
    m1 = ClassificationModule("r3d_10", 3, {"width_mult": 0.0625}, optim={"label_smoothing": eps})
    logp = logits.log_softmax(1)
    want = -((1 - eps) * logp.gather(1, y[:, None]).squeeze(1) + eps * logp.mean(1)).mean()
    assert m1.compute_loss(logits, y, None).item() == pytest.approx(want.item(), rel=1e-6)
    assert m1.compute_loss(logits, y, None).item() > m0.compute_loss(logits, y, None).item()


def test_repeated_augmentation_keeps_the_epoch_length_and_groups_copies():
    assert repeated_order([5, 3, 9, 1, 0, 2, 7], 3) == [5, 5, 5, 3, 3, 3, 9]
    s = EpochSampler(12, seed=1, repeats=3)
    order = list(s)
    assert len(order) == 12 and len(set(order)) == 4
    assert all(order[i] == order[i - i % 3] for i in range(12))


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_ema_weights_follow_the_formula_and_differ_from_the_raw_ones():
    torch.manual_seed(0)
    module = _Tiny()
    ema = WeightEMA(decay=0.9)
    snaps = []

    class Snap(L.Callback):  # raw weights after each optimiser step
        def on_train_batch_end(self, trainer, pl_module, *args):
            snaps.append({k: v.clone() for k, v in pl_module.model.state_dict().items()})

    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,)))
    trainer = L.Trainer(max_epochs=1, callbacks=[ema, Snap()], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    assert len(snaps) == 4
    expect = {k: v.float().clone() for k, v in snaps[0].items()}  # the first update copies
    for snap in snaps[1:]:
        for k, value in expect.items():
            if snap[k].is_floating_point():
                expect[k] = 0.9 * value + 0.1 * snap[k]
    got = ema.ema_state_dict()
    for k in ("0.weight", "1.weight", "1.running_mean"):  # (0.bias gets no gradient in front of a BN)
        assert torch.allclose(got[k], expect[k], atol=1e-6), k
        assert not torch.allclose(got[k], snaps[-1][k]), k  # not the raw weights


def test_grad_clip_bounds_the_step():
    torch.manual_seed(0)

    class Big(_Tiny):
        def training_step(self, batch, batch_idx):
            return 1000 * super().training_step(batch, batch_idx)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1.0)  # the step is the (clipped) gradient

    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    steps = {}
    for clip in (None, 0.5):
        module = Big()
        before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
        trainer = L.Trainer(max_steps=1, gradient_clip_val=clip, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
        after = torch.cat([p.detach().flatten() for p in module.parameters()])
        steps[clip] = (after - before).norm().item()
    assert steps[None] > 5 and steps[0.5] == pytest.approx(0.5, rel=1e-3)


@pytest.mark.parametrize("override, words", [
    ("augment.mixup_alpha=-1", "augment.mixup_alpha"),
    ("augment.mix_prob=2", "augment.mix_prob"),
    ("augment.repeats=0", "augment.repeats"),
    ("augment.ema_decay=1.5", "augment.ema_decay"),
    ("augment.randaugment_magnitude=11", "augment.randaugment_magnitude"),
    ("augment.cutmx_alpha=1", "cutmix_alpha"),
    ("optim.label_smoothing=1.0", "optim.label_smoothing"),
    ("trainer.grad_clip=0", "trainer.grad_clip"),
])
def test_bad_augment_keys_name_the_key(override, words):
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    with pytest.raises(UserError) as e:
        load_config(cfg, [override])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_training_with_every_key_runs_and_the_checkpoint_holds_the_ema(tiny_synth, tmp_path):
    from lightvid.train.run import train
    from tests.test_train_run import REPO, tiny_overrides

    class Watch(L.Callback):  # what each config key turned into inside the run
        def __init__(self):
            self.pairs, self.differ, self.grad_norms, self.seen = 0, 0, [], {}

        def on_train_start(self, trainer, pl_module):
            self.seen = dict(clip=trainer.gradient_clip_val, smoothing=pl_module.label_smoothing,
                             mixup=pl_module.mixer.mixup_alpha, cutmix=pl_module.mixer.cutmix_alpha,
                             policy=type(trainer.datamodule.policy).__name__,
                             ema=[c.decay for c in trainer.callbacks if isinstance(c, WeightEMA)])

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            x, _, videos, _ = batch  # repeats=2: each clip twice in a row, augmented independently
            for i in range(0, x.shape[0] - 1, 2):
                self.pairs += int(videos[i] == videos[i + 1])
                self.differ += int(not torch.equal(x[i], x[i + 1]))

        def on_train_batch_end(self, trainer, pl_module, *args):  # gradients as the optimiser used them
            grads = [p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]
            self.grad_norms.append(torch.cat(grads).norm().item())

    watch = Watch()
    over = tiny_overrides(tiny_synth, epochs=1) + [
        "augment.mixup_alpha=0.2", "augment.cutmix_alpha=1.0", "augment.randaugment_ops=2", "augment.repeats=2",
        "augment.ema_decay=0.9", "optim.label_smoothing=0.1", "trainer.grad_clip=0.01", "trainer.final_eval=false"]
    cfg = load_config(REPO / "configs" / "quickstart.yaml", over)
    report = train(cfg, tmp_path / "run", callbacks=[watch])
    assert watch.seen == dict(clip=0.01, smoothing=0.1, mixup=0.2, cutmix=1.0, policy="TemporalRandAugment",
                              ema=[0.9])
    n_batches = len(watch.grad_norms)
    assert n_batches == 4 and watch.pairs == 2 * n_batches  # 16 clips, batch 4: two clips twice per batch
    assert watch.differ >= 1  # the copies are augmented differently
    assert max(watch.grad_norms) <= 0.01 * (1 + 1e-4)  # every step used a clipped gradient
    assert 0.0 <= report["val_top1_video"] <= 1.0
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    raw = ck["ema_raw_state_dict"]
    assert raw and any(not torch.equal(raw[k], ck["state_dict"][k]) for k in raw if raw[k].is_floating_point())
    assert not math.isnan(report["val_top1_video"])
