"""The `tagmill` command: one subcommand per stage, plus build, the demo and config show."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import textwrap
import tomllib
from pathlib import Path

from tagmill import __version__
from tagmill.config import Config, ConfigError, load_config, to_toml

DEMO_DIR = "demo-out"
STAGE_HELP = {
    "build": "run every stage in order for one run date (the daily job)",
    "mine-logs": "search-log events + catalog -> query labels per image (MSURU)",
    "image-pass": "every listing image -> teacher tags, embedding, code; near-duplicate clusters",
    "side-info": "titles + queries -> title tokens, word vectors (Word2Vec), query clusters (K-means)",
    "taxonomy": "raw tags -> classes: rare filter, co-occurrence rules, WordNet merge, hierarchy and domains",
    "assemble": "labels of every source -> class index + one sample per duplicate cluster, leak-free split",
    "shards": "validation gate, then shards + manifest (published last)",
}
STAGE_IO = {
    "mine-logs": (
        ["inputs.events (format inputs.events_format; the run date's date=D/ folder and mining.retention_days "
         "before it)", "inputs.catalog (format inputs.catalog_format)"],
        ["tuples", "query_forms", "labels", "images", "dropped_labels", "events_quarantine", "listings_quarantine",
         "image_labels"], []),
    "image-pass": (
        ["ROOT/mine-logs/{images,image_labels}/run_date=D/", "the image files under inputs.image_root (or "
         "inputs.allowed_image_roots)", "the teacher model image_pass.teacher (tags only when set)"],
        ["hashed", "forwarded", "contents", "duplicate_pairs", "clusters", "images", "teacher_scores",
         "teacher_thresholds", "teacher_tags", "label_issues", "images_quarantine"], []),
    "side-info": (
        ["ROOT/mine-logs/{images,query_forms}/run_date=D/", "side_info.query_embeddings (when set)"],
        ["title_tokens", "query_clusters"],
        ["ROOT/side-info/word_vectors/run_date=D/ (vocabulary.txt, vectors.npy, word_vectors.json)"]),
    "taxonomy": (
        ["ROOT/mine-logs/{image_labels,images,labels,tuples}/run_date=D/",
         "ROOT/image-pass/{teacher_tags,images,label_issues}/run_date=D/ (with a teacher)",
         "ROOT/taxonomy/taxonomy/ of the previous finished run (for the diff)", "text.wordnet_dir"],
        ["tag_stats", "tag_stats_by_source", "cooccurrence", "decisions", "tag_map", "taxonomy", "diff"],
        ["`tagmill report taxonomy` renders them as ROOT/taxonomy/_reports/run_date=D/taxonomy.html"]),
    "assemble": (
        ["ROOT/mine-logs/{image_labels,images}/run_date=D/",
         "ROOT/image-pass/{images,teacher_tags,label_issues}/run_date=D/ (with a teacher)",
         "ROOT/taxonomy/{taxonomy,tag_map}/run_date=D/ (taxonomy.enabled)",
         "ROOT/side-info/{title_tokens,query_clusters}/run_date=D/ (side_info.enabled)"],
        ["class_index", "class_folds", "samples", "classes"], []),
    "shards": (
        ["ROOT/assemble/{samples,classes}/run_date=D/", "ROOT/mine-logs/{tuples,image_labels}/run_date=D/ (the gate)",
         "ROOT/image-pass/{teacher_tags,images}/run_date=D/ (the gate, with a teacher)",
         "ROOT/side-info/word_vectors/run_date=D/ (side_info.enabled)", "the image files of the samples"],
        ["written", "images_quarantine"],
        ["ROOT/datasets/D/: manifest.json (last), classes.json, README.md (dataset card), <split>.wids.json, "
         "shards/<split>-<bucket>-<seq>.tar, stats/<split>-<bucket>-<seq>.json (per shard), word_vectors/",
         "ROOT/shards/_runs/run_date=D/gate.json and gate.html (the gate's outcome, offline page)",
         "ROOT/gate/run_date=D/ (great-expectations project and Data Docs), ROOT/gate/history.jsonl (every gate "
         "run, appended)"]),
}
"""Stage -> (what it reads, the tables it writes, other files it writes), shown by its --help."""


def stage_description(stage: str) -> str:
    """The --help description of a stage: what it does, what it reads and what it writes where."""
    if stage == "build":
        return "\n\n".join(_wrap(text) for text in (
            f"{STAGE_HELP['build']}: {', '.join(STAGE_IO)}, each reading what the ones before it wrote (see each "
            "stage's --help). Everything is written under an attempt folder (ROOT/_attempts/run_date=D/ID/) and "
            "moved into ROOT when every stage has finished.",
            "ROOT is outputs.root and D the run date (run.date or --date)."))
    reads, tables, files = STAGE_IO[stage]
    lines = [f"{STAGE_HELP[stage]}.", "", "reads:", *[f"  {r}" for r in reads], "",
             "writes (ROOT = outputs.root, D = the run date; a run writes into an attempt folder and moves it "
             "into ROOT when it has finished):",
             f"  tables ROOT/{stage}/<table>/run_date=D/ (Parquet): {', '.join(tables)}",
             *[f"  {f}" for f in files],
             f"  the run summary ROOT/{stage}/_runs/run_date=D/summary.json, last"]
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str, width: int = 100) -> str:
    indent = " " * (len(line) - len(line.lstrip()))
    return textwrap.fill(line, width, subsequent_indent=indent + "  ", break_on_hyphens=False) if line else line


def _add_config_options(parser: argparse.ArgumentParser, spark: bool = True) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (defaults apply to every key left out)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, written as TOML (repeatable), e.g. --set mining.min_label_images=5")
    if spark:
        parser.add_argument("--date", help="run date YYYY-MM-DD (overrides run.date)")
        parser.add_argument("--master", help="Spark master: local[*], spark://HOST:PORT, yarn, k8s://... "
                                             "(overrides spark.master)")


def _overrides(args: argparse.Namespace) -> dict:
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(item, "not SECTION.KEY=VALUE", "write e.g. --set mining.min_label_images=5")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare word: take it as a string
        overrides.setdefault(section, {})[name] = parsed
    if getattr(args, "date", None):
        overrides.setdefault("run", {})["date"] = args.date
    if getattr(args, "master", None):
        overrides.setdefault("spark", {})["master"] = args.master
    if getattr(args, "teacher", None):
        overrides.setdefault("image_pass", {})["teacher"] = str(args.teacher)
    return overrides


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, _overrides(args))


def cmd_config_show(args: argparse.Namespace) -> int:
    print(to_toml(_config(args), documented=True), end="")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from tagmill.jobs.demo import write_demo_market

    cfg = _config(args)
    config_file = write_demo_market(Path(args.out), cfg)
    print(f"demo marketplace written to {args.out}; its config: {config_file}")
    return 0


def _run_stage(args: argparse.Namespace, stage: str) -> int:
    from tagmill.jobs.inputs import preflight

    cfg = _config(args)
    if stage in ("build", "mine-logs"):
        preflight(cfg.inputs)  # a missing input or column fails here, in about a second, before Spark starts
    from tagmill.jobs.build import run_stages  # Spark, torch: seconds to import

    summaries = run_stages(cfg, [stage] if stage != "build" else None)
    print(json.dumps(summaries, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tagmill.jobs.train import run_train

    if args.init_weights:
        args.set.append(f"train.init_weights={json.dumps(str(args.init_weights))}")
    if args.cold_start and not args.folds:
        print("tagmill: error: --cold-start needs --folds K (how many folds the images are split into)",
              file=sys.stderr)
        return 2
    if args.folds:
        from tagmill.jobs.train import run_train_folds

        run_train_folds(_config(args), args.manifest, args.out, args.folds, args.cold_start)
    else:
        run_train(_config(args), args.manifest, args.out)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tagmill.jobs.train import run_predict

    if not args.images and not args.manifest:
        raise ConfigError("--images/--manifest", "nothing to predict", "pass --images FOLDER or --manifest FILE")
    run_predict(args.model, args.out, args.images, args.manifest, args.split, args.top_k)
    return 0


def cmd_report_taxonomy(args: argparse.Namespace) -> int:
    from tagmill.taxonomy.report import write_report

    cfg = _config(args)
    day = cfg.run.run_date()  # once: with no date set it is today, which may change between two calls
    path = write_report(cfg.outputs.root, day.isoformat(), str(args.out) if args.out else None)
    print(f"taxonomy report for {day}: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tagmill.jobs.demo import run_demo

    return run_demo(Path(args.out), _overrides(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagmill",
        description="Build weakly labeled, deduplicated, validated training sets for marketplace image "
                    "recognition from search logs, listings and images.")
    parser.add_argument("--version", action="version", version=f"tagmill {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for stage, text in STAGE_HELP.items():
        p = sub.add_parser(stage, help=text, description=stage_description(stage),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_config_options(p)
        if stage in ("build", "image-pass"):
            p.add_argument("--teacher", type=Path,
                           help="teacher model for the image pass: a `tagmill train` output folder, a TorchScript "
                                "file or a checkpoint.pt (same as --set image_pass.teacher=...)")
        p.set_defaults(func=functools.partial(_run_stage, stage=stage))

    p = sub.add_parser("train", help="train the bundled model on a published dataset (resumes when "
                                     "OUT/checkpoint.pt exists)")
    p.add_argument("--manifest", type=Path,
                   help="the dataset's manifest.json (default: OUTPUTS_ROOT/datasets/DATE/manifest.json)")
    p.add_argument("--out", type=Path, help="model folder (default: OUTPUTS_ROOT/models/DATE)")
    p.add_argument("--init-weights", type=Path,
                   help="published ResNet/ResNeXt state-dict file, or a tagmill model's checkpoint.pt (head rows "
                        "carried over by class name), to start from (same as --set train.init_weights=...)")
    p.add_argument("--folds", type=int, default=0, metavar="K",
                   help="train K fold teachers into OUT/fold-0..K-1 instead, each without one K-th of the train "
                        "shards; OUT is then an out-of-fold teacher for `tagmill image-pass --teacher OUT`")
    p.add_argument("--cold-start", action="store_true",
                   help="with --folds: split only the training images no search-log label names (cold-start "
                        "listings, the images a teacher is there to tag) into the K folds; a shared trunk trains "
                        "train.epochs - train.fold_epochs epochs without them, each fold model train.fold_epochs "
                        "more from it (about one model's cost, not K)")
    _add_config_options(p, spark=False)
    p.add_argument("--date", help="run date YYYY-MM-DD of the dataset (overrides run.date)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="top label ids + scores + embedding per image, from a trained model")
    p.add_argument("--model", type=Path, required=True, help="a `tagmill train` output folder (has model.ts)")
    p.add_argument("--images", type=Path, help="folder of image files to label")
    p.add_argument("--manifest", type=Path, help="or: a published dataset's manifest.json")
    p.add_argument("--split", default="test", help="split of --manifest to label (default: test)")
    p.add_argument("--top-k", type=int, default=5, help="label ids per image (default: 5)")
    p.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    p.set_defaults(func=cmd_predict, set=[], config=None)

    p = sub.add_parser("demo-data", help="generate the demo marketplace (listings, images, search logs, "
                                         "ground truth) and a config that points at it")
    p.add_argument("--out", default=DEMO_DIR, help=f"output folder (default: {DEMO_DIR})")
    _add_config_options(p, spark=False)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("demo", help="generate the demo marketplace, build it end to end, train a small model on it")
    p.add_argument("--out", default=DEMO_DIR, help=f"output folder (default: {DEMO_DIR})")
    _add_config_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="reports for analysts")
    report_sub = p.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    taxonomy = report_sub.add_parser("taxonomy", help="one self-contained HTML page: long tail, co-occurrence "
                                                      "heatmap, merges and drops with their reasons, domain tree, "
                                                      "coverage, diff against the previous run")
    _add_config_options(taxonomy, spark=False)
    taxonomy.add_argument("--date", help="run date YYYY-MM-DD (overrides run.date)")
    taxonomy.add_argument("--out", type=Path, help="HTML file to write (default: under the outputs root, "
                                                    "taxonomy/_reports/run_date=D/taxonomy.html)")
    taxonomy.set_defaults(func=cmd_report_taxonomy)

    p = sub.add_parser("config", help="configuration helpers")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_sub.add_parser("show", help="print the effective config as TOML (defaults + file + --set), "
                                              "each key's documentation above it as a comment",
                                 description="Print the effective config (defaults + --config file + --set) as "
                                             "TOML; above each section and key, its documentation (the "
                                             "docstrings in tagmill/config.py) as # comments. The output is a "
                                             "valid config file.")
    _add_config_options(show)
    show.set_defaults(func=cmd_config_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # tagmill's own progress at INFO; other libraries (py4j retries an idle connection with a traceback
    # at INFO) only from WARNING up
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("tagmill").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except Exception as err:
        known = _explained(err)
        if known is None:
            raise
        status, text = known
        print(text, file=sys.stderr)
        return status


def _explained(err: Exception) -> tuple[int, str] | None:
    """The exit status and message of an error tagmill explains without a traceback, or None.

    The error types are imported here, once one is raised, the light ones first: the modules of the others
    import torch or great-expectations (seconds), which a command refused for its config or its inputs does not
    wait for."""
    from tagmill.jobs.inputs import InputError

    if isinstance(err, (ConfigError, InputError, FileNotFoundError)):
        return 2, f"tagmill: error: {err}"
    from tagmill.jobs.io import CountMismatch, QuarantineLimit
    from tagmill.jobs.runs import RunLocked

    if isinstance(err, CountMismatch):
        return 4, f"tagmill: counts do not add up, nothing was published: {err}"
    if isinstance(err, QuarantineLimit):
        return 6, ("tagmill: too much of the input was quarantined, nothing was published (the last good run "
                   f"stays).\n{err}")
    if isinstance(err, RunLocked):
        return 5, f"tagmill: error: {err}"
    from tagmill.dataset.gate import GateFailed
    from tagmill.labeling.teacher import TeacherError
    from tagmill.trainer.reader import DatasetError
    from tagmill.trainer.train import CheckpointError

    if isinstance(err, (DatasetError, TeacherError, CheckpointError)):
        return 2, f"tagmill: error: {err}"
    if isinstance(err, GateFailed):
        return 3, f"tagmill: validation gate failed, nothing was published.\n{err}"
    return None

if __name__ == "__main__":
    sys.exit(main())
