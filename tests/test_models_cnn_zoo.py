"""SceneCNN structure, save/load round trip, torchvision loading from local files."""
import pytest
import torch
from torch import nn

from lrpkit.models import SceneCNN, load_cnn, load_torchvision, save_cnn


def test_scene_cnn_structure_is_lrp_friendly():
    m = SceneCNN(n_classes=6, width=8, input_size=32, hidden=16)
    assert isinstance(m.features, nn.Sequential) and isinstance(m.classifier, nn.Sequential)
    assert isinstance(m.avgpool, nn.AdaptiveAvgPool2d)
    kinds = {type(x) for x in m.modules()} - {SceneCNN, nn.Sequential}
    assert kinds <= {nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear, nn.Dropout}
    assert not any(getattr(x, "inplace", False) for x in m.modules())
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 6)
    with pytest.raises(ValueError, match="shape"):
        m(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="classes"):
        SceneCNN(n_classes=3, classes=["a", "b"])


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    m = SceneCNN(n_classes=3, width=4, input_size=32, hidden=8, classes=["a", "b", "c"]).eval()
    p = save_cnn(m, tmp_path / "sub" / "cnn.pt", {"epoch": 3})
    assert p.is_file() and not [f for f in p.parent.iterdir() if f.name.startswith(".")]
    m2 = load_cnn(p)
    assert not m2.training
    assert m2.meta["epoch"] == 3 and m2.meta["classes"] == ["a", "b", "c"]
    assert m2.meta["input_size"] == 32 and len(m2.meta["mean"]) == 3
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(m(x), m2(x))


def test_load_cnn_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_cnn(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_cnn(bad)
    sd = tmp_path / "sd.pt"
    torch.save(SceneCNN(width=4, input_size=32, hidden=8).state_dict(), sd)
    with pytest.raises(ValueError, match="not a lrpkit SceneCNN checkpoint"):
        load_cnn(sd)


@pytest.mark.parametrize("arch,head", [("alexnet", "classifier.6"), ("resnet18", "fc")])
def test_load_torchvision_from_fixture(tmp_path, arch, head):
    import torchvision.models as tvm

    torch.manual_seed(1)
    src = getattr(tvm, arch)(weights=None)
    path = tmp_path / f"{arch}.pth"
    torch.save(src.state_dict(), path)
    m = load_torchvision(arch, path, num_classes=20, replace_head=True)
    assert not m.training
    new_head = m.get_submodule(head)
    assert new_head.out_features == 20
    # every other weight is the file's
    ref = src.state_dict()
    for k, v in m.state_dict().items():
        if not k.startswith(head + "."):
            assert torch.equal(v, ref[k]), k
    # the fresh head is seeded
    m2 = load_torchvision(arch, path, num_classes=20, replace_head=True)
    assert torch.equal(new_head.weight, m2.get_submodule(head).weight)
    if arch == "alexnet":
        return  # large file: the remaining checks run on resnet18 only
    # the file's head is kept by default
    m3 = load_torchvision(arch, path)
    assert m3.get_submodule(head).out_features == 1000
    assert torch.equal(m3.get_submodule(head).weight, ref[head + ".weight"])


def test_load_torchvision_errors(tmp_path):
    import torchvision.models as tvm

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_torchvision("alexnet", tmp_path / "missing.pth")
    path = tmp_path / "r18.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="missing key") as e:
        load_torchvision("alexnet", path)
    assert "features.0.weight" in str(e.value) and "conv1.weight" in str(e.value)
    with pytest.raises(ValueError, match="arch"):
        load_torchvision("lenet", path)
    # a model fine-tuned earlier (10-class head) reloads with its own head, or gets a fresh one
    p2 = tmp_path / "r18_10.pth"
    tuned = tvm.resnet18(weights=None, num_classes=10).state_dict()
    torch.save(tuned, p2)
    kept = load_torchvision("resnet18", p2)
    assert kept.fc.out_features == 10 and torch.equal(kept.fc.weight, tuned["fc.weight"])
    assert torch.equal(load_torchvision("resnet18", p2, num_classes=10).fc.weight, tuned["fc.weight"])
    # a head of another size than num_classes is an error naming both (no silent random head)
    with pytest.raises(ValueError, match="10 classes but num_classes is 20") as e:
        load_torchvision("resnet18", p2, num_classes=20)
    assert "r18_10.pth" in str(e.value) and "replace_head=True" in str(e.value)
    assert load_torchvision("resnet18", p2, num_classes=20, replace_head=True).fc.out_features == 20
    with pytest.raises(ValueError, match="num_classes is required"):
        load_torchvision("resnet18", p2, replace_head=True)
    # a body layer of the wrong shape is named
    bad = dict(tuned, **{"conv1.weight": torch.zeros(64, 3, 5, 5)})
    torch.save(bad, p2)
    with pytest.raises(ValueError, match="shape mismatch") as e:
        load_torchvision("resnet18", p2)
    assert "conv1.weight" in str(e.value)
    notsd = tmp_path / "list.pth"
    torch.save([1, 2, 3], notsd)
    with pytest.raises(ValueError, match="state_dict"):
        load_torchvision("resnet18", notsd)
    # DataParallel prefixes and {"state_dict": ...} wrappers are accepted
    p3 = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in tvm.resnet18(weights=None).state_dict().items()}}, p3)
    assert load_torchvision("resnet18", p3, num_classes=5, replace_head=True).fc.out_features == 5


class _Foreign(torch.nn.Module):
    """A user class: unpickling a whole model of it would import and run user code."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)


def test_load_torchvision_reads_a_whole_saved_model_but_no_foreign_classes(tmp_path):
    import torchvision.models as tvm

    torch.manual_seed(3)
    src = tvm.resnet18(weights=None, num_classes=4).eval()
    whole = tmp_path / "whole.pt"
    torch.save(src, whole)
    m = load_torchvision("resnet18", whole)
    assert m.fc.out_features == 4
    ref = src.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    foreign = tmp_path / "foreign.pt"
    torch.save(_Foreign(), foreign)
    with pytest.raises(ValueError, match="foreign.pt.*_Foreign"):
        load_torchvision("resnet18", foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(whole.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt.pt"):
        load_torchvision("resnet18", corrupt)
