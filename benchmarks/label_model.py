"""Benchmark: a label model over the label sources against tagmill's simple rule, scored against the truth.

Issue 17's third item: one confidence per (image, class) from the search log, the sellers' categories and the
teacher. tagmill ships the simple rule: every search-log and seller-category label, the teacher's calibrated
tags where they confirm one of those or tag a cold-start image (dataset.assemble.confirming_tags), the
sources' confidences combined by noisy-or (dataset.assemble.noisy_or). This script fits Snorkel's LabelModel
(Ratner et al.) on the same candidates of a finished demo build and prints, for each, how many (image, class)
labels it keeps and how many of them name the product's true category (the demo market's truth/), overall and
for the labels only the teacher gives.

Each source votes on each candidate (an image and a class some source gave it): 1 when it gave the class,
0 when it labeled or scored the image with other classes only, abstain when it said nothing about the image.

    .venv/bin/python -m pip install snorkel   # not a tagmill dependency; only this benchmark needs it
    .venv/bin/python benchmarks/label_model.py [--demo-out demo-out]

On the demo (`make demo`, 2026-12-06): the simple rule keeps 7,075 labels at precision 0.986, 106 of them the
teacher's alone at 0.755; the label model at P >= 0.5 keeps 5,564 at 0.997 and none of the teacher's alone
(it learns that a lone vote is weak: its accuracy estimates are 0.56, 0.55 and 0.43 for the search log, the
sellers and the teacher, and no candidate reaches P 0.7), so it would drop every cold-start tag and about 1,430
right labels to remove about 80 wrong ones. tagmill keeps the simple rule.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tagmill import stages
from tagmill.config import load_config
from tagmill.dataset.assemble import map_to_classes, search_log_labels, seller_category_labels
from tagmill.demo.scoreboard import read_truth
from tagmill.jobs.frame import StageRun
from tagmill.jobs.sources import all_teacher_labels
from tagmill.jobs.spark import spark_session
from tagmill.labeling.seller_categories import category_labels
from tagmill.labeling.sources import SEARCH_LOG, SELLER_CATEGORY, TEACHER

SOURCES = (SEARCH_LOG, SELLER_CATEGORY, TEACHER)


def candidates(out: Path):
    """(labels: image_key, product_id, label (class), source, one row per source's class of an image;
    images each source labeled or scored: {source: set of image keys}) of the demo build in `out`."""
    cfg = load_config(out / "tagmill.toml")
    with spark_session(cfg.spark) as spark:
        stage = StageRun(spark, cfg, "label-model-benchmark")  # reads only; writes nothing
        sellers = category_labels(stage.read("images", stages.MINE_LOGS), cfg.text, cfg.taxonomy.propagate_to_ancestors)
        raw = (search_log_labels(stage.read("image_labels", stages.MINE_LOGS))
               .unionByName(seller_category_labels(sellers, cfg.dataset.seller_category_confidence))
               .unionByName(all_teacher_labels(stage)))
        mapped = map_to_classes(raw, stage.read("tag_map", stages.TAXONOMY), stage.read("taxonomy", stages.TAXONOMY),
                                cfg.taxonomy.propagate_to_ancestors)
        labels = mapped.select("image_key", "product_id", "label", "source").distinct().toPandas()
        scored = {r.image_key for r in stage.read("teacher_scores", stages.IMAGE_PASS).select("image_key")
                  .distinct().collect()}
    seen = {s: set(labels.loc[labels.source == s, "image_key"]) for s in (SEARCH_LOG, SELLER_CATEGORY)}
    return cfg, labels, {**seen, TEACHER: scored}


def votes(labels, seen) -> tuple:
    """(candidates: image_key, product_id, label; L: (n, 3) votes in SOURCES order, -1 abstain)."""
    cand = labels[["image_key", "product_id", "label"]].drop_duplicates(["image_key", "label"]).reset_index(drop=True)
    L = np.full((len(cand), len(SOURCES)), -1)
    for j, source in enumerate(SOURCES):
        gave = set(zip(labels.loc[labels.source == source, "image_key"], labels.loc[labels.source == source, "label"]))
        for i, key in enumerate(zip(cand.image_key, cand.label)):
            L[i, j] = 1 if key in gave else 0 if key[0] in seen[source] else -1
    return cand, L


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-out", default="demo-out", help="the folder `tagmill demo --out` wrote")
    args = parser.parse_args(argv)
    try:
        from snorkel.labeling.model import LabelModel
    except ImportError:
        print("snorkel is not installed: .venv/bin/python -m pip install snorkel (only this benchmark needs it)")
        return 2
    out = Path(args.demo_out)
    cfg, labels, seen = candidates(out)
    truth = read_truth(out / "market", frozenset(cfg.text.stopwords), cfg.text.wordnet_dir)
    cand, L = votes(labels, seen)
    right = np.array([truth.named.get(label) in truth.lineage.get(truth.leaf_of_product.get(p, ""), ())
                      for p, label in zip(cand.product_id, cand.label)])
    model = LabelModel(cardinality=2, verbose=False)
    model.fit(L, n_epochs=500, seed=1)
    p = model.predict_proba(L)[:, 1]
    checked = (L[:, 0] >= 0) | (L[:, 1] >= 0)  # the search log or the seller labeled the image
    by_others = (L[:, 0] == 1) | (L[:, 1] == 1)
    teacher_only = (L[:, 2] == 1) & ~by_others
    print(f"{len(cand)} candidate (image, class) labels; source accuracy estimates of the label model: "
          + ", ".join(f"{s} {w:.2f}" for s, w in zip(SOURCES, model.get_weights())))
    rows = {"every candidate": np.ones(len(cand), bool),
            "simple rule (tagmill)": by_others | (teacher_only & ~checked)}
    rows.update({f"label model P >= {t}": p >= t for t in (0.5, 0.7, 0.9)})
    for name, keep in rows.items():
        alone = keep & teacher_only
        print(f"  {name:<24} labels {keep.sum():>6}, precision {_share(right[keep])}; "
              f"the teacher's alone {alone.sum():>5}, precision {_share(right[alone])}")
    return 0


def _share(flags: np.ndarray) -> str:
    return f"{flags.mean():.3f}" if len(flags) else "  n/a"


if __name__ == "__main__":
    sys.exit(main())
