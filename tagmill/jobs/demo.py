"""The demo: generate the demo marketplace, write a config that points at it, build it end to end."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from tagmill import stages
from tagmill.config import Config, load_config, to_dict, to_toml
from tagmill.demo.generate import GLOSSARY, generate_market, write_glossary
from tagmill.demo.scoreboard import (Truth, format_cold_start, format_label_issues, format_scoreboard, read_truth,
                                     score_build, score_cold_start, score_label_issues, score_predictions,
                                     trained_on)
from tagmill.demo.vocabulary import build_leaves
from tagmill.jobs.build import run_stages
from tagmill.jobs.train import default_model_dir, print_metrics, run_train, run_train_folds
from tagmill.taxonomy.notebook import NOTEBOOK, execute_notebook
from tagmill.taxonomy.report import write_report
from tagmill.trainer.folds import AVERAGED
from tagmill.trainer.predict import images_in_dataset, predict, write_predictions
from tagmill.trainer.train import CHECKPOINT, epoch_report

log = logging.getLogger("tagmill.demo")

DEMO_OVERRIDES = {
    "mining": {"min_label_images": 5},
    "taxonomy": {"min_images": 5},
    "dataset": {"image_max_side": 96},
    "train": {"arch": "resnet18", "image_size": 64, "epochs": 3, "freeze_epochs": 0, "batch_size": 64,
              "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05, "warmup_epochs": 0.3,
              "use_repeats": True, "head_tail_boundary": 20, "validate_every": 0},
}
"""The demo marketplace is small: a label needs fewer images than the production default K, and the demo
model is a ResNet-18 trained from scratch on 64-pixel images for a few CPU minutes (no pretrained weights
to freeze, so no frozen epoch), each sample shown its repeat factor's times per epoch (dataset.resample_factor:
the rare classes, cold-start listings' among them, are learned at all). Each model validates after its last
epoch only: the demo prints those metrics, and an earlier epoch's would cost a pass over the validation split
for a log line (4 such passes in the demo: its teacher's trunk's 2, and the first epoch of the final and of the
co-trained model)."""
EPOCHS_FROM_TEACHER = 2
"""The demo's final (and co-trained) model starts from its teacher's weights, head rows carried over by class
name (train.init_weights), and trains this many epochs instead of DEMO_OVERRIDES' 3 from scratch: 58.com
fine-tunes its recognizer from a pre-trained model, and the demo's only one is its teacher. On the default
market's rebuilt dataset (same data, seed and test split) the final model's top-1 against the truth was
0.892 started from the teacher for 2 epochs, 0.809 for 1, 0.886 from scratch for 3 (the teacher: 0.834); on the
harder market 0.929 for 2 from the teacher, 0.894 for 3 from scratch (the teacher: 0.916)."""
TEACHER_FOLDS = 2
"""The demo's teacher: cold-start fold models (`tagmill train --folds 2 --cold-start`, trainer.folds), so that
the image pass tags every cold-start listing's photo, the ones its sellers' categories put in the training
split included, with a model that never saw it, at about one model's training cost. Before, one teacher
tagged only the 437 of 1,099 cold-start images it had not trained on. Two shard-level fold models at one
model's cost (each half the steps on half the data) were far weaker: validation top-1 0.53-0.66 against 0.86."""
COTRAINING_WEIGHT = 1.0
"""SICoT's lambda for the demo's co-trained model (the paper weighs the mixed loss like the visual one)."""


def write_demo_market(out: Path, cfg: Config) -> Path:
    """Generate the market under OUT/market (skipped when one with the same demo settings is there) and
    write OUT/tagmill.toml, a config whose inputs point at it. Returns that config's path."""
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
    if not (market / GLOSSARY).is_file():  # a market generated before the glossary existed
        write_glossary(market, build_leaves())
    demo_cfg = cfg.replace("run", date=cfg.demo.run_date)
    demo_cfg = demo_cfg.replace("inputs", events=str(market / "events"), events_format="jsonl",
                                catalog=str(market / "catalog"), catalog_format="jsonl",
                                image_root=str(market / "images"))
    demo_cfg = demo_cfg.replace("outputs", root=str(out / "out"))
    demo_cfg = demo_cfg.replace("taxonomy", zh_table=str(market / GLOSSARY))
    config_file = out / "tagmill.toml"
    config_file.write_text(to_toml(demo_cfg), encoding="utf-8")
    return config_file


def run_demo(out: Path, overrides: dict) -> int:
    """Generate the market, build it from the search log, train a teacher on that dataset, run the image
    pass with it over every listing image (cold-start listings included), rebuild with teacher tags and
    dedup, and train the demo model on the result."""
    started = time.monotonic()
    merged = {section: dict(values) for section, values in DEMO_OVERRIDES.items()}
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(values)
    config_file = write_demo_market(out, load_config(None, merged))
    cfg = load_config(config_file)
    market = Path(cfg.inputs.image_root).parent
    teacher_dir = demo_teacher_dir(cfg)
    user_teacher = cfg.image_pass.teacher
    summaries = run_stages(cfg.replace("image_pass", teacher=""))
    _print_stages(cfg, summaries)
    if not user_teacher:
        print(f"\n== teacher: {TEACHER_FOLDS} cold-start fold models of {cfg.train.arch} trained on the first build "
              f"(search-log labels and sellers' categories, no teacher tags; {cfg.train.image_size} px on CPU): a "
              f"trunk {cfg.train.epochs - cfg.train.fold_epochs} epochs without the {TEACHER_FOLDS} folds of "
              f"images no search labeled, each fold model {cfg.train.fold_epochs} more without its own ==")
        teacher_started = time.monotonic()
        # the averaged model is scored by its logits and started from: no prototypes (train.prototypes)
        result = run_train_folds(cfg, None, teacher_dir, TEACHER_FOLDS, cold_start=True, average_prototypes=False)[0]
        print(f"trained in {time.monotonic() - teacher_started:.0f} s; validation metrics of fold 0:")
        print_metrics(result.metrics, result.chance)
    cfg = cfg.replace("image_pass", teacher=user_teacher or str(teacher_dir))
    if not user_teacher:  # a user's teacher (another vocabulary, maybe another architecture) starts nothing
        cfg = cfg.replace("train", init_weights=str(scored_teacher(cfg) / CHECKPOINT),
                          epochs=EPOCHS_FROM_TEACHER)
    config_file.write_text(to_toml(cfg), encoding="utf-8")
    summaries = run_stages(cfg, [stages.IMAGE_PASS, stages.TAXONOMY, stages.ASSEMBLE, stages.SHARDS])
    _print_stages(cfg, summaries)
    print(_planted_duplicates(cfg, market))
    report = write_report(cfg.outputs.root, cfg.run.run_date().isoformat())
    print(f"\ntaxonomy report for analysts: {report}  (tagmill report taxonomy --config {config_file})")
    print(_executed_notebook(cfg, Path(report).with_suffix(".ipynb")))
    print(f"\nconfig used: {config_file}  (tagmill build --config {config_file} reruns every stage)")

    start = "started from the teacher's weights" if cfg.train.init_weights else "from scratch"
    print(f"\n== train (demo model: {cfg.train.arch}, {cfg.train.image_size} px, {start}, {cfg.train.epochs} epochs "
          "on CPU, search-log labels + teacher tags, deduplicated) ==")
    # scored by its logits (tagmill predict) and no image pass's teacher here: no class prototypes (train.prototypes)
    result = _timed_train(cfg.replace("train", prototypes=False), default_model_dir(cfg))
    print(f"\nvalidation metrics after {result.epochs_done} epochs, next to chance level:")
    print_metrics(result.metrics, result.chance)
    print(f"\nmodel: {default_model_dir(cfg)}/model.ts  (tagmill predict --model {default_model_dir(cfg)} ...)")

    cotrained_dir = Path(f"{default_model_dir(cfg)}-titles")
    print(f"\n== train with the titles as side information (SICoT co-training, lambda {COTRAINING_WEIGHT:g}; "
          "same data, model, start and seed) ==")
    # a comparison, never a teacher: no class prototypes (train.prototypes)
    cotrained = _timed_train(cfg.replace("train", side_info_weight=COTRAINING_WEIGHT, prototypes=False),
                             cotrained_dir)
    print(_head_tail(result.metrics, cotrained.metrics))
    last = epoch_report(cotrained_dir, cotrained.epochs_done)
    print(f"share of the mixed feature's entries taken from the titles (last epoch): {last['semantic_share']:.3f}")
    print("\n" + truth_scoreboard(cfg, market, {"teacher (first build, no teacher tags; its folds' mean)":
                                                scored_teacher(cfg),
                                                "final model (rebuilt dataset)": default_model_dir(cfg)}))
    print(f"\ndemo wall time: {time.monotonic() - started:.0f} s (each stage's and each training's time above)")
    return 0


def demo_teacher_dir(cfg: Config) -> Path:
    """Where the demo trains its teacher: OUTPUTS_ROOT/models/DATE-teacher, its fold models in fold-F/."""
    return Path(cfg.outputs.root) / "models" / f"{cfg.run.run_date().isoformat()}-teacher"


def scored_teacher(cfg: Config) -> Path:
    """The one model of the demo teacher that the scoreboard scores as model (a) and the final model starts
    from: its fold models' weight average (trainer.folds.AVERAGED), which has seen every training image. On
    the default market the final model started from it was right on 0.863 of the test split, from fold 0's
    weights on 0.829 (same rebuilt dataset, seed and test split)."""
    return demo_teacher_dir(cfg) / AVERAGED


def _timed_train(cfg: Config, out: Path):
    """run_train, then how long it took."""
    started = time.monotonic()
    result = run_train(cfg, None, out)
    print(f"trained in {time.monotonic() - started:.0f} s")
    return result


def _executed_notebook(cfg: Config, dest: Path) -> str:
    """Run the analysis notebook on this build and say where the executed copy is (or why there is none)."""
    if not NOTEBOOK.is_file():
        return f"analysis notebook: not executed ({NOTEBOOK} is in a source checkout only)"
    try:
        execute_notebook(cfg.outputs.root, cfg.run.run_date().isoformat(), dest)
    except Exception as err:  # noqa: BLE001 - the notebook is a by-product; the demo's data is already built
        return f"analysis notebook: execution failed ({type(err).__name__}: {str(err)[:300]})"
    return f"analysis notebook, executed on this build: {dest}  (source: {NOTEBOOK})"


def truth_scoreboard(cfg: Config, market: Path, models: dict[str, Path]) -> str:
    """The build's label space and labels, the label-issue check, and each model's top-1 and mAP on the
    dataset's test split, scored against the market's truth (tagmill.demo.scoreboard); the validation metrics
    above score against the dataset's own labels, which cannot show that the labels are wrong."""
    truth = read_truth(market, frozenset(cfg.text.stopwords), cfg.text.wordnet_dir)
    lines = [format_scoreboard("demo market", score_build(cfg.outputs.root, cfg.run.run_date(), truth)),
             format_cold_start(score_cold_start(cfg.outputs.root, cfg.run.run_date(), truth)),
             format_label_issues(score_label_issues(cfg.outputs.root, cfg.run.run_date(), truth))]
    seen = trained_on(models.values())  # no model is scored on an image one of them trained on
    for name, model_dir in models.items():
        if (Path(model_dir) / "model.ts").is_file():
            scored = model_scores(cfg, truth, Path(model_dir), seen)
            lines.append(f"  {name}: on the test split against the truth, top-1 {scored['top1_vs_truth']:.3f}, "
                         f"mAP {scored['map_vs_truth']:.3f} ({scored['images']} images)")
    return "\n".join(lines)


def model_scores(cfg: Config, truth: Truth, model_dir: Path, leave_out: frozenset[str] = frozenset()) -> dict:
    """A trained model's top-1 and mAP on the test split of cfg's dataset against the truth, but on the images
    in `leave_out` (its predictions of every class are written beside the model as test_predictions.parquet)."""
    run_date = cfg.run.run_date()
    manifest = Path(stages.dataset_path(cfg.outputs.root, run_date)) / "manifest.json"
    predictions = model_dir / "test_predictions.parquet"
    every_class = len(json.loads((model_dir / "classes.json").read_text(encoding="utf-8"))["classes"])
    write_predictions(predict(model_dir, images_in_dataset(manifest, "test"), top_k=every_class), predictions)
    return score_predictions(predictions, cfg.outputs.root, run_date, truth, leave_out)


def _head_tail(images_only: dict, cotrained: dict) -> str:
    """Top-1/3 on head and tail validation rows (SICoT table 4), image-only next to co-trained."""
    boundary = images_only["head_tail"]["boundary"]
    lines = [f"\nhead/tail top-k (tail: classes with fewer than {boundary} training images; SICoT table 4):",
             f"{'group':<8}{'rows':>6}{'metric':>8}{'images only':>13}{'co-trained':>12}"]
    for group in ("head", "tail"):
        a, b = images_only["head_tail"][group], cotrained["head_tail"][group]
        for k in ("1", "3"):
            lines.append(f"{group:<8}{a['rows']:>6}{'top-' + k:>8}{a['top_k'][k]:>13.3f}{b['top_k'][k]:>12.3f}")
    return "\n".join(lines)


def _print_stages(cfg: Config, summaries: dict[str, dict]) -> None:
    run_date = cfg.run.run_date()
    for stage, summary in summaries.items():
        print(f"\n== {stage} ==")
        print(_describe(summary))
        print(f"  outputs:  {stages.stage_path(cfg.outputs.root, stage, '<table>')}/run_date={run_date}/")
        print(f"  summary:  {stages.summary_path(cfg.outputs.root, stage, run_date)}")
        print(f"  time:     {summary['seconds']:.0f} s")


def _planted_duplicates(cfg: Config, market: Path) -> str:
    """How the image pass's clusters compare with the duplicates the generator planted (pair precision
    and recall), read from the local outputs."""
    images = pq.read_table(stages.table_path(cfg.outputs.root, stages.IMAGE_PASS, "images", cfg.run.run_date()),
                           columns=["image_path", "cluster"]).to_pylist()
    cluster_of = {r["image_path"]: r["cluster"] for r in images}
    with open(market / "truth" / "duplicates.csv", encoding="utf-8") as f:
        group_of = {r["image_path"]: r["group_id"] for r in csv.DictReader(f) if r["image_path"] in cluster_of}

    def pairs(assignment: dict[str, str]) -> set[tuple[str, str]]:
        members = defaultdict(list)
        for path, key in assignment.items():
            members[key].append(path)
        return {(a, b) for group in members.values() for a in group for b in group if a < b}

    truth, found = pairs(group_of), pairs(cluster_of)
    correct = len(truth & found)
    precision = correct / len(found) if found else 1.0
    recall = correct / len(truth) if truth else 1.0
    return (f"\nplanted duplicates (truth/duplicates.csv): {len(truth)} pairs; the image pass clustered {len(found)} "
            f"pairs, {correct} of them planted: pair precision {precision:.3f}, recall {recall:.3f}")


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
    if summary.get("stage") == "image-pass":
        images, teacher, contents = summary["images"], summary["teacher"], summary["contents"]
        dedup, cold = summary["dedup"], summary["cold_start"]
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(images["quarantined"].items())) or "none"
        lines.append(f"  images: {images['in']} in = {images['out']} usable + "
                     f"{sum(images['quarantined'].values())} quarantined ({reasons})")
        if teacher is None:
            lines.append(f"  no teacher: {contents['forwarded']} unique images decoded once each "
                         f"({contents['images_per_second']} images/s); skipped: {', '.join(summary['skipped'])}")
        else:
            issues = summary["label_issues"]
            lines.append(f"  teacher {teacher['id']}@{teacher['version']}: {contents['forwarded']} unique images "
                         f"forwarded once each ({contents['images_per_second']} images/s); "
                         f"{summary['tags']['tags']} tags on {summary['tags']['images_tagged']} images")
            lines.append(f"  cold start: {cold['images']} images of listings no search labeled, {cold['tagged']} "
                         "of them tagged by the teacher")
            lines.append(f"  likely-wrong search-log labels: {issues['flagged']} flagged in {issues['classes']} "
                         f"classes on {issues['checked_images']} images scored out of fold")
        pixels = dedup["pixel_scores"]
        reused = (f" (pixel scores of {pixels['reused']} reused from the run of {pixels['reused_from']})"
                  if pixels["reused"] else "")
        lines.append(f"  dedup: {dedup['candidate_pairs']} candidate pairs within {dedup['max_hamming']} bits{reused}, "
                     f"{dedup['verified_pairs']} verified; {dedup['exact_duplicate_images']} exact and "
                     f"{dedup['near_duplicate_images']} near duplicates merged; {dedup['kept_images']} images kept")
    if summary.get("stage") == "side-info":
        wv, qc = summary["word_vectors"], summary["query_clusters"]
        lines.append(f"  {summary['titles']} titles tokenized; Word2Vec on {summary['sentences']} titles and queries: "
                     f"{wv['words']} words x {wv['dim']} (seed {wv['seed']}); {summary['queries']} queries in "
                     f"{qc['k']} K-means clusters ({qc['unclustered']} without an embedding)")
    if summary.get("stage") == "taxonomy":
        tags = summary["tags"]
        drops = ", ".join(f"{r} {n}" for r, n in sorted(tags["quarantined"].items())) or "none"
        mapped = ", ".join(f"{k} {v}" for k, v in summary["mapped_by"].items())
        lines.append(f"  raw tags: {tags['in']} in = {tags['out']} mapped to classes + "
                     f"{sum(tags['quarantined'].values())} dropped ({drops}); {tags['merged']} merged into another "
                     f"tag's class; mapped by {mapped}")
        lines.append(f"  {summary['classes']} classes + {summary['nodes']} ancestor nodes in "
                     f"{len(summary['domains'])} domains; {summary['merge_candidates']} co-occurrence merge and "
                     f"{summary['child_candidates']} child candidates for review; coverage "
                     f"{summary['coverage']['after']:.1%} of labeled images")
    if summary.get("stage") == "assemble":
        splits = ", ".join(f"{s} {v['samples']} ({v['products']} products)" for s, v in summary["splits"].items())
        sources = ", ".join(f"{k} {v}" for k, v in summary["labeled_images_by_source"].items())
        merged = ", ".join(f"{r} {n}" for r, n in sorted(summary["images"]["quarantined"].items())) or "none"
        lines.append(f"  labeled images by source: {sources}; {summary['images']['in']} in = "
                     f"{summary['images']['out']} samples + {merged}")
        tags = summary.get("teacher_tags")
        if tags:
            lines.append(f"  teacher tags: {tags['in']} in = {tags['kept']} kept + "
                         f"{tags['unchecked_additions_left_out']} left out (a class added to an image the search "
                         "log or its seller labeled: dataset.teacher_adds_to_labeled_images)")
        lines.append(f"  {summary['classes']} classes; split by product and duplicate cluster: {splits}")
    if summary.get("stage") == "shards":
        samples, gate = summary["samples"], summary["gate"]
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(samples["quarantined"].items())) or "none"
        lines.append(f"  gate: passed {gate['expectations']} expectations in {gate['suites']} suites "
                     f"({gate['seconds']} s, {gate['spark_jobs']} Spark jobs); Data Docs: {gate['data_docs']}")
        lines.append(f"  samples: {samples['in']} in = {samples['out']} in {summary['shards']} shards + "
                     f"{sum(samples['quarantined'].values())} quarantined images ({reasons})")
        lines.append(f"  dataset:  {summary['manifest']}")
    return "\n".join(lines)
