"""The teacher: a trained image model whose confident tags become pseudo-labels, and its label vocabulary.

58.com labels its own images with a model trained on Open Images: the tags it predicts with enough confidence
are kept as labels. Here the teacher is any model already on disk (nothing is downloaded): a `tagmill train`
output folder, a TorchScript file, or a `tagmill train` checkpoint, with labels in the Open Images vocabulary
format (`MID,DisplayName`). Scores first, decision second: `Teacher.forward` gives every label's score and
`select_tags` keeps those over their threshold.

A model file is recognised from its bytes and zip member names before anything is unpickled. tagmill never
unpickles arbitrary objects: TorchScript archives are read by TorchScript's own loader, checkpoints by
`torch.load(weights_only=True)`, which constructs only tensors, plain containers and the few numpy types
named in `trainer.backbones.CHECKPOINT_GLOBALS`; anything else is refused with a TeacherError.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tagmill.checksums import file_sha256
from tagmill.trainer.backbones import CHECKPOINT_GLOBALS, build_model
from tagmill.trainer.folds import FOLD_PREFIX
from tagmill.trainer.prototypes import prototype_scores
from tagmill.trainer.train import CHECKPOINT, EXPORT, EXPORT_INFO, EXPORT_LABELS, PROTOTYPES, TRAINED_IMAGES
from tagmill.trainer.transforms import MEAN, STD

log = logging.getLogger("tagmill.teacher")

HEADER_WORDS = frozenset({"labelname", "label", "label_name", "mid", "id", "key"})
"""First fields (lower-cased) that mark a header row in a vocabulary or thresholds CSV."""

DEFAULT_IMAGE_SIZE = 224

_REFUSED = ("tagmill refuses to unpickle arbitrary objects (unpickling can run code). Pass a `tagmill train` "
            "output folder, its checkpoint.pt, or a TorchScript file (torch.jit.script(model).save(path)) "
            "with an Open Images vocabulary CSV")


class TeacherError(ValueError):
    """A teacher file or vocabulary that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class TeacherLabel:
    mid: str
    """Open Images MID such as "/m/0cmf2", or any id string ("tagmill:3" for a tagmill class)."""
    name: str
    """Display name."""
    fold: int = 0
    """Which fold model's output this is (FoldTeachers lists every class once per fold); 0 for one model."""


# ---- vocabulary and thresholds -------------------------------------------------------------------------

def _rows(path: str | Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) of each CSV row, blank lines skipped; UTF-8 with or without a BOM."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TeacherError(f"{path}: no such file; pass an existing CSV") from None
    except UnicodeDecodeError as err:
        raise TeacherError(f"{path}: not UTF-8 text ({err}); save the CSV as UTF-8") from None
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        rows = [(reader.line_num, [f.strip() for f in row]) for row in reader if row != [] and row != [""]]
    except csv.Error as err:
        raise TeacherError(f"{path} line {reader.line_num}: {err}; fix the CSV quoting") from None
    if not rows:
        raise TeacherError(f"{path}: empty; expected rows `MID,DisplayName` (e.g. /m/011k07,Tortoise)")
    return rows


def _is_header(first: str) -> bool:
    return not first.startswith("/") and first.lower() in HEADER_WORDS


def read_vocabulary(path: str | Path) -> list[TeacherLabel]:
    """Labels in file order from an Open Images class-descriptions CSV: rows `MID,DisplayName`, header row
    optional (detected: a first field that is not a MID, which starts with '/', and is a header word such as
    LabelName or label), quoted fields allowed. Raises TeacherError naming the file and line for an empty
    file, a row without exactly 2 fields, an empty MID or name, or a MID listed twice."""
    rows = _rows(path)
    if _is_header(rows[0][1][0]):
        rows = rows[1:]
    labels, seen = [], {}
    for line, fields in rows:
        if len(fields) != 2:
            raise TeacherError(f"{path} line {line}: {len(fields)} fields {fields!r}; expected `MID,DisplayName` "
                               f"(quote a name that contains a comma)")
        mid, name = fields
        if not mid or not name:
            raise TeacherError(f"{path} line {line}: empty {'MID' if not mid else 'display name'}; fill it in")
        if mid in seen:
            raise TeacherError(f"{path} line {line}: MID {mid} already on line {seen[mid]}; keep one row per MID")
        seen[mid] = line
        labels.append(TeacherLabel(mid, name))
    if not labels:
        raise TeacherError(f"{path}: only a header; expected rows `MID,DisplayName` below it")
    return labels


def read_thresholds(path: str | Path, labels: list[TeacherLabel], default: float) -> np.ndarray:
    """float32 (len(labels),) thresholds: `default` except for the labels listed in a CSV `key,threshold`
    (header optional), where key is a MID or, failing that, a display name (applies to every label of that
    name). Raises TeacherError naming the row for an unknown key, a threshold that is not a number in (0, 1],
    or a label given two thresholds."""
    by_mid = {label.mid: i for i, label in enumerate(labels)}
    by_name: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_name.setdefault(label.name, []).append(i)
    rows = _rows(path)
    first = rows[0][1]
    if len(first) == 2 and not _is_number(first[1]) and first[0] not in by_mid and first[0] not in by_name:
        rows = rows[1:]  # a header such as `label,threshold`
    thresholds = np.full(len(labels), default, np.float32)
    set_on: dict[int, int] = {}
    for line, fields in rows:
        if len(fields) != 2:
            raise TeacherError(f"{path} line {line}: {len(fields)} fields {fields!r}; expected `MID or name,threshold`")
        key, value = fields
        if not _is_number(value) or not 0 < float(value) <= 1:
            raise TeacherError(f"{path} line {line}: threshold {value!r} for {key!r} is not a number in (0, 1]")
        ids = [by_mid[key]] if key in by_mid else by_name.get(key, [])
        if not ids:
            raise TeacherError(f"{path} line {line}: {key!r} is neither a MID nor a display name of the teacher's "
                               f"{len(labels)} labels; fix the key or drop the row")
        for i in ids:
            if i in set_on:
                raise TeacherError(f"{path} line {line}: {labels[i].mid} ({labels[i].name}) already has a threshold "
                                   f"on line {set_on[i]}; keep one")
            set_on[i] = line
            thresholds[i] = float(value)
    return thresholds


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def select_tags(scores: np.ndarray, thresholds: np.ndarray, top_k: int) -> list[list[tuple[int, float]]]:
    """Per row of scores (n, L): the (label index, score) pairs with score >= thresholds[label], highest score
    first (ties: lower index first), at most top_k of them."""
    result = []
    for row in np.asarray(scores, np.float32):
        ids = np.flatnonzero(row >= thresholds)
        ids = ids[np.lexsort((ids, -row[ids]))][:top_k]
        result.append([(int(i), float(row[i])) for i in ids])
    return result


# ---- the model -----------------------------------------------------------------------------------------

@dataclass(eq=False)
class Teacher:
    """A loaded teacher model and how to feed it (build one with load_teacher)."""

    teacher_id: str
    """Config teacher_id, else the model file's stem or the model folder's name."""
    version: str
    """First 16 hex digits of the sha256 of the model file's bytes (with prototypes: of both files' sha256)."""
    labels: list[TeacherLabel]
    image_size: int
    """Side of the square input: load_teacher's image_size, else model.json's, else 224."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    """Per-channel normalization of the input, as fractions of 1 (model.json's, else ImageNet's)."""
    scores: str
    """"sigmoid" (independent tags) or "softmax"."""
    model: torch.nn.Module = field(repr=False)
    trained_images: Path | None = None
    """The keys of the images the model trained on (a `tagmill train` folder's trained_images.txt); None for a
    model trained elsewhere."""
    prototypes: np.ndarray | None = field(default=None, repr=False)
    """float32 (labels, D): the classes' prototypes (a `tagmill train` folder's, trainer.prototypes), which
    score the embedding in place of the logits; None: the logits score."""
    temperature: float = 1.0
    """The prototypes' softmax temperature."""
    _warned: bool = field(default=False, init=False, repr=False)

    @property
    def folds(self) -> list[Teacher]:
        """One model is a single fold (FoldTeachers has several)."""
        return [self]

    def forward(self, batch: torch.Tensor, bf16: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (n, L), embedding float32 (n, D)) of a float batch (n, 3, H, W) normalized with
        mean/std. bf16 runs the model under bfloat16 autocast; scores are computed from float32 logits, or
        with prototypes from the float32 embedding. A model that returns logits alone gives them as the
        embedding too (warned once)."""
        with torch.inference_mode():
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.model(batch)
            else:
                out = self.model(batch)
            logits, embedding = self._split(out)
            embedding = embedding.float().flatten(1).numpy()
            if self.prototypes is not None:
                if embedding.shape[1] != self.prototypes.shape[1]:
                    raise TeacherError(f"teacher {self.teacher_id}: its prototypes are {self.prototypes.shape[1]} wide "
                                       f"but its embedding {embedding.shape[1]}; retrain the model or set "
                                       "image_pass.prototypes = false")
                return prototype_scores(embedding, self.prototypes, self.temperature), embedding
            logits = logits.float()
            scores = torch.softmax(logits, 1) if self.scores == "softmax" else torch.sigmoid(logits)
            return scores.numpy(), embedding

    def _split(self, out) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(out, dict):
            logits, embedding = out.get("logits"), out.get("embedding")
        elif isinstance(out, (tuple, list)) and len(out) >= 2:
            logits, embedding = out[0], out[1]
        else:
            logits, embedding = out, None
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] != len(self.labels):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise TeacherError(f"teacher {self.teacher_id}: the model's logits are {shape} but the vocabulary has "
                               f"{len(self.labels)} labels; pass the vocabulary the model was trained with")
        if embedding is None:
            if not self._warned:
                log.warning("teacher %s returns no embedding: its logits serve as the embedding", self.teacher_id)
                self._warned = True
            embedding = logits
        return logits, embedding


@dataclass(eq=False)
class FoldTeachers:
    """k teachers of one vocabulary, each trained without one fold of the training images (trainer.folds), used as
    one: `forward` gives every fold's scores side by side (n, k * L), `labels` lists every class once per fold
    (TeacherLabel.fold), and the embedding is the first fold's. The image pass keeps, for each image, the
    scores of the folds that never trained on it."""

    teacher_id: str
    version: str
    """First 16 hex digits of the sha256 of the fold models' versions."""
    folds: list[Teacher]

    @property
    def labels(self) -> list[TeacherLabel]:
        return [TeacherLabel(x.mid, x.name, fold) for fold, t in enumerate(self.folds) for x in t.labels]

    # the input is the same in every fold (load_teacher checks)
    image_size = property(lambda self: self.folds[0].image_size)
    mean = property(lambda self: self.folds[0].mean)
    std = property(lambda self: self.folds[0].std)

    def forward(self, batch: torch.Tensor, bf16: bool = False, seen: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """seen: bool (n, folds), True where a fold model trained on the image: that model does not run on it and
        its scores stay 0 (the image pass keeps no fold's scores of an image it trained on). The first fold
        runs on every image: the embedding is its."""
        n, parts, embedding = batch.shape[0], [], None
        for fold, teacher in enumerate(self.folds):
            rows = np.flatnonzero(~seen[:, fold]) if seen is not None and fold else np.arange(n)
            scores = np.zeros((n, len(teacher.labels)), np.float32)
            if len(rows):
                scores[rows], out = teacher.forward(batch if len(rows) == n else batch[torch.from_numpy(rows)], bf16)
                if fold == 0:
                    embedding = out
            parts.append(scores)
        return np.concatenate(parts, 1), embedding


def bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively. Decided from torch's own CPU feature probe (cpuinfo):
    AVX512-BF16 or AMX on x86; on other CPUs (aarch64) the `bf16` flag of /proc/cpuinfo. Not from
    torch.backends.cpu.get_cpu_capability(), which names only the vector width (an "AVX512" CPU may lack
    BF16). Without native support autocast still works, but emulated and slower than float32."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None and probe() for probe in probes):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "bf16" in flags


def load_teacher(path: str, vocabulary: str = "", teacher_id: str = "",
                 image_size: int = 0, prototypes: bool = True) -> Teacher | FoldTeachers:
    """A Teacher in eval mode on CPU from
      1. a `tagmill train` output folder (model.ts, model.json; labels from `vocabulary`, else its labels.csv,
         else its classes.json as `tagmill:<id>`);
      2. a TorchScript file; labels from `vocabulary`, else from the tagmill folder it sits in;
      3. a `tagmill train` checkpoint (a dict with 'model' and 'arch'), rebuilt with build_model (pooling from
         the model.json beside it, else 'max'); labels as for 2;
      4. a folder of fold models (fold-0/, fold-1/, ... each as 1: `tagmill train --folds`), as one FoldTeachers.
    image_size: > 0 overrides model.json's (else 224). prototypes: score with the class prototypes a `tagmill
    train` folder's model.json names (for its model.ts; trainer.prototypes), not with the logits; the version
    then covers both files. Raises TeacherError for anything else (a pickle, a
    torch.save of a whole module, another zip, a text file, a missing path) without unpickling it, and for a
    model whose logits do not match the vocabulary (checked with one forward pass of a blank image)."""
    source = Path(path)
    folds = sorted(source.glob(f"{FOLD_PREFIX}*/{EXPORT}")) if source.is_dir() else []
    if folds and not (source / EXPORT).is_file():
        return _fold_teachers(source, [load_teacher(str(f.parent), vocabulary, image_size=image_size,
                                                    prototypes=prototypes) for f in folds], teacher_id)
    if source.is_dir():
        folder, file = source, source / EXPORT
        if not file.is_file():
            hint = (f"pass its {CHECKPOINT} with a vocabulary" if (source / CHECKPOINT).is_file()
                    else "train a model first (`tagmill train`)")
            raise TeacherError(f"{source}: a folder without {EXPORT}, not a finished `tagmill train` output; {hint}")
        kind = "torchscript"
    elif source.is_file():
        file, kind = source, _file_kind(source)
        beside = source.parent
        folder = beside if (beside / "classes.json").is_file() or (beside / EXPORT_INFO).is_file() else None
    else:
        raise TeacherError(f"{source}: no such file or folder; pass a `tagmill train` output folder, its "
                           f"{CHECKPOINT}, or a TorchScript file")
    info = _read_info(folder / EXPORT_INFO) if folder is not None and (folder / EXPORT_INFO).is_file() else {}
    model = (_torchscript(file) if kind == "torchscript" else _model_from_checkpoint(file, info.get("pooling", "max")))
    labels = _labels(source, folder, vocabulary)
    scores = info.get("scores", "sigmoid")
    if scores not in ("sigmoid", "softmax"):
        raise TeacherError(f"{folder / EXPORT_INFO}: scores {scores!r} is neither sigmoid nor softmax")
    entry = info.get("prototypes") if prototypes and folder is not None and file == folder / EXPORT else None
    centroids, temperature = _read_prototypes(folder / PROTOTYPES, len(labels), entry) if entry else (None, 1.0)
    version = file_sha256(file) if entry is None else hashlib.sha256(
        (file_sha256(file) + file_sha256(folder / PROTOTYPES)).encode()).hexdigest()
    teacher = Teacher(
        teacher_id=teacher_id or (source.name if source.is_dir() else source.stem), version=version[:16],
        labels=labels, image_size=image_size or int(info.get("image_size", DEFAULT_IMAGE_SIZE)),
        mean=tuple(float(x) for x in info.get("mean", MEAN)), std=tuple(float(x) for x in info.get("std", STD)),
        scores=scores, model=model.eval(),
        trained_images=folder / TRAINED_IMAGES if folder is not None and (folder / TRAINED_IMAGES).is_file() else None,
        prototypes=centroids, temperature=temperature)
    try:
        teacher.forward(torch.zeros(1, 3, teacher.image_size, teacher.image_size))
    except TeacherError as err:
        raise TeacherError(f"{source}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any failure of a foreign model becomes the teacher's error
        raise TeacherError(f"{source}: the model fails on a (1, 3, {teacher.image_size}, {teacher.image_size}) "
                           f"image batch ({type(err).__name__}: {err}); is it an image classifier?") from err
    return teacher


def _read_prototypes(path: Path, labels: int, entry) -> tuple[np.ndarray, float]:
    """(the (labels, D) float32 prototypes, their temperature) from the file beside a model.json and its
    `prototypes` entry (np.load refuses pickled objects); the width D is checked against the model's
    embedding on the first forward pass."""
    temperature = entry.get("temperature") if isinstance(entry, dict) else None
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise TeacherError(f"{path.parent / EXPORT_INFO}: \"prototypes\" needs a positive \"temperature\", found "
                           f"{entry!r}; retrain the model (`tagmill train`) or set image_pass.prototypes = false")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise TeacherError(f"{path}: unreadable class prototypes ({err}); retrain the model (`tagmill train`) or "
                           "set image_pass.prototypes = false") from None
    if array.ndim != 2 or array.shape[0] != labels or array.dtype != np.float32:
        raise TeacherError(f"{path}: prototypes of shape {array.shape} and type {array.dtype}, expected float32 "
                           f"({labels}, D), one per class; retrain the model or set image_pass.prototypes = false")
    return array, float(temperature)


def _fold_teachers(source: Path, folds: list[Teacher], teacher_id: str) -> FoldTeachers:
    first = folds[0]
    for other in folds[1:]:
        if (other.labels, other.image_size, other.mean, other.std, other.scores, other.prototypes is None) != (
                first.labels, first.image_size, first.mean, first.std, first.scores, first.prototypes is None):
            raise TeacherError(f"{source}: its fold models differ in classes or input; train them together "
                               "(`tagmill train --folds K`)")
    version = hashlib.sha256("".join(t.version for t in folds).encode()).hexdigest()[:16]
    return FoldTeachers(teacher_id or source.name, version, folds)


def _file_kind(path: Path) -> str:
    """"torchscript" or "checkpoint", from the bytes and zip member names alone; else TeacherError."""
    with path.open("rb") as f:
        head = f.read(4096)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = {name.split("/", 1)[1] for name in zf.namelist() if "/" in name}
        if "constants.pkl" in members and any(m.startswith("code/") for m in members):
            return "torchscript"
        if "data.pkl" in members:
            _check_checkpoint_globals(path)
            return "checkpoint"
        raise TeacherError(f"{path}: a zip archive that is neither a TorchScript file nor a torch.save checkpoint; "
                           f"{_REFUSED}")
    if head[:1] == b"\x80":
        protocol = head[1] if len(head) > 1 else "?"
        raise TeacherError(f"{path}: a Python pickle (protocol {protocol}), e.g. an old-style torch.save; {_REFUSED}")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)  # a character cut at 4096 bytes is no error
        what = ("an empty file" if not head else
                "a text file (a vocabulary CSV goes in image_pass.vocabulary, not as the teacher)")
    except UnicodeDecodeError:
        what = "not a model file tagmill knows"
    raise TeacherError(f"{path}: {what}; {_REFUSED}")


def _torchscript(path: Path) -> torch.nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise TeacherError(f"{path}: a damaged or incompatible TorchScript file ({str(err).splitlines()[0]}); "
                           f"export it again with torch.jit.script(model).save(path)") from None


def _check_checkpoint_globals(path: Path) -> None:
    """Refuse a torch.save file that names any class or function beyond the weights-only set (a whole
    nn.Module, a custom object) - read from the pickle's opcodes, without running them."""
    allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in CHECKPOINT_GLOBALS}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as err:  # noqa: BLE001 - the static pickle scan refuses opcodes a weights file never has
        raise TeacherError(f"{path}: a torch.save file whose pickle cannot be checked ({type(err).__name__}: "
                           f"{err}); {_REFUSED}") from None
    foreign = sorted(set(found) - allowed)
    if foreign:
        raise TeacherError(f"{path}: a torch.save file holding Python objects ({', '.join(foreign[:5])}), e.g. a "
                           f"whole nn.Module saved with torch.save(model); {_REFUSED}")


def _model_from_checkpoint(path: Path, pooling: str) -> torch.nn.Module:
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - the weights-only unpickler refuses with several error types
        raise TeacherError(f"{path}: not loadable as weights only ({type(err).__name__}); {_REFUSED}") from None
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict) or "fc.weight" not in weights or not isinstance(state.get("arch"), str):
        raise TeacherError(f"{path}: a torch.save file that is not a `tagmill train` checkpoint (needs 'model' with "
                           f"fc.weight, and 'arch'); export TorchScript instead: torch.jit.script(model).save(path)")
    try:
        model = build_model(state["arch"], int(weights["fc.weight"].shape[0]), pooling)
        model.load_state_dict(weights)
    except (ValueError, RuntimeError, KeyError) as err:
        raise TeacherError(f"{path}: checkpoint does not fit architecture {state['arch']!r}: {err}") from None
    return model


def _labels(source: Path, folder: Path | None, vocabulary: str) -> list[TeacherLabel]:
    if vocabulary:
        return read_vocabulary(vocabulary)
    if folder is not None and (folder / EXPORT_LABELS).is_file():
        return read_vocabulary(folder / EXPORT_LABELS)
    if folder is not None and (folder / "classes.json").is_file():
        try:
            classes = json.loads((folder / "classes.json").read_text(encoding="utf-8"))["classes"]
            return [TeacherLabel(f"tagmill:{c['id']}", str(c["name"])) for c in classes]
        except (ValueError, KeyError, TypeError) as err:
            raise TeacherError(f"{folder / 'classes.json'}: unreadable class index ({err}); re-export the model "
                               f"or pass a vocabulary") from None
    raise TeacherError(f"{source}: no labels for this model; pass its vocabulary (image_pass.vocabulary: an Open "
                       f"Images style CSV of `MID,DisplayName` rows, one per output in order)")


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise TeacherError(f"{path}: not JSON ({err}); re-export the model with `tagmill train`") from None
    for key in ("mean", "std"):
        if key in info and len(info[key]) != 3:
            raise TeacherError(f"{path}: {key} has {len(info[key])} values, expected 3 (one per RGB channel)")
    return info
