"""Region models and their training loop: shapes, losses, one or two training steps per task on a
tiny generated objects set (the accuracy goals are measured by the configs in configs/, not here)."""
import json

import numpy as np
import pytest
import torch

from lightvid.analysis.regions_draw import draw_boxes, draw_mask
from lightvid.data.objects_dataset import ObjectsDataset
from lightvid.data.synth_objects import generate_objects
from lightvid.models.fcn import FCN, bilinear_kernel
from lightvid.models.features import FeatureTaps
from lightvid.models.regions import build_region_model
from lightvid.models.registry import create_model
from lightvid.train.config import load_config
from lightvid.train.region_metrics import CocoBoxMAP
from lightvid.train.run import train

TINY = {"train": 2, "val": 1, "frames": 4, "size": 64, "min_radius": 6, "max_radius": 10}


@pytest.fixture(scope="module")
def objects_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("objects") / "set"
    generate_objects(root, workers=1, **TINY)
    return root


def test_feature_taps_find_stage_outputs():
    net = create_model("resnet18", width_mult=0.25, num_classes=0)
    taps = FeatureTaps(net, (8, 16, 32))
    assert taps.tap_names == ["layer2", "layer3", "layer4"]
    x = torch.randn(1, 3, 64, 64)
    feats = taps.eval()(x)
    assert [f.shape[-1] for f in feats] == [8, 4, 2]
    torch.testing.assert_close(feats[-1], net.forward_features(x))  # the deepest tap is forward_features
    early = FeatureTaps(net, (8,))(x)[0]  # stops after layer2
    torch.testing.assert_close(early, net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
    with pytest.raises(ValueError, match="no feature map at stride 64"):
        FeatureTaps(net, (64,))


def test_fcn_upconvolution_starts_bilinear_and_uses_the_classifier():
    k = bilinear_kernel(1, 4)[0, 0]
    torch.testing.assert_close(k[1], torch.tensor([0.1875, 0.5625, 0.5625, 0.1875]))
    net = create_model("resnet18", width_mult=0.25, num_classes=6)
    fcn = FCN(net, 6)
    x = torch.randn(1, 3, 64, 64)
    feat = fcn.taps(x)[-1]
    pooled_logits = net.fc(feat.mean((2, 3)))
    torch.testing.assert_close(fcn.score[-1](feat).mean((2, 3)), pooled_logits)  # the classifier as a 1x1 conv
    assert fcn(x).shape == (1, 6, 64, 64)


@pytest.mark.parametrize("task,backbone,shape,stride", [("detect", "resnet18", (2, 3, 64, 64), 8),
                                                        ("detect", "resnet18", (2, 3, 64, 64), [8, 16]),
                                                        ("detect", "r3d_10", (2, 3, 4, 64, 64), 8),
                                                        ("localize", "r3d_10", (2, 3, 4, 64, 64), 8)])
def test_region_models_train_and_predict(task, backbone, shape, stride):
    torch.manual_seed(0)
    n = 6 if task == "localize" else 5
    model = build_region_model(task, backbone, n, {"width_mult": 0.25}, feature_stride=stride, anchor_sizes=(16, 32))
    targets = [{"boxes": torch.tensor([[5.0, 6, 30, 28]]), "labels": torch.tensor([2]),
                "actions": torch.eye(6)[[1]]}, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                                               "actions": torch.zeros(0, 6)}]
    losses = model.train()(torch.randn(shape), targets)
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) >= 4
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.rpn.parameters())
    dets = model.eval()(torch.randn(shape))
    assert len(dets) == 2 and dets[0]["boxes"].shape[1] == 4
    assert dets[0]["labels"].min() >= 1 and dets[0]["labels"].max() <= n


def test_action_localizer_keeps_time_and_takes_frame_differences():
    torch.manual_seed(0)
    model = build_region_model("localize", "r3d_10", 6, {"width_mult": 0.25}, feature_stride=8, anchor_sizes=(16, 32),
                               temporal_pool="keep", frame_diff=True, clip_len=4)
    assert model.taps.backbone.stem[0].in_channels == 6  # frames and their differences
    clips = torch.randn(2, 3, 4, 64, 64)
    steps = model.features(clips).shape[2]
    assert model.fc6.in_features == model.taps.channels[0] * steps * 7 * 7
    # the order of time reaches fc6: reversing the clip changes the action scores of the same box
    boxes = [torch.tensor([[8.0, 8, 40, 40]]), torch.tensor([[4.0, 10, 30, 50], [20, 20, 60, 60]])]
    scores = model.eval().action_scores(clips, boxes)
    assert [s.shape for s in scores] == [(1, 6), (2, 6)] and all(((s >= 0) & (s <= 1)).all() for s in scores)
    with torch.no_grad():
        fwd, rev = (model.head(model.features(c), boxes)[2] for c in (clips, clips.flip(2)))  # action logits
    assert (fwd - rev).abs().max() > 1e-3 * fwd.abs().max()
    targets = [{"boxes": boxes[0], "actions": torch.eye(6)[[2]]}, {"boxes": boxes[1], "actions": torch.eye(6)[[0, 5]]}]
    losses = model.train()(clips, targets)
    sum(losses.values()).backward()
    assert model.taps.backbone.stem[0].weight.grad[:, 3:].abs().sum() > 0  # the difference channels learn
    model.action_loss_weight = 3.0  # scales the action loss only
    torch.manual_seed(1)
    weighted = model(clips, targets)
    model.action_loss_weight = 1.0
    torch.manual_seed(1)
    plain = model(clips, targets)
    assert torch.allclose(weighted["loss_actions"], 3 * plain["loss_actions"])
    assert torch.allclose(weighted["loss_object"], plain["loss_object"])
    with pytest.raises(ValueError, match="temporal_pool"):
        build_region_model("localize", "r3d_10", 6, {"width_mult": 0.25}, temporal_pool="mean")


def test_fast_rcnn_on_given_proposals():
    model = build_region_model("fast_rcnn", "resnet18", 5, {"width_mult": 0.25}, feature_stride=16)
    props = [torch.tensor([[0.0, 0, 30, 30], [10, 10, 50, 40]])]
    losses = model.train()(torch.randn(1, 3, 64, 64), props, [{"boxes": torch.tensor([[8.0, 8, 40, 36]]),
                                                              "labels": torch.tensor([1])}])
    assert set(losses) == {"loss_classifier", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    assert model.eval()(torch.randn(1, 3, 64, 64), props)[0]["scores"].numel() <= 2 * 5


def test_pictures_draw_boxes_and_masks():
    frame = np.full((32, 32, 3), 128, np.uint8)
    classes = np.zeros((32, 32), np.int64)
    classes[4:20, 4:20] = 2
    img = draw_mask(frame, classes, ["a", "b"], scale=2)
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
    assert (img[20, 20] != 128).any() and (img[60, 60] == 128).all()  # class 2 blended, background kept
    boxed = draw_boxes(frame, np.array([[2.0, 2, 20, 20], [5, 5, 9, 9]]), np.array([1, 2]), np.array([0.9, 0.1]),
                       ["a", "b"], scale=2)
    assert (boxed[4, 10] != 128).any()  # the confident box is drawn
    assert (boxed[10:18, 10:18] == 128).all()  # the low-score one is not


def test_coco_map_perfect_and_wrong():
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), "labels": torch.tensor([1, 2]),
           "iscrowd": torch.tensor([False, False])}]
    m = CocoBoxMAP(2)
    m.update([{"boxes": gt[0]["boxes"], "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 2])}], gt)
    assert m.compute()["map_50"] == pytest.approx(1.0)
    m.reset()
    m.update([{"boxes": gt[0]["boxes"], "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([2, 1])}], gt)
    assert m.compute()["map_50"] == pytest.approx(0.0)


def test_objects_dataset_items(objects_root):
    ds = ObjectsDataset(objects_root, "train", clip_len=3, hflip=True)
    assert len(ds) == 2 * 2
    x, t = ds[0]
    assert x.shape == (3, 3, 64, 64) and t["semantic"].shape == (64, 64)
    assert t["boxes"].shape[0] == t["labels"].shape[0] == t["actions"].shape[0]
    assert set(t["semantic"].unique().tolist()) <= {0, *t["labels"].tolist()}


@pytest.mark.parametrize("task,backbone,extra", [("detect", "resnet18", []),
                                                 ("localize", "r3d_10", ["regions.clip_len=3"]),
                                                 ("localize", "r3d_10", ["regions.clip_len=4",
                                                                         "regions.head.temporal_pool=keep",
                                                                         "regions.head.frame_diff=true"]),
                                                 ("segment", "resnet18", [])])
def test_train_two_steps(task, backbone, extra, objects_root, tmp_path):
    cfg = load_config(None, [f"task={task}", f"model.name={backbone}", "model.kwargs.width_mult=0.25",
                             f"regions.root={objects_root}", "regions.head={}" if task == "segment" else
                             "regions.head={feature_stride: 8, anchor_sizes: [16, 32]}", "regions.pictures=2",
                             "trainer.max_epochs=1", "trainer.batch_size=2", "trainer.limit_train_batches=2",
                             "trainer.precision=32", "trainer.progress_bar=false", "optim.name=adamw",
                             "optim.lr=0.001", *extra])
    report = train(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["task"] == task
    key = "miou" if task == "segment" else "map_50"
    assert 0.0 <= report["best"][key] <= 1.0
    if task == "localize":  # the action head on ground-truth boxes, next to the proposals' figure
        assert 0.0 <= report["best"]["map_50_gt_boxes"] <= 1.0
    assert (tmp_path / "run" / "pictures" / "predictions.png").stat().st_size > 0
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_regions_config_errors_name_the_key():
    from lightvid.errors import UserError
    from lightvid.train.regions import regions_config

    with pytest.raises(UserError, match="regions.clip_lenn.*closest: clip_len"):
        regions_config(load_config(None, ["task=detect", "regions.clip_lenn=2"]))
    with pytest.raises(UserError, match="regions.train_step must be >= 1"):
        regions_config(load_config(None, ["task=segment", "regions.train_step=0"]))
    with pytest.raises(UserError, match="task"):
        load_config(None, ["task=classify_boxes"])
