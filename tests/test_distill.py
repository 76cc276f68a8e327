"""Knowledge distillation: the loss, the frozen teacher, the cache, the hint and a tiny run."""
import math

import pytest
import torch

import lightvid
from lightvid.compress.distill import DistillationModule, DistillConfig, TeacherCache, _renormaliser, distillation_loss
from lightvid.errors import UserError

TINY = dict(width_mult=0.125, img_size=32, fc_width=64)


def test_loss_matches_a_hand_computation():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    t = torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, -2.0]])
    y = torch.tensor([0, 2])
    T, alpha = 2.0, 0.3
    ce = kl = 0.0
    for i in range(2):
        zs = [math.exp(v) for v in s[i].tolist()]
        ce -= math.log(zs[y[i]] / sum(zs)) / 2
        ps = [math.exp(v / T) for v in s[i].tolist()]
        pt = [math.exp(v / T) for v in t[i].tolist()]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        kl += sum(q * math.log(q / p) for p, q in zip(ps, pt)) / 2
    loss, ce_t, kl_t = distillation_loss(s, t, y, temperature=T, alpha=alpha)
    assert ce_t.item() == pytest.approx(ce, rel=1e-5)
    assert kl_t.item() == pytest.approx(kl, rel=1e-5)
    assert loss.item() == pytest.approx(alpha * ce + (1 - alpha) * T * T * kl, rel=1e-5)
    same, _, kl0 = distillation_loss(s, s, y, temperature=T, alpha=0.0)
    assert kl0.item() == pytest.approx(0.0, abs=1e-7) and same.item() == pytest.approx(0.0, abs=1e-6)


def _module(**distill):
    torch.manual_seed(0)
    teacher = lightvid.create_model("c3d", num_classes=3, **TINY)
    module = DistillationModule(model_name="c3d_mc4", num_classes=3, model_kwargs=dict(TINY), teacher=teacher,
                                distill=dict(teacher="t.ckpt", **distill), teacher_cfg=teacher.default_cfg,
                                hint_input=torch.zeros(1, 3, 16, 32, 32))
    return module, teacher


def test_teacher_frozen_hidden_and_not_checkpointed():
    module, teacher = _module(temperature=3.0, alpha=0.5)
    module.train()
    assert not teacher.training
    assert not any(k.startswith("teacher") for k in module.state_dict())
    assert "teacher" not in module.hparams
    own = {id(p) for p in module.parameters()}
    assert not any(id(p) in own for p in teacher.parameters())
    x, y = torch.randn(2, 3, 16, 32, 32), torch.tensor([0, 2])
    logits = module(x)
    loss = module.compute_loss(logits, y, (x, y, torch.tensor([0, 1]), 0))
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert module.model.fc8.weight.grad is not None and module.model.fc8.weight.grad.abs().sum() > 0
    with torch.no_grad():
        expect, _, _ = distillation_loss(logits, teacher(x), y, 3.0, 0.5)
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)


def test_cache_serves_the_same_clip_and_recomputes_a_changed_one():
    module, teacher = _module()
    x, vid = torch.randn(2, 3, 16, 32, 32), torch.tensor([4, 7])
    a = module.teacher_logits(x, vid)
    b = module.teacher_logits(x, vid)
    assert torch.equal(a, b) and module.cache.hits == 2 and module.cache.misses == 2
    x2 = x.clone()
    x2[1, 0, 0, 0, 0] += 1.0  # an augmented view of video 7
    c = module.teacher_logits(x2, vid)
    assert module.cache.misses == 4
    with torch.no_grad():
        assert torch.allclose(c, teacher(x2), atol=1e-6)
    cache = TeacherCache()
    assert cache.lookup(x, vid)[0] is None


def test_fitnets_hint_trains_a_regressor_and_disables_the_cache():
    module, teacher = _module(hint_student="conv4a", hint_teacher="conv4a", hint_weight=2.0)
    assert module.cache is None and module.hint is not None
    assert module.hint.fold_teacher  # folded 2D student feature vs 3D teacher feature
    assert not any(k.startswith("teacher") for k in module.state_dict())
    x, y = torch.randn(2, 3, 16, 32, 32), torch.tensor([1, 2])
    loss = module.compute_loss(module(x), y, (x, y, torch.tensor([0, 1]), 0))
    loss.backward()
    assert module.hint.proj.weight.grad.abs().sum() > 0
    with pytest.raises(UserError, match="hint_student"):
        _module(hint_student="conv9", hint_teacher="conv4a")


def test_config_checks_and_renormalisation():
    with pytest.raises(UserError, match="alpha"):
        DistillConfig(alpha=1.5).validate()
    with pytest.raises(UserError, match="temperature"):
        DistillConfig(temperature=0).validate()
    with pytest.raises(UserError, match="go together"):
        DistillConfig(hint_student="conv4a").validate()
    fn = _renormaliser({"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}, {"mean": (0.0,) * 3, "std": (1.0,) * 3})
    raw = torch.rand(1, 3, 2, 4, 4)
    assert torch.allclose(fn(raw), (raw - 0.5) / 0.25, atol=1e-6)
    assert _renormaliser({"mean": (0.1,), "std": (1.0,)}, {"mean": (0.1,), "std": (1.0,)}) is None


def test_tiny_distill_run(tmp_path):
    import json

    from lightvid.checkpoint import save_atomic
    from lightvid.compress.distill import distill, load_distill_config
    from lightvid.data.synth import CLASSES

    torch.manual_seed(0)
    teacher = lightvid.create_model("c3d", num_classes=3, **TINY)
    meta = {"model": "c3d", "model_kwargs": dict(TINY), "num_classes": 3, "classes": list(CLASSES[:3]),
            "default_cfg": {"mean": list(teacher.default_cfg["mean"]), "std": list(teacher.default_cfg["std"])}}
    ckpt = tmp_path / "teacher.ckpt"
    save_atomic({"lightvid": meta, "state_dict": {f"model.{k}": v for k, v in teacher.state_dict().items()}}, ckpt)
    cfg_file = tmp_path / "distill.yaml"
    cfg_file.write_text(
        f"name: tiny\nmodel: {{name: c3d_mc4, kwargs: {json.dumps(TINY)}}}\n"
        f"data: {{format: synth, root: {tmp_path / 'synth'}, clip_len: 16, size: 32, short_side: 32, num_workers: 0,"
        " synth: {classes: 3, train: 6, val: 3, size: 32}}\n"
        "optim: {name: adamw, lr: 0.001}\n"
        "trainer: {max_epochs: 1, batch_size: 3, progress_bar: false, precision: '32'}\n"
        "distill: {temperature: 2.0, alpha: 0.7, convert: true}\n")
    cfg, dcfg = load_distill_config(cfg_file, [f"distill.teacher={ckpt}"])
    report = distill(cfg, dcfg, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("report.json", "metrics.csv", "distill.yaml", "convert_report.json", "checkpoints/best.ckpt"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "report.json").read_text())
    assert saved["teacher_model"] == "c3d" and 0 <= saved["teacher_top1_video"] <= 1
    assert 0 <= saved["val_top1_video"] <= 1 and report["distill"]["alpha"] == 0.7
    state = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert state and all(k.startswith("model.") for k in state)
    with pytest.raises(UserError, match="teacher"):
        load_distill_config(cfg_file, [])
