"""The demo: generate the demo marketplace, write a config that points at it, build it end to end."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from tagmill.config import Config, load_config, to_dict, to_toml

log = logging.getLogger("tagmill.demo")

DEMO_OVERRIDES = {
    "mining": {"min_label_images": 5},
    "dataset": {"image_max_side": 96},
    "train": {"arch": "resnet18", "image_size": 64, "epochs": 4, "freeze_epochs": 0, "batch_size": 64,
              "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05, "warmup_epochs": 0.3,
              "use_repeats": False, "head_tail_boundary": 20},
}
"""The demo marketplace is small: a label needs fewer images than the production default K, and the demo
model is a ResNet-18 trained from scratch on 64-pixel images for a few CPU minutes (no pretrained weights
to freeze, so no frozen epoch)."""


def write_demo_market(out: Path, cfg: Config) -> Path:
    """Generate the market under OUT/market (skipped when one with the same demo settings is there) and
    write OUT/tagmill.toml, a config whose inputs point at it. Returns that config's path."""
    from tagmill.demo.generate import generate_market

    out = out.resolve()
    market = out / "market"
    marker = market / "_generated.json"
    wanted = {"demo": to_dict(cfg)["demo"], "retention_days": cfg.mining.retention_days}
    if not (marker.is_file() and json.loads(marker.read_text()) == wanted):
        log.info("generating the demo marketplace in %s", market)
        counts = generate_market(market, cfg.demo, dt.date.fromisoformat(cfg.demo.run_date),
                                 cfg.mining.retention_days)
        log.info("demo marketplace: %s", counts)
        marker.write_text(json.dumps(wanted, sort_keys=True))
    demo_cfg = cfg.replace("run", date=cfg.demo.run_date)
    demo_cfg = demo_cfg.replace("inputs", events=str(market / "events"), events_format="jsonl",
                                catalog=str(market / "catalog"), catalog_format="jsonl",
                                image_root=str(market / "images"))
    demo_cfg = demo_cfg.replace("outputs", root=str(out / "out"))
    config_file = out / "tagmill.toml"
    config_file.write_text(to_toml(demo_cfg), encoding="utf-8")
    return config_file


def run_demo(out: Path, overrides: dict) -> int:
    from tagmill.jobs.build import run_stages
    from tagmill.jobs.io import stage_path, summary_path

    merged = {section: dict(values) for section, values in DEMO_OVERRIDES.items()}
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(values)
    config_file = write_demo_market(out, load_config(None, merged))
    cfg = load_config(config_file)
    summaries = run_stages(cfg)
    run_date = cfg.run.run_date()
    print()
    print(f"tagmill demo: built run date {run_date} from {config_file}")
    for stage, summary in summaries.items():
        print(f"\n== {stage} ==")
        print(_describe(summary))
        print(f"  outputs:  {stage_path(cfg.outputs.root, stage, '<table>')}/run_date={run_date}/")
        print(f"  summary:  {summary_path(cfg.outputs.root, stage, run_date)}")
    print(f"\nconfig used: {config_file}  (tagmill build --config {config_file} reruns it)")

    from tagmill.jobs.train import default_model_dir, print_metrics, run_train

    print(f"\n== train (demo model: {cfg.train.arch}, {cfg.train.image_size} px, {cfg.train.epochs} epochs on CPU) ==")
    result = run_train(cfg, None, None)
    print(f"\nvalidation metrics after {result.epochs_done} epochs, next to chance level:")
    print_metrics(result.metrics, result.chance)
    print(f"\nmodel: {default_model_dir(cfg)}/model.ts  (tagmill predict --model {default_model_dir(cfg)} ...)")
    return 0


def _describe(summary: dict) -> str:
    lines = []
    for key in ("events", "listings"):
        part = summary.get(key)
        if part:
            quarantined = sum(part["quarantined"].values())
            reasons = ", ".join(f"{r} {n}" for r, n in part["quarantined"].items()) or "none"
            lines.append(f"  {key}: {part['in']} in = {part['used']} used + {quarantined} quarantined ({reasons})")
    labels = summary.get("labels")
    if labels:
        lines.append(f"  labels ({labels['tier']} tier, K={labels['min_images']}): {labels['kept']} kept, "
                     f"{labels['dropped']} dropped; {labels['images']} images of {labels['products']} products labeled")
    if summary.get("stage") == "assemble":
        splits = ", ".join(f"{s} {v['samples']} ({v['products']} products)" for s, v in summary["splits"].items())
        lines.append(f"  {summary['images']['out']} samples, {summary['classes']} classes; split by product: {splits}")
    if summary.get("stage") == "shards":
        samples, gate = summary["samples"], summary["gate"]
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(samples["quarantined"].items())) or "none"
        lines.append(f"  gate: passed {gate['expectations']} expectations in {gate['suites']} suites "
                     f"({gate['seconds']} s, {gate['spark_jobs']} Spark jobs); Data Docs: {gate['data_docs']}")
        lines.append(f"  samples: {samples['in']} in = {samples['out']} in {summary['shards']} shards + "
                     f"{sum(samples['quarantined'].values())} quarantined images ({reasons})")
        lines.append(f"  dataset:  {summary['manifest']}")
    return "\n".join(lines)
