"""Backbones: torchvision-identical state dicts, pooling, init, freezing, loading init weights, TorchScript."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tagmill.trainer.backbones import (ARCHITECTURES, backbone_parameters, build_model, head_parameters,
                                       load_init_weights, set_backbone_trainable)

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _meta(arch: str, num_classes: int = 1000):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return build_model(arch, num_classes)


@pytest.mark.parametrize("arch, params, entries", [("resnet18", 11_689_512, 122),
                                                    ("resnet50", 25_557_032, 320),
                                                    ("resnext50_32x4d", 25_028_904, 320)])
def test_published_parameter_and_state_dict_counts(arch, params, entries):
    model = _meta(arch)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries


def test_state_dict_keys_and_shapes_match_torchvision():
    r18 = {k: list(v.shape) for k, v in _meta("resnet18").state_dict().items()}
    assert "layer1.0.downsample.0.weight" not in r18
    assert r18["layer2.0.downsample.0.weight"] == [128, 64, 1, 1]
    assert r18["layer2.0.downsample.1.running_var"] == [128]
    assert r18["layer4.1.conv2.weight"] == [512, 512, 3, 3]
    assert r18["bn1.num_batches_tracked"] == []
    assert r18["fc.weight"] == [1000, 512] and r18["fc.bias"] == [1000]
    assert "layer4.1.conv3.weight" not in r18
    r50 = {k: list(v.shape) for k, v in _meta("resnet50").state_dict().items()}
    assert r50["conv1.weight"] == [64, 3, 7, 7]
    assert r50["layer1.0.downsample.0.weight"] == [256, 64, 1, 1]
    assert r50["layer1.0.conv2.weight"] == [64, 64, 3, 3]
    assert r50["layer3.5.bn3.weight"] == [1024]
    assert r50["layer4.2.conv3.weight"] == [2048, 512, 1, 1]
    assert r50["fc.weight"] == [1000, 2048]
    rx = {k: list(v.shape) for k, v in _meta("resnext50_32x4d").state_dict().items()}
    assert rx["layer1.0.conv1.weight"] == [128, 64, 1, 1]
    assert rx["layer1.0.conv2.weight"] == [128, 4, 3, 3]  # 32 groups of 4 channels
    assert rx["layer4.0.conv2.weight"] == [1024, 32, 3, 3]
    assert rx["layer4.0.downsample.0.weight"] == [2048, 1024, 1, 1]
    assert list(rx) == list(r50)  # same key order as torchvision: only shapes differ


def test_v1_5_stride_sits_on_the_3x3_conv():
    model = _meta("resnet50")
    assert model.layer2[0].conv1.stride == (1, 1)
    assert model.layer2[0].conv2.stride == (2, 2)
    assert model.layer2[0].downsample[0].stride == (2, 2)


def test_unknown_names_list_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown architecture 'resnet101'; allowed: resnet18, resnet50, "
                                         "resnext50_32x4d"):
        build_model("resnet101", 10)
    with pytest.raises(ValueError, match="unknown pooling 'mean'; allowed: max, avg"):
        build_model("resnet18", 10, pooling="mean")
    assert ARCHITECTURES == ("resnet18", "resnet50", "resnext50_32x4d")


@pytest.mark.parametrize("arch, dim", [("resnet18", 512), ("resnext50_32x4d", 2048)])
def test_output_shapes_and_pooling(arch, dim):
    torch.manual_seed(0)
    model = build_model(arch, 7, pooling="max").eval()
    captured = {}
    model.layer4.register_forward_hook(lambda module, args, out: captured.update(map=out))
    with torch.no_grad():
        logits, embedding = model(X)
        assert logits.shape == (2, 7) and embedding.shape == (2, dim)
        assert captured["map"].shape == (2, dim, 2, 2)  # 64 / 32
        assert torch.equal(embedding, captured["map"].amax(dim=(2, 3)))
        assert torch.equal(logits, model.fc(embedding))
        model.pooling = "avg"
        _, averaged = model(X)
        torch.testing.assert_close(averaged, captured["map"].mean(dim=(2, 3)), rtol=0, atol=0)
        assert (averaged < embedding).any()  # the two poolings really differ
    assert model.embedding_dim == dim


def test_init():
    torch.manual_seed(0)
    model = build_model("resnet18", 1000)
    assert model.fc.weight.std().item() == pytest.approx(0.01, rel=0.02)  # MSURU 3.3
    assert model.fc.weight.mean().abs().item() < 1e-4
    assert torch.equal(model.fc.bias, torch.zeros(1000))
    assert torch.equal(model.bn1.weight, torch.ones(64)) and torch.equal(model.bn1.bias, torch.zeros(64))
    # kaiming normal, fan_out: std = sqrt(2 / (out_channels * 3 * 3))
    assert model.layer3[0].conv2.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.02)
    assert torch.equal(model.layer1[0].bn2.weight, torch.ones(64))
    zeroed = build_model("resnet18", 10, zero_init_residual=True)
    assert all(torch.equal(block.bn2.weight, torch.zeros_like(block.bn2.weight))
               for layer in (zeroed.layer1, zeroed.layer4) for block in layer)
    assert torch.equal(zeroed.layer1[0].bn1.weight, torch.ones(64))


def test_freeze_then_unfreeze():
    torch.manual_seed(0)
    model = build_model("resnet18", 5)
    head, backbone = list(head_parameters(model)), list(backbone_parameters(model))
    assert [p.shape for p in head] == [torch.Size([5, 512]), torch.Size([5])]
    assert len(head) + len(backbone) == len(list(model.parameters()))

    set_backbone_trainable(model, False)
    model.train()
    assert model.training and model.fc.training
    assert not model.bn1.training and not model.layer4[1].bn2.training
    running_mean = model.bn1.running_mean.clone()
    logits, _ = model(X)
    logits.sum().backward()
    assert torch.equal(model.bn1.running_mean, running_mean)  # frozen statistics
    assert all(p.grad is None for p in backbone_parameters(model))
    assert all(p.grad is not None for p in head_parameters(model))

    set_backbone_trainable(model, True)
    assert model.bn1.training and all(p.requires_grad for p in model.parameters())
    model(X)[0].sum().backward()
    assert model.conv1.weight.grad is not None
    assert not torch.equal(model.bn1.running_mean, running_mean)


def _trained_resnet18(num_classes: int = 5):
    """A resnet18 whose running statistics are no longer the defaults."""
    torch.manual_seed(1)
    model = build_model("resnet18", num_classes).train()
    with torch.no_grad():
        model(X)
    return model.eval()


def test_load_init_weights_round_trip(tmp_path):
    source = _trained_resnet18()
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    target = build_model("resnet18", 5).eval()
    report = load_init_weights(target, path)
    assert report == {"loaded": 122, "skipped": [], "file": str(path)}
    with torch.no_grad():
        for a, b in zip(source(X), target(X)):
            assert torch.equal(a, b)


def test_load_init_weights_accepts_wrapped_and_ddp_files(tmp_path):
    source = _trained_resnet18()
    ddp = {f"module.{k}": v for k, v in source.state_dict().items()}
    for n, content in enumerate(({"state_dict": ddp, "epoch": 3}, {"model": source.state_dict()})):
        path = tmp_path / f"checkpoint{n}.pt"
        torch.save(content, path)
        target = build_model("resnet18", 5)
        assert load_init_weights(target, path)["loaded"] == 122
        assert torch.equal(target.layer3[1].bn2.running_var, source.layer3[1].bn2.running_var)
    # Older files without num_batches_tracked still load.
    path = tmp_path / "old.pt"
    torch.save({k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    assert load_init_weights(build_model("resnet18", 5), path)["loaded"] == 102


def test_head_is_skipped_on_a_new_label_space(tmp_path):
    source = _trained_resnet18(num_classes=1000)
    path = tmp_path / "imagenet.pt"
    torch.save(source.state_dict(), path)
    target = build_model("resnet18", 7)
    fc_before = target.fc.weight.clone()
    report = load_init_weights(target, path)
    assert report == {"loaded": 120, "skipped": ["fc.bias", "fc.weight"], "file": str(path)}
    assert torch.equal(target.fc.weight, fc_before)
    assert torch.equal(target.layer2[0].downsample[0].weight, source.layer2[0].downsample[0].weight)
    # A backbone-only file: the head keeps its init as well.
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}, path)
    assert load_init_weights(build_model("resnet18", 7), path)["skipped"] == ["fc.bias", "fc.weight"]


def test_a_head_carries_over_class_by_class(tmp_path):
    source = _trained_resnet18(num_classes=5)
    path = tmp_path / "checkpoint.pt"
    # a `tagmill train` checkpoint: the model's state under "model", numpy's RNG state beside it
    torch.save({"model": source.state_dict(), "numpy_rng": np.arange(3, dtype=np.uint32)}, path)
    target = build_model("resnet18", 4)
    fc_before = target.fc.weight.clone()
    report = load_init_weights(target, path, head_rows=[2, -1, 0, 4])  # new class 1: not in the file's head
    assert report == {"loaded": 122, "skipped": [], "file": str(path), "carried_classes": 3}
    for row, theirs in ((0, 2), (2, 0), (3, 4)):
        assert torch.equal(target.fc.weight[row], source.fc.weight[theirs])
        assert torch.equal(target.fc.bias[row], source.fc.bias[theirs])
    assert torch.equal(target.fc.weight[1], fc_before[1])
    assert torch.equal(target.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    with pytest.raises(ValueError, match="its head has 5 rows, head rows up to 7 given"):
        load_init_weights(build_model("resnet18", 4), path, head_rows=[7, -1, 0, 4])
    with pytest.raises(ValueError, match="3 head rows given for a model of 4 classes"):
        load_init_weights(build_model("resnet18", 4), path, head_rows=[0, 1, 2])


def test_wrong_architecture_is_named(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(_trained_resnet18().state_dict(), path)
    with pytest.raises(ValueError) as err:
        load_init_weights(build_model("resnet50", 5), path)
    message = str(err.value)
    assert str(path) in message
    assert "does not fit the model (resnet50, 5 classes)" in message
    assert "missing key(s), first: layer1.0.bn3.bias" in message
    assert "the file fits resnet18" in message
    r50 = tmp_path / "r50.pt"
    torch.save(build_model("resnet50", 5).state_dict(), r50)
    with pytest.raises(ValueError, match=r"shape-mismatched key\(s\), first: layer1\.0\.bn1\.bias \[64\] vs model "
                                         r"\[128\].*the file fits resnet50"):
        load_init_weights(build_model("resnext50_32x4d", 5), r50)


def test_bad_files(tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_init_weights(build_model("resnet18", 5), missing)
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="list.pt: expected a state dict"):
        load_init_weights(build_model("resnet18", 5), path)
    state = _trained_resnet18().state_dict()
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 missing key\(s\), first: layer4\.1\.bn2\.weight; "
                                         r"1 unexpected key\(s\), first: extra\.weight; "
                                         r"the file fits none of .*closest: resnet18, 119 of its 120 backbone entries"):
        load_init_weights(build_model("resnet18", 5), path)


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
@pytest.mark.parametrize("arch", ["resnet18", "resnext50_32x4d"])
def test_torchscript_export_round_trip(arch):
    model = build_model(arch, 6).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        expected, got = model(X), loaded(X)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    assert (loaded.arch, loaded.num_classes, loaded.pooling, loaded.embedding_dim) == (
        arch, 6, "max", model.embedding_dim)
    assert list(loaded.state_dict()) == list(model.state_dict())
