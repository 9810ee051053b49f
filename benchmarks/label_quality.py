"""Benchmark: the truth scoreboard of the label space and the labels, on two generated markets.

For the default demo market and a harder one (another seed, three times the misspellings, twice the Chinese),
generates the market, builds it from the search log alone (mine-logs, side-info, taxonomy, assemble, shards:
the demo's settings, no teacher) and prints, scored against the market's truth/ (tagmill.demo.scoreboard):
classes against the categories with listings, classes that name no category, categories split over several
classes, classes without training samples, and label precision per source and tier. With --train it also
trains the demo's model on each dataset and prints its test-split top-1 against the true categories.

    python benchmarks/label_quality.py [--out .bench/label_quality] [--train] [--only default|harder]

The issue's targets (classes <= 1.05 x categories, <= 2 classes naming no category, <= 2 split categories,
search-log precision >= 0.97, no class without training samples) are printed next to each figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tagmill.config import load_config
from tagmill.demo.scoreboard import format_scoreboard, read_truth, score_build
from tagmill.jobs.build import run_stages
from tagmill.jobs.demo import DEMO_OVERRIDES, model_scores, write_demo_market
from tagmill.jobs.train import run_train

REPO = Path(__file__).resolve().parents[1]
MARKETS = {
    "default": {},
    "harder": {"seed": 11, "misspelling_share": 0.15, "chinese_share": 0.4},
}
"""Demo settings of each market on top of the defaults."""


def targets(build: dict) -> str:
    search_log = build["label_precision"].get("search_log", {}).get("precision")
    checks = [("classes <= 1.05 x categories", build["classes_per_category"] <= 1.05),
              ("<= 2 classes naming no category", len(build["classes_naming_no_category"]) <= 2),
              ("<= 2 split categories", len(build["split_categories"]) <= 2),
              ("search-log precision >= 0.97", search_log is not None and search_log >= 0.97),
              ("no class without training samples", not build["classes_without_training_samples"])]
    return "  targets: " + "; ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in checks)


def run_market(name: str, out: Path, train: bool) -> dict:
    overrides = {section: dict(values) for section, values in DEMO_OVERRIDES.items()}
    overrides["demo"] = dict(MARKETS[name])
    cfg = load_config(write_demo_market(out, load_config(None, overrides)))
    started = time.time()
    run_stages(cfg.replace("image_pass", teacher=""))
    built = time.time() - started
    truth = read_truth(Path(cfg.inputs.image_root).parent, frozenset(cfg.text.stopwords), cfg.text.wordnet_dir)
    run_date = cfg.run.run_date()
    build = score_build(cfg.outputs.root, run_date, truth)
    model = None
    if train:
        model_dir = out / "model"
        run_train(cfg, None, model_dir)
        model = model_scores(cfg, truth, model_dir)
    print(format_scoreboard(f"{name} market, no teacher, built in {built:.0f} s", build, model))
    print(targets(build))
    return {"build": build, "model": model}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / ".bench" / "label_quality"))
    parser.add_argument("--train", action="store_true", help="also train the demo model and score its top-1")
    parser.add_argument("--only", choices=sorted(MARKETS), help="one market only")
    args = parser.parse_args(argv)
    results = {}
    for name in [args.only] if args.only else MARKETS:
        results[name] = run_market(name, Path(args.out) / name, args.train)
    (Path(args.out) / "scoreboard.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"\nfull scoreboards: {Path(args.out) / 'scoreboard.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
