"""The truth scoreboard: a build's label space and labels, and a model's predictions, scored against the demo
market's planted truth (`truth/`), never against the dataset's own labels.

A class *names* a category when its name, normalized like a query, is one of the category's proper names in
the truth (its English name, plural, a synonym or its Chinese name: truth/query_forms.csv kinds name, plural,
synonym, chinese) or the name of its group or domain. A misspelling or a variant ("cheap sofa") names no
category, so a class kept under such a name counts against the label space even when its images are right.
A label is right when its class names the product's true category or one of that category's ancestors.

Plain pandas and pyarrow over the written tables: no Spark.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import average_precision_score

from tagmill import stages
from tagmill.labeling.text import normalize_query
from tagmill.trainer.train import TRAINED_IMAGES

PROPER_FORMS = ("name", "plural", "synonym", "chinese")
"""Query-form kinds that name a category (misspellings and variants do not)."""


@dataclass(frozen=True)
class Truth:
    leaf_of_product: dict[str, str]
    """product_id -> its true leaf id."""
    lineage: dict[str, tuple[str, ...]]
    """leaf id -> (leaf id, "group:<group>", "domain:<domain>"): the categories a label may rightly name."""
    named: dict[str, str]
    """Normalized proper name -> the category it names (a leaf id, "group:<g>" or "domain:<d>")."""
    leaves_with_listings: frozenset[str]

    def names_category(self, product_id: str | None, name: str) -> bool:
        """Whether a label `name` names the product's true category or one of its ancestors."""
        return self.named.get(name) in self.lineage.get(self.leaf_of_product.get(product_id or ""), ())


def read_truth(market: str | Path, stopwords: frozenset[str], wordnet_dir: str) -> Truth:
    """The truth of a generated market (its truth/ folder), with names normalized as the build normalizes
    queries (stopwords and WordNet folder of the build's text config)."""
    truth = Path(market) / "truth"

    def rows(name: str) -> list[dict]:
        with open(truth / name, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    def norm(text: str) -> str:
        return normalize_query(text, stopwords, wordnet_dir)

    leaf_of_product = {r["product_id"]: r["leaf_id"] for r in rows("listings.csv")}
    lineage, named = {}, {}
    for r in rows("categories.csv"):
        group, domain = f"group:{r['group']}", f"domain:{r['domain']}"
        lineage[r["leaf_id"]] = (r["leaf_id"], group, domain)
        named.setdefault(norm(r["group"]), group)
        named.setdefault(norm(r["domain"]), domain)
    owners: dict[str, set[str]] = defaultdict(set)
    for r in rows("query_forms.csv"):
        if r["kind"] in PROPER_FORMS:
            owners[norm(r["form"])].add(r["leaf_id"])
    # a proper name two leaves share names neither for sure; leaf names win over group and domain names
    named.update({form: next(iter(leaves)) for form, leaves in owners.items() if len(leaves) == 1 and form})
    return Truth(leaf_of_product, lineage, named, frozenset(leaf_of_product.values()))


def score_build(outputs_root: str | Path, run_date, truth: Truth) -> dict:
    """The label space and the labels of one build (its assemble tables and published classes.json)."""
    root = str(outputs_root)
    index = json.loads((Path(stages.dataset_path(root, run_date)) / "classes.json").read_text(encoding="utf-8"))
    classes = index["classes"]
    category = {c["name"]: truth.named.get(c["name"]) for c in classes}
    leaf_classes: dict[str, list[str]] = defaultdict(list)
    for name, named in category.items():
        if named in truth.lineage:
            leaf_classes[named].append(name)
    samples = pq.read_table(stages.table_path(root, stages.ASSEMBLE, "samples", run_date),
                            columns=["product_id", "split", "labels"]).to_pylist()
    right, total = Counter(), Counter()
    for sample in samples:
        lineage = truth.lineage.get(truth.leaf_of_product.get(sample["product_id"], ""), ())
        for label in sample["labels"]:
            key = (label["source"], label.get("tier") or "")
            total[key] += 1
            right[key] += category.get(label["name"]) in lineage
    by_source: dict[str, dict] = {}
    for (source, tier), n in sorted(total.items()):
        entry = by_source.setdefault(source, {"labels": 0, "right": 0, "tiers": {}})
        entry["labels"] += n
        entry["right"] += right[(source, tier)]
        if tier:
            entry["tiers"][tier] = round(right[(source, tier)] / n, 4)
    for entry in by_source.values():
        entry["precision"] = round(entry["right"] / entry["labels"], 4) if entry["labels"] else None
    all_labels = sum(total.values())
    return {
        "classes": len(classes),
        "categories_with_listings": len(truth.leaves_with_listings),
        "classes_per_category": round(len(classes) / max(1, len(truth.leaves_with_listings)), 3),
        "classes_naming_no_category": sorted(name for name, named in category.items() if named is None),
        "split_categories": {leaf: sorted(names) for leaf, names in sorted(leaf_classes.items()) if len(names) > 1},
        "classes_without_training_samples": sorted(c["name"] for c in classes if not c["support"].get("train")),
        "label_precision": {"all": round(sum(right.values()) / all_labels, 4) if all_labels else None,
                            **by_source},
    }


def score_predictions(predictions: str | Path, outputs_root: str | Path, run_date, truth: Truth,
                      leave_out: frozenset[str] = frozenset()) -> dict:
    """A model's predictions (tagmill predict's Parquet over a split) against the true categories, but on
    the images in `leave_out` (those a compared model trained on: `trained_on`).

    top1_vs_truth: right when the top class names the product's category or one of its ancestors.
    map_vs_truth: the mean over classes of the average precision (scikit-learn's) of ranking the images by
    the class's score, an image relevant when the class names its product's category or an ancestor; over
    the classes that name a category with at least one relevant image (a class missing from an image's
    predictions scores 0 there, so predict every class for an exact figure)."""
    rows = pq.read_table(str(predictions), columns=["key", "top_names", "top_scores"]).to_pylist()
    product = {r["image_key"]: r["product_id"] for r in pq.read_table(
        stages.table_path(str(outputs_root), stages.ASSEMBLE, "samples", run_date),
        columns=["image_key", "product_id"]).to_pylist()}
    scored = [r for r in rows if r["top_names"] and r["key"] not in leave_out]
    lineages = [truth.lineage.get(truth.leaf_of_product.get(product.get(r["key"], ""), ""), ()) for r in scored]
    right = sum(truth.named.get(r["top_names"][0]) in lineage for r, lineage in zip(scored, lineages))
    precisions = []
    for name in sorted({n for r in scored for n in r["top_names"] if truth.named.get(n)}):
        relevant = np.array([truth.named[name] in lineage for lineage in lineages])
        if relevant.any():
            score = np.array([dict(zip(r["top_names"], r["top_scores"])).get(name, 0.0) for r in scored])
            precisions.append(average_precision_score(relevant, score))
    return {"images": len(scored), "top1_vs_truth": round(right / len(scored), 4) if scored else None,
            "map_vs_truth": round(float(np.mean(precisions)), 4) if precisions else None}


def trained_on(model_dirs) -> frozenset[str]:
    """The image keys any of these `tagmill train` folders trained on (trained_images.txt). A rebuilt dataset's
    test split may hold a few of its teacher's training images (a product moves split when its duplicate
    component changes), and a model started from the teacher has seen them too: no model is scored on them."""
    keys = set()
    for folder in model_dirs:
        file = Path(folder) / TRAINED_IMAGES
        if file.is_file():
            keys.update(file.read_text(encoding="utf-8").split())
    return frozenset(keys)


def score_label_issues(outputs_root: str | Path, run_date, truth: Truth) -> dict | None:
    """The search-log labels the image pass flagged as likely wrong (labeling.label_issues), against the
    truth: how many flagged labels are wrong, next to how many of all the checked labels (those of the images
    the teacher scored out of fold) are wrong. None when the image pass checked nothing."""
    root = str(outputs_root)
    if not Path(stages.table_path(root, stages.IMAGE_PASS, "label_issues", run_date)).is_dir():
        return None
    checked_images = {r["image_key"] for r in _rows(root, stages.IMAGE_PASS, "teacher_scores", run_date, ["image_key"])}
    flagged = {(r["image_key"], r["label"])
               for r in _rows(root, stages.IMAGE_PASS, "label_issues", run_date, ["image_key", "label"])}
    labels = [r for r in _rows(root, stages.MINE_LOGS, "image_labels", run_date, ["image_key", "label", "product_id"])
              if r["image_key"] in checked_images]
    wrong = {(r["image_key"], r["label"]) for r in labels if not truth.names_category(r["product_id"], r["label"])}
    checked = {(r["image_key"], r["label"]) for r in labels}
    return {"checked_labels": len(checked), "wrong_checked_labels": len(wrong), "flagged": len(flagged),
            "flagged_wrong": len(flagged & wrong)}


def score_cold_start(outputs_root: str | Path, run_date, truth: Truth) -> dict | None:
    """The teacher's tags of cold-start listing images (images of listings no search labeled: the image pass's
    images less mine-logs' image_labels) against the truth, from the image pass's teacher_tags (before
    assemble, so a tag counts whatever source a sample's label credits). None without teacher tags."""
    root = str(outputs_root)
    if not Path(stages.table_path(root, stages.IMAGE_PASS, "teacher_tags", run_date)).is_dir():
        return None
    searched = {r["image_key"] for r in _rows(root, stages.MINE_LOGS, "image_labels", run_date, ["image_key"])}
    product = {r["image_key"]: r["product_id"]
               for r in _rows(root, stages.MINE_LOGS, "images", run_date, ["image_key", "product_id"])}
    cold = {r["image_key"] for r in _rows(root, stages.IMAGE_PASS, "images", run_date, ["image_key"])} - searched
    tags = [r for r in _rows(root, stages.IMAGE_PASS, "teacher_tags", run_date, ["image_key", "name"])
            if r["image_key"] in cold]
    right = sum(truth.names_category(product[r["image_key"]], r["name"]) for r in tags)
    return {"images": len(cold), "tagged": len({r["image_key"] for r in tags}), "tags": len(tags), "right": right}


def _rows(root: str, stage: str, table: str, run_date, columns: list[str]) -> list[dict]:
    """Some columns of one of a stage's tables for the run date, as Python rows."""
    return pq.read_table(stages.table_path(root, stage, table, run_date), columns=columns).to_pylist()


def format_cold_start(cold: dict | None) -> str:
    """One scoreboard line on the teacher's tags of cold-start listings (issue targets: precision 0.9 while
    80 % of these images get a tag)."""
    if not cold:
        return "  cold-start listings: no teacher tags"
    share = cold["tagged"] / cold["images"] if cold["images"] else None
    precision = cold["right"] / cold["tags"] if cold["tags"] else None
    return (f"  cold-start listing images (no search labeled them): {cold['tagged']} of {cold['images']} tagged by "
            f"the teacher ({_fmt(share)}); their {cold['tags']} tags right {_fmt(precision)}")


def format_label_issues(issues: dict | None) -> str:
    """One scoreboard line on the label-issue check."""
    if not issues:
        return "  likely-wrong search-log labels: not checked (no teacher scores out of fold)"
    flagged, checked = issues["flagged"], issues["checked_labels"]
    return (f"  likely-wrong search-log labels (cleanlab on out-of-fold teacher scores): {flagged} flagged of "
            f"{checked} checked, {_fmt(issues['flagged_wrong'] / flagged if flagged else None)} of them wrong "
            f"against the truth (wrong among all checked: "
            f"{_fmt(issues['wrong_checked_labels'] / checked if checked else None)})")


def format_scoreboard(name: str, build: dict, model: dict | None = None) -> str:
    """The scoreboard as the demo and the benchmark print it."""
    split = build["split_categories"]
    lines = [f"truth scoreboard ({name}):",
             f"  classes {build['classes']} for {build['categories_with_listings']} categories with listings "
             f"({build['classes_per_category']:.2f} per category)",
             f"  classes that name no category: {len(build['classes_naming_no_category'])}"
             + _examples(build["classes_naming_no_category"]),
             f"  categories split over several classes: {len(split)}"
             + _examples([" / ".join(v) for v in split.values()]),
             f"  classes without training samples: {len(build['classes_without_training_samples'])}"
             + _examples(build["classes_without_training_samples"])]
    precision = build["label_precision"]
    lines.append(f"  label precision against the truth: all {_fmt(precision['all'])}")
    for source, entry in precision.items():
        if source != "all":
            tiers = ", ".join(f"{t} {p:.3f}" for t, p in entry["tiers"].items())
            lines.append(f"    {source}: {_fmt(entry['precision'])} of {entry['labels']} labels"
                         + (f" ({tiers})" if tiers else ""))
    if model is not None:
        lines.append(f"  model on the test split against the truth: top-1 {_fmt(model['top1_vs_truth'])}, "
                     f"mAP {_fmt(model['map_vs_truth'])} ({model['images']} images)")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _examples(names: list[str], n: int = 6) -> str:
    return f" (e.g. {', '.join(names[:n])})" if names else ""
