"""The files that make a published dataset readable by other tools: the dataset card and the wids indexes.

`dataset_card` writes `README.md` with the Hugging Face YAML header: one config whose `data_files` name each
split's shards (`shards/<split>-*.tar`), the splits with their sample counts, and the features, so that
`datasets.load_dataset(<dataset folder>)` reads the tars with the `webdataset` builder and shows the class
names: `cls` (the `<key>.cls` member, single-class samples) and `json.class_ids` / `json.labels.class_id` are
`class_label` features named in class-id order. `wids_index` is one split's shard list in the `wids` format
(`wids-shard-index-v1`). Both are built from the manifest and the class index alone; no Spark, no I/O.
"""

from __future__ import annotations

import json
import re

from tagmill.config import SPLITS
from tagmill.dataset.shards import LABEL_FIELDS
from tagmill.manifest import CLASS_INDEX, MANIFEST, WIDS_INDEX, DatasetManifest

WIDS_KIND = "wids-shard-index-v1"

_HF_DTYPES = {"string": "string", "double": "float64", "long": "int64", "int": "int64"}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def wids_index(manifest: DatasetManifest, split: str) -> dict:
    """The wids shard index of one split: {"__kind__": WIDS_KIND, "wids_version": 1, "name", "shardlist":
    [{"url": shard path relative to the dataset folder, "nsamples": samples}, ...]} in the manifest's shard
    order (an empty shardlist for a split without shards). The index file lies in the dataset folder, so
    wids resolves each url against it."""
    return {"__kind__": WIDS_KIND, "wids_version": 1, "name": f"{manifest.dataset}/{split}",
            "shardlist": [{"url": s.path, "nsamples": s.samples} for s in manifest.shards if s.split == split]}


def card_features(class_names: list[str], cls_entries: bool, title_ids: bool) -> list[dict]:
    """The `dataset_info.features` of the card, in the form `datasets.Features._to_yaml_list` writes: one entry
    per field the `webdataset` builder yields (`__key__`, `__url__`, `jpg`, `json`, and `cls` when the shards
    have `.cls` members). `class_names` in class-id order name every class_label."""
    label = {"class_label": {"names": {str(i): name for i, name in enumerate(class_names)}}}
    label_struct = [{"name": name, "dtype": label if name == "class_id" else _HF_DTYPES[kind]}
                    for name, kind in LABEL_FIELDS]
    meta = [{"name": "class_ids", "list": label}, {"name": "key", "dtype": "string"},
            {"name": "labels", "list": label_struct}, {"name": "product_id", "dtype": "string"},
            {"name": "repeats", "dtype": "int64"}, {"name": "split", "dtype": "string"},
            {"name": "title", "dtype": "string"}]
    if title_ids:
        meta.append({"name": "title_ids", "list": "int64"})
    features = [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"},
                {"name": "jpg", "dtype": "image"}, {"name": "json", "struct": meta}]
    if cls_entries:
        features.append({"name": "cls", "dtype": label})
    return features


def splits_with_shards(manifest: DatasetManifest) -> list[str]:
    """The manifest's splits that have shards, in SPLITS order: those the card and the wids indexes name."""
    return [s for s in SPLITS if manifest.splits.get(s) and manifest.splits[s].shards]


def card_header(manifest: DatasetManifest, class_names: list[str]) -> dict:
    """The card's YAML header as data: configs (data_files per split with shards), dataset_info (features,
    splits with their sample counts and tar bytes) and tags."""
    splits = splits_with_shards(manifest)
    return {
        "pretty_name": f"tagmill dataset {manifest.dataset}",
        "task_categories": ["image-classification"],
        "tags": ["tagmill", "webdataset", "weak-labels"],
        "configs": [{"config_name": "default", "default": True,
                     "data_files": [{"split": s, "path": f"shards/{s}-*.tar"} for s in splits]}],
        "dataset_info": {"config_name": "default",
                         "features": card_features(class_names, bool(manifest.cls_entries),
                                                   manifest.word_vectors is not None),
                         # num_bytes: the split's tar bytes (Hugging Face's own count is of its Arrow files)
                         "splits": [{"name": s, "num_bytes": manifest.splits[s].bytes,
                                     "num_examples": manifest.splits[s].samples} for s in splits]},
    }


def dataset_card(manifest: DatasetManifest, classes: list[dict]) -> str:
    """README.md of a dataset: the YAML header (card_header) and a page that says what the files are and how
    to read them. `classes`: the class index entries as classes.json holds them ({"id", "name", "path",
    "support"}), in id order."""
    names = [c["name"] for c in classes]
    splits = splits_with_shards(manifest)
    lines = ["---", *_yaml(card_header(manifest, names), 0), "---", "",
             f"# tagmill dataset {manifest.dataset}", "",
             f"Weakly labeled marketplace images built by tagmill {manifest.tagmill_version}: "
             f"{manifest.num_classes} classes, WebDataset shards. `{MANIFEST}` is the authority (every shard "
             "with its samples, bytes and sha256); this card and the wids indexes are derived from it.", "",
             "| split | samples | repeats | shards | bytes | wids index |", "| --- | --- | --- | --- | --- | --- |"]
    for s in splits:
        t = manifest.splits[s]
        lines.append(f"| {s} | {t.samples} | {t.repeats} | {t.shards} | {t.bytes} | "
                     f"`{WIDS_INDEX.format(split=s)}` |")
    cls_line = ("- `<key>.cls`: the class id as ASCII digits, only for a sample with exactly one class "
                "(WebDataset's convention; multi-label samples have none: read `class_ids`)"
                if manifest.cls_entries else "- no `.cls` members: read `class_ids` in the JSON")
    lines += ["", "## Files", "",
              "- `shards/<split>-<bucket>-<seq>.tar`: per sample `<key>.jpg` then `<key>.json`",
              cls_line,
              f"- `{CLASS_INDEX}`: the class index: id (the dense class id), name, ancestor path, taxonomy_id, "
              "support per split",
              f"- `{WIDS_INDEX.format(split='<split>')}`: the split's shards in the `wids` shard index format",
              "",
              "## Sample JSON", "",
              "`key`, `product_id`, `split`, `title`, `repeats` (resampling repeat factor), `class_ids` (sorted "
              "dense class ids), `title_ids` (when the build made word vectors) and `labels`: one object per "
              "label with the fields of the samples table's label structs: "
              + ", ".join(f"`{name}` ({kind})" for name, kind in LABEL_FIELDS)
              + "; a field the label's source lacks is null.", "",
              "## Reading", "", "```python",
              "import datasets  # Hugging Face: class names come from this card",
              "ds = datasets.load_dataset(\"path/to/this/folder\")",
              "ds[\"train\"].features[\"json\"][\"class_ids\"].feature.names", "",
              "import glob, webdataset as wds",
              "shards = sorted(glob.glob(\"shards/train-*.tar\"))",
              "for sample in wds.WebDataset(shards, shardshuffle=False).decode(\"pil\"):",
              "    image, meta = sample[\"jpg\"], sample[\"json\"]", "",
              "import wids  # random access",
              f"train = wids.ShardListDataset(\"{WIDS_INDEX.format(split='train')}\")",
              "```", "",
              "## Classes", "", "| id | name | path | train support |", "| --- | --- | --- | --- |"]
    for c in classes:
        path = " > ".join(c.get("path") or [])
        train = (c.get("support") or {}).get("train", "")
        lines.append(f"| {c['id']} | {_cell(c['name'])} | {_cell(path)} | {train} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _yaml(value, indent: int) -> list[str]:
    """Block YAML of nested dicts / lists of str, int and bool (strings double-quoted as JSON, which YAML
    reads as the same string); the lines of a mapping or a sequence at `indent`."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_key(key)}:"
            if isinstance(item, (dict, list)) and item:
                lines.append(head)
                lines += _yaml(item, indent + 2)
            else:
                lines.append(f"{head} {_scalar(item)}")
        return lines
    for item in value:
        if isinstance(item, (dict, list)) and item:
            inner = _yaml(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
        else:
            lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _key(key) -> str:
    key = str(key)
    return key if _PLAIN_KEY.fullmatch(key) and key.lower() not in ("true", "false", "null", "yes", "no",
                                                                      "on", "off") else json.dumps(key)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if value is None:
        return "null"
    return json.dumps(str(value), ensure_ascii=False)
