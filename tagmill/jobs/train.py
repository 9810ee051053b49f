"""`tagmill train` and `tagmill predict`: thin entrypoints over tagmill.trainer (no Spark involved)."""

from __future__ import annotations

from pathlib import Path

from tagmill.config import Config
from tagmill.labeling.sources import SEARCH_LOG


def default_manifest(cfg: Config) -> Path:
    return Path(cfg.outputs.root) / "datasets" / cfg.run.run_date().isoformat() / "manifest.json"


def default_model_dir(cfg: Config) -> Path:
    return Path(cfg.outputs.root) / "models" / cfg.run.run_date().isoformat()


def run_train(cfg: Config, manifest: Path | None, out: Path | None):
    """Train (or resume) and print where the model and metrics are; returns the TrainResult."""
    from tagmill.trainer.train import train

    manifest = manifest or default_manifest(cfg)
    out = out or default_model_dir(cfg)
    result = train(manifest, out, cfg.train, cfg.run.seed)
    state = "finished" if result.finished else f"stopped at step {result.steps_done} (run again to resume)"
    print(f"training {state}: {result.epochs_done} epoch(s); metrics in {out / 'metrics'}"
          + (f"; model {out / 'model.ts'}" if result.finished else ""))
    if cfg.train.side_info_weight > 0:
        print(f"co-trained with the titles (SICoT, lambda {cfg.train.side_info_weight:g}); the model predicts from "
              f"images alone, the semantic stream stays in {out / 'checkpoint.pt'}")
    return result


def run_train_folds(cfg: Config, manifest: Path | None, out: Path | None, k: int, cold_start: bool = False,
                    average_prototypes: bool = True) -> list:
    """Train k fold teachers (trainer.folds) into OUT/fold-F; OUT is then one out-of-fold teacher. cold_start:
    only the training images without a search-log label are split into folds, after a shared trunk, and the
    fold models' mean goes to OUT/averaged (with prototypes unless average_prototypes is False)."""
    from tagmill.trainer.folds import train_cold_start_folds, train_folds

    out, manifest = out or default_model_dir(cfg), manifest or default_manifest(cfg)
    if cold_start:
        results = train_cold_start_folds(manifest, out, cfg.train, cfg.run.seed, k, SEARCH_LOG, average_prototypes)
    else:
        results = train_folds(manifest, out, cfg.train, cfg.run.seed, k)
    print(f"{k} fold teachers trained in {out}/fold-0..{k - 1}; pass {out} as image_pass.teacher: each image is "
          "tagged only by the folds that never trained on it")
    return results


def run_predict(model_dir: Path, out: Path, images: Path | None, manifest: Path | None, split: str,
                top_k: int) -> int:
    from tagmill.trainer.predict import images_in_dataset, images_in_folder, predict, write_predictions

    source = images_in_folder(images) if images else images_in_dataset(manifest, split)
    rows = write_predictions(predict(model_dir, source, top_k=top_k), out)
    print(f"{rows} predictions (top {top_k} label ids, scores, embedding) written to {out}")
    return rows


def print_metrics(metrics: dict, chance: dict) -> None:
    """The headline validation metrics, next to the same metrics of random scores (chance level)."""
    rows = [("mAP macro", ("map_macro",)), ("mAP micro", ("map_micro",)), ("ranking AP", ("ranking_ap",)),
            ("top-1", ("top_k", "1")), ("top-3", ("top_k", "3")), ("top-5", ("top_k", "5")),
            ("hamming loss", ("hamming_loss",)), ("P@k", ("knn", "precision")), ("C@k", ("knn", "coverage")),
            ("level-1 micro", ("parent_levels", "1", "micro"))]

    def pick(values, keys):
        for key in keys:
            values = values.get(key) if isinstance(values, dict) else None
        return values

    def cell(value):
        return f"{value:>10.3f}" if isinstance(value, (int, float)) else f"{'-':>10}"

    print(f"{'metric':<16}{'model':>10}{'chance':>10}")
    for label, keys in rows:
        value, base = pick(metrics, keys), pick(chance, keys)
        if value is not None or base is not None:  # e.g. parent levels exist only with a class hierarchy
            print(f"{label:<16}{cell(value)}{cell(base)}")
