"""The teacher: Open Images vocabularies and thresholds, tag selection, the three model formats it loads, and
the files it refuses without unpickling them."""

import functools
import hashlib
import logging
import os
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from tagmill.config import TrainConfig
from tagmill.labeling.teacher import (TeacherError, TeacherLabel, bf16_supported, load_teacher, read_thresholds,
                                      read_vocabulary, select_tags)
from tagmill.trainer.backbones import build_model
from tagmill.trainer.prototypes import prototype_scores
from tagmill.trainer.train import _save, export, warmup_cosine

OPEN_IMAGES = Path(os.environ.get("TAGMILL_OPEN_IMAGES_LABELS",
                                  Path(__file__).resolve().parents[1].parent / "shared/realdata/open_images_labels"))
NAMES = ["Tortoise", "Container", "Magpie", "Sea turtle", "Car, toy"]
VOCAB = "LabelName,DisplayName\n" + "".join(f'/m/t{i},"{n}"\n' for i, n in enumerate(NAMES))
SIZE = 32


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


# ---- vocabulary ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "LabelName,DisplayName\n/m/011k07,Tortoise\n/m/0cmf2,\"Airplane, big\"\n",
    "label,class\r\n/m/011k07,Tortoise\r\n/m/0cmf2,\"Airplane, big\"\r\n\r\n",
    "\ufeff/m/011k07,Tortoise\n\"/m/0cmf2\",\"Airplane, big\"",
])
def test_vocabulary_with_or_without_header_quoted_and_bom(tmp_path, text):
    labels = read_vocabulary(_write(tmp_path / "v.csv", text))
    assert labels == [TeacherLabel("/m/011k07", "Tortoise"), TeacherLabel("/m/0cmf2", "Airplane, big")]


def test_a_first_row_that_is_an_id_not_a_header_word_is_kept(tmp_path):
    assert read_vocabulary(_write(tmp_path / "v.csv", "tagmill:0,sofa\ntagmill:1,bed\n")) == [
        TeacherLabel("tagmill:0", "sofa"), TeacherLabel("tagmill:1", "bed")]


@pytest.mark.parametrize("text, message", [
    ("", "v.csv: empty"),
    ("LabelName,DisplayName\n", "v.csv: only a header"),
    ("/m/a,A\n/m/b,B,extra\n", "v.csv line 2: 3 fields"),
    ("/m/a,A\n/m/b\n", "v.csv line 2: 1 fields"),
    ("LabelName,DisplayName\n/m/a,A\n/m/b,\n", "v.csv line 3: empty display name"),
    ("/m/a,A\n,B\n", "v.csv line 2: empty MID"),
    ("/m/a,A\n/m/b,B\n/m/a,C\n", "v.csv line 3: MID /m/a already on line 1"),
])
def test_bad_vocabularies_are_refused_with_file_and_line(tmp_path, text, message):
    with pytest.raises(TeacherError, match=message):
        read_vocabulary(_write(tmp_path / "v.csv", text))


def test_a_vocabulary_that_is_not_utf8_is_refused(tmp_path):
    with pytest.raises(TeacherError, match="not UTF-8"):
        read_vocabulary(_write(tmp_path / "v.csv", "/m/a,Café\n", encoding="latin-1"))


@pytest.mark.parametrize("name, count, header", [
    ("class-descriptions-boxable.csv", 601, True),
    ("class-descriptions-boxable.noheader.csv", 601, False),
    ("oidv6-class-descriptions.csv", 19994, False),
    ("v1_dict.csv", 7881, False),
])
def test_real_open_images_vocabularies(name, count, header):
    path = OPEN_IMAGES / name
    if not path.is_file():
        pytest.skip(f"{path} is not here (set TAGMILL_OPEN_IMAGES_LABELS to the Open Images label folder)")
    labels = read_vocabulary(path)
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert len(labels) == count == lines - header
    assert len({x.mid for x in labels}) == count
    by_mid = {x.mid: x.name for x in labels}
    if name == "v1_dict.csv":
        assert labels[0] == TeacherLabel("/g/1172hxxrk", "traditional sport")
        assert by_mid["/m/0zvk5"] == "helmet"
    else:
        assert by_mid["/m/011k07"] == "Tortoise" and by_mid["/m/0zvk5"] == "Helmet"
    if "boxable" in name:
        assert labels[:3] == [TeacherLabel("/m/011k07", "Tortoise"), TeacherLabel("/m/011q46kg", "Container"),
                              TeacherLabel("/m/012074", "Magpie")]


# ---- thresholds and tag selection ----------------------------------------------------------------------

LABELS = [TeacherLabel("/m/a", "Apple"), TeacherLabel("/m/b", "Bird"), TeacherLabel("/m/c", "Bird"),
          TeacherLabel("/m/d", "Dog")]


@pytest.mark.parametrize("text", ["label,threshold\n/m/a,0.25\nDog,1\n", "/m/a,0.25\nDog,1"])
def test_thresholds_by_mid_and_by_name_with_or_without_header(tmp_path, text):
    got = read_thresholds(_write(tmp_path / "t.csv", text), LABELS, 0.5)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([0.25, 0.5, 0.5, 1.0], np.float32))


def test_a_display_name_sets_every_label_of_that_name(tmp_path):
    got = read_thresholds(_write(tmp_path / "t.csv", "Bird,0.75\n"), LABELS, 0.5)
    np.testing.assert_array_equal(got, np.array([0.5, 0.75, 0.75, 0.5], np.float32))


@pytest.mark.parametrize("text, message", [
    ("/m/a,0.25\nCat,0.5\n", "t.csv line 2: 'Cat' is neither a MID nor a display name"),
    ("/m/a,0\n", "t.csv line 1: threshold '0' for '/m/a' is not a number in \\(0, 1\\]"),
    ("key,threshold\n/m/a,1.5\n", "t.csv line 2: threshold '1.5'"),
    ("/m/a,0.5\n/m/b,high\n", "t.csv line 2: threshold 'high'"),
    ("/m/b,0.5\nBird,0.75\n", "t.csv line 2: /m/b \\(Bird\\) already has a threshold on line 1"),
    ("/m/a,0.5,x\n", "t.csv line 1: 3 fields"),
])
def test_bad_thresholds_are_refused_naming_the_row(tmp_path, text, message):
    with pytest.raises(TeacherError, match=message):
        read_thresholds(_write(tmp_path / "t.csv", text), LABELS, 0.5)


SCORES = np.array([[0.875, 0.25, 0.75, 0.75, 0.5],
                   [0.125, 0.125, 0.25, 0.0, 0.375]], np.float32)


def test_select_tags_keeps_scores_over_threshold_highest_first_ties_by_index():
    assert select_tags(SCORES, np.full(5, 0.5, np.float32), 10) == [
        [(0, 0.875), (2, 0.75), (3, 0.75), (4, 0.5)], []]


def test_select_tags_caps_at_top_k():
    assert select_tags(SCORES, np.full(5, 0.5, np.float32), 2) == [[(0, 0.875), (2, 0.75)], []]
    assert select_tags(SCORES, np.full(5, 0.1, np.float32), 1) == [[(0, 0.875)], [(4, 0.375)]]


def test_select_tags_per_tag_thresholds():
    thresholds = np.array([0.875, 0.125, 0.875, 0.5, 0.25], np.float32)
    assert select_tags(SCORES, thresholds, 10) == [[(0, 0.875), (3, 0.75), (4, 0.5), (1, 0.25)],
                                                   [(4, 0.375), (1, 0.125)]]


def test_select_tags_of_no_rows():
    assert select_tags(np.zeros((0, 5), np.float32), np.full(5, 0.5, np.float32), 3) == []


# ---- loading models ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("resnet18", num_classes=5, pooling="avg").eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def scripted(tmp_path, net):
    path = tmp_path / "oi_teacher.ts"
    torch.jit.script(net).save(str(path))
    return path, _write(tmp_path / "labels-oi.csv", VOCAB)


def test_torchscript_teacher_scores_are_the_sigmoid_of_its_own_logits(scripted, images):
    path, vocab = scripted
    teacher = load_teacher(str(path), str(vocab), image_size=SIZE)
    assert (teacher.teacher_id, teacher.image_size, teacher.scores) == ("oi_teacher", SIZE, "sigmoid")
    assert teacher.labels[4] == TeacherLabel("/m/t4", "Car, toy") and len(teacher.labels) == 5
    assert len(teacher.version) == 16 and int(teacher.version, 16) >= 0
    assert teacher.mean == (0.485, 0.456, 0.406) and teacher.std == (0.229, 0.224, 0.225)
    scores, embedding = teacher.forward(images)
    assert scores.dtype == embedding.dtype == np.float32
    assert scores.shape == (4, 5) and embedding.shape == (4, 512)
    logits, own_embedding = torch.jit.load(str(path)).eval()(images)
    np.testing.assert_array_equal(scores, torch.sigmoid(logits).detach().numpy())
    np.testing.assert_array_equal(embedding, own_embedding.detach().numpy())


def test_teacher_id_and_version(scripted):
    path, vocab = scripted
    teacher = load_teacher(str(path), str(vocab), teacher_id="oi-v6", image_size=SIZE)
    assert teacher.teacher_id == "oi-v6"
    assert teacher.version == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_a_vocabulary_of_another_size_is_refused(scripted, tmp_path):
    path, _ = scripted
    vocab = _write(tmp_path / "three.csv", "/m/a,A\n/m/b,B\n/m/c,C\n")
    with pytest.raises(TeacherError, match=f"{path}: .*logits are \\(1, 5\\) but the vocabulary has 3 labels"):
        load_teacher(str(path), str(vocab), image_size=SIZE)


def test_a_torchscript_file_alone_needs_a_vocabulary(scripted):
    path, _ = scripted
    with pytest.raises(TeacherError, match=f"{path}: no labels .*image_pass.vocabulary"):
        load_teacher(str(path), image_size=SIZE)


class _LogitsOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class _Dict(_LogitsOnly):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(x.flatten(1)), "embedding": x.flatten(1)[:, :7]}


def test_a_model_returning_logits_alone_uses_them_as_embedding_and_warns_once(tmp_path, caplog):
    torch.manual_seed(0)
    path = tmp_path / "plain.ts"
    torch.jit.script(_LogitsOnly().eval()).save(str(path))
    with caplog.at_level(logging.WARNING, logger="tagmill.teacher"):
        teacher = load_teacher(str(path), str(_write(tmp_path / "v.csv", VOCAB)), image_size=16)
        x = torch.randn(3, 3, 16, 16)
        scores, embedding = teacher.forward(x)
        teacher.forward(x)
    assert [r.message for r in caplog.records] == [
        "teacher plain returns no embedding: its logits serve as the embedding"]
    logits = torch.jit.load(str(path))(x).detach()
    np.testing.assert_array_equal(embedding, logits.numpy())
    np.testing.assert_array_equal(scores, torch.sigmoid(logits).numpy())


def test_a_model_returning_a_dict(tmp_path):
    path = tmp_path / "dict.ts"
    torch.jit.script(_Dict().eval()).save(str(path))
    teacher = load_teacher(str(path), str(_write(tmp_path / "v.csv", VOCAB)), image_size=16)
    x = torch.randn(2, 3, 16, 16)
    scores, embedding = teacher.forward(x)
    assert scores.shape == (2, 5)
    np.testing.assert_array_equal(embedding, x.flatten(1)[:, :7].numpy())


def _manifest(n: int = 5):
    return SimpleNamespace(classes=[{"id": i, "name": NAMES[i], "path": [NAMES[i]], "support": {"train": 1}}
                                    for i in range(n)], num_classes=n, dataset="toy")


def test_an_exported_tagmill_folder_is_a_teacher(tmp_path, net, images):
    cfg = TrainConfig(arch="resnet18", pooling="avg", loss="softmax", image_size=SIZE)
    export(net, _manifest(), tmp_path, cfg)
    assert (tmp_path / "labels.csv").read_text(encoding="utf-8") == (
        'LabelName,DisplayName\ntagmill:0,Tortoise\ntagmill:1,Container\ntagmill:2,Magpie\n'
        'tagmill:3,Sea turtle\ntagmill:4,"Car, toy"\n')
    teacher = load_teacher(str(tmp_path))
    assert (teacher.teacher_id, teacher.image_size, teacher.scores) == (tmp_path.name, SIZE, "softmax")
    assert teacher.labels == [TeacherLabel(f"tagmill:{i}", n) for i, n in enumerate(NAMES)]
    scores, _ = teacher.forward(images)
    logits, _ = net(images)
    np.testing.assert_allclose(scores, torch.softmax(logits, 1).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert load_teacher(str(tmp_path), image_size=64).image_size == 64
    # labels.csv wins over classes.json; without it classes.json gives the same labels
    (tmp_path / "labels.csv").write_text("LabelName,DisplayName\n" + "".join(f"/m/x{i},X{i}\n" for i in range(5)))
    assert load_teacher(str(tmp_path)).labels[0] == TeacherLabel("/m/x0", "X0")
    (tmp_path / "labels.csv").unlink()
    assert load_teacher(str(tmp_path)).labels == teacher.labels
    # the TorchScript file inside the folder reads the folder's model.json and classes.json
    inside = load_teacher(str(tmp_path / "model.ts"))
    assert (inside.teacher_id, inside.image_size, inside.labels) == ("model", SIZE, teacher.labels)


def test_a_tagmill_folder_with_class_prototypes_scores_by_them(tmp_path, net, images):
    cfg = TrainConfig(arch="resnet18", pooling="avg", loss="asl", image_size=SIZE)
    prototypes = np.eye(5, 512, dtype=np.float32)  # class i: the i-th embedding axis
    np.save(tmp_path / "prototypes.npy", prototypes)
    export(net, _manifest(), tmp_path, cfg, {"temperature": 0.1})
    teacher = load_teacher(str(tmp_path))
    scores, embedding = teacher.forward(images)
    logits, expected_embedding = net(images)
    np.testing.assert_allclose(embedding, expected_embedding.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, prototype_scores(embedding, prototypes, 0.1), rtol=1e-5, atol=1e-7)
    # without them, the logits score; the version covers the prototypes' bytes too
    plain = load_teacher(str(tmp_path), prototypes=False)
    np.testing.assert_allclose(plain.forward(images)[0], torch.sigmoid(logits).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert plain.prototypes is None and plain.version != teacher.version
    np.save(tmp_path / "prototypes.npy", prototypes[:3])
    with pytest.raises(TeacherError, match=r"prototypes of shape \(3, 512\).*expected float32 \(5, D\)"):
        load_teacher(str(tmp_path))
    np.save(tmp_path / "prototypes.npy", prototypes[:, :64])
    with pytest.raises(TeacherError, match="its prototypes are 64 wide but its embedding 512"):
        load_teacher(str(tmp_path))
    np.save(tmp_path / "prototypes.npy", np.array([object()], dtype=object))
    with pytest.raises(TeacherError, match="unreadable class prototypes"):
        load_teacher(str(tmp_path))
    np.save(tmp_path / "prototypes.npy", prototypes)
    export(net, _manifest(), tmp_path, cfg, {"temperature": 0})
    with pytest.raises(TeacherError, match='needs a positive "temperature"'):
        load_teacher(str(tmp_path))


def _checkpoint(folder: Path, model: nn.Module) -> Path:
    folder.mkdir(exist_ok=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(warmup_cosine, warmup=2, total=10))
    _save(folder / "checkpoint.pt", model, optimizer, scheduler, 0, 1, 1, SimpleNamespace(arch="resnet18"))
    return folder / "checkpoint.pt"


def test_a_tagmill_checkpoint_is_a_teacher(tmp_path, images):
    torch.manual_seed(2)
    model = build_model("resnet18", num_classes=5, pooling="max").eval()
    path = _checkpoint(tmp_path / "run", model)
    teacher = load_teacher(str(path), str(_write(tmp_path / "v.csv", VOCAB)), image_size=SIZE)
    assert (teacher.teacher_id, len(teacher.labels)) == ("checkpoint", 5)
    scores, embedding = teacher.forward(images)
    logits, own_embedding = model(images)
    np.testing.assert_allclose(scores, torch.sigmoid(logits).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embedding, own_embedding.detach().numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(TeacherError, match="no labels"):
        load_teacher(str(path), image_size=SIZE)


# ---- refused files: nothing is unpickled ---------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(TeacherError) as info:
        load_teacher(str(path), image_size=SIZE)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and all(w in message for w in words), message
    return message


def test_a_pickle_of_a_dict_is_refused(tmp_path):
    path = tmp_path / "teacher.pt"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    _refused(path, "a Python pickle", "refuses to unpickle", "TorchScript")


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    _refused(path, "a Python pickle", "unpickle")
    torch.save({"model": {"fc.weight": torch.zeros(5, 2)}, "arch": "resnet18", "x": _Evil(marker)},
               tmp_path / "evil.pt")
    _refused(tmp_path / "evil.pt", "(io.open)", "unpickle")
    assert not marker.exists()


def test_a_torch_save_of_a_whole_module_is_refused(tmp_path, net):
    torch.save(net, tmp_path / "whole.pt")
    _refused(tmp_path / "whole.pt", "tagmill.trainer.backbones.ImageClassifier", "whole nn.Module", "unpickle")


def test_a_torch_save_of_a_bare_state_dict_is_refused(tmp_path, net):
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    _refused(tmp_path / "weights.pt", "not a `tagmill train` checkpoint", "torch.jit.script")


def test_other_files_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "random.zip", "w") as zf:
        zf.writestr("a/readme.txt", "hello")
    _refused(tmp_path / "random.zip", "a zip archive that is neither", "unpickle")
    with zipfile.ZipFile(tmp_path / "broken.ts", "w") as zf:
        zf.writestr("broken/code/__torch__/m.py", "nonsense")
        zf.writestr("broken/constants.pkl", "nonsense")
    _refused(tmp_path / "broken.ts", "a damaged or incompatible TorchScript file")
    _refused(_write(tmp_path / "labels.csv", VOCAB), "a text file", "image_pass.vocabulary")
    (tmp_path / "blob.bin").write_bytes(bytes([0xFF, 0x00, 0x13]) * 100)
    _refused(tmp_path / "blob.bin", "not a model file")
    _refused(tmp_path / "missing.ts", "no such file or folder")
    (tmp_path / "run").mkdir()
    _refused(tmp_path / "run", "a folder without model.ts")


# ---- bf16 ----------------------------------------------------------------------------------------------

def test_bf16_forward_returns_float32_close_to_float32(scripted, images):
    path, vocab = scripted
    teacher = load_teacher(str(path), str(vocab), image_size=SIZE)
    scores, embedding = teacher.forward(images, bf16=True)
    reference, _ = teacher.forward(images)
    assert scores.dtype == embedding.dtype == np.float32 and embedding.shape == (4, 512)
    np.testing.assert_allclose(scores, reference, atol=0.05)
    assert isinstance(bf16_supported(), bool)


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no native bf16")
def test_bf16_top1_agrees_with_float32(scripted):
    path, vocab = scripted
    teacher = load_teacher(str(path), str(vocab), image_size=SIZE)
    x = torch.randn(32, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    top_bf16 = teacher.forward(x, bf16=True)[0].argmax(1)
    top_fp32 = teacher.forward(x)[0].argmax(1)
    assert (top_bf16 == top_fp32).mean() >= 0.9
