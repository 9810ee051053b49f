"""`tagmill taxonomy`: raw tags of every label source -> classes with a hierarchy and domains.

Read, call the taxonomy library, write. In Spark: tag statistics, the rare filter, the co-occurrence matrix
(sparse, never collected) and its rules, and the classes' support. In the driver, on per-tag data only: the
WordNet mapping, the hierarchy and the class table. Every raw tag ends mapped to a class or dropped with its
rule; the job fails before writing its summary if those do not add up.
"""

from __future__ import annotations

import logging

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from tagmill import stages
from tagmill.config import Config
from tagmill.jobs import io
from tagmill.jobs.frame import StageRun
from tagmill.jobs.sources import source_labels
from tagmill.taxonomy.canonical import Candidate, Evidence, fold_candidates, fold_in_rounds
from tagmill.taxonomy.classes import (DECISION_COLUMNS, ancestors, build_classes, diff_taxonomies,
                                      with_support)
from tagmill.taxonomy.cooccurrence import cooccurrence, cooccurrence_rules, directed
from tagmill.taxonomy.hierarchy import build_hierarchy
from tagmill.taxonomy.stats import accompanied_images, image_tags, rare_drops, tag_of, tag_statistics
from tagmill.taxonomy.synsets import DEFAULT_DOMAIN_ROOTS, is_chinese, map_tags, read_zh_table
from tagmill.taxonomy.tables import SCHEMAS
from tagmill.wordnet import load_wordnet

STAGE = stages.TAXONOMY
CONTEXT_PARTNERS = 5
"""Co-occurring tags per tag that the WordNet disambiguation looks at."""
log = logging.getLogger("tagmill.taxonomy")


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run the taxonomy for cfg.run's date; returns the run summary (also written as summary.json)."""
    stage = StageRun(spark, cfg, STAGE)
    tc, run_date, root = cfg.taxonomy, stage.run_date, stage.root

    def write(df: DataFrame, table: str) -> DataFrame:
        expected = StructType.fromDDL(SCHEMAS[table]).simpleString()
        if df.schema.simpleString() != expected:  # a bug upstream; casting would turn it into nulls
            raise ValueError(f"taxonomy table {table} came out as {df.schema.simpleString()}; taxonomy.tables "
                             f"declares {expected}")
        return stage.write(df, table)

    def write_rows(frame: pd.DataFrame, table: str) -> DataFrame:
        return write(spark.createDataFrame(_rows(frame), SCHEMAS[table]), table)

    labels = source_labels(stage).persist(StorageLevel.MEMORY_AND_DISK)
    stats, by_source, labeled = tag_statistics(labels)
    stats = write(stats, "tag_stats")
    write(by_source, "tag_stats_by_source")
    images = {r["tag"]: int(r["images"]) for r in stats.select("tag", "images").collect()}  # one row per tag
    drops = rare_drops(stats, tc.min_share, tc.min_images).toPandas()
    log.info("taxonomy %s: %d raw tags on %d labeled images, %d rare", run_date, len(images), labeled, len(drops))

    tags, kept_stats = image_tags(labels), stats
    if len(drops):
        rare = spark.createDataFrame(drops[["tag"]])
        tags, kept_stats = tags.join(rare, "tag", "left_anti"), stats.join(rare, "tag", "left_anti")
    tags = tags.persist(StorageLevel.MEMORY_AND_DISK)
    pairs = write(cooccurrence(tags, labeled, max_tags_per_image=tc.max_tags_per_image), "cooccurrence")
    rules = cooccurrence_rules(pairs, kept_stats, isolated_max_conditional=tc.isolated_max_conditional,
                               isolated_min_images=tc.isolated_min_images,
                               merge_min_conditional=tc.merge_min_conditional,
                               child_min_conditional=tc.child_min_conditional,
                               accompanied=accompanied_images(tags) if tc.isolated_max_conditional else None
                               ).toPandas()  # per-tag decisions
    isolated = rules[rules["action"] == "drop"]
    merges = rules[rules["rule"] == "cooccurrence_merge"]
    if not tc.merge_cooccurring:
        rules.loc[rules["rule"] == "cooccurrence_merge", "action"] = "merge_candidate"
        merges = merges.iloc[0:0]
    dropped = _concat([drops, isolated])

    wn = load_wordnet(cfg.text.wordnet_dir)
    roots = tc.domain_roots or DEFAULT_DOMAIN_ROOTS
    kept = sorted(set(images) - set(dropped["tag"]))
    senses = map_tags(kept, wn, context=_context(pairs), domain_roots=roots,
                      zh_table=read_zh_table(tc.zh_table) if tc.zh_table else None)
    if tc.canonicalize:
        kept_images = {t: images[t] for t in kept}
        products, clicked = (df.persist(StorageLevel.MEMORY_AND_DISK) for df in _search_log_products(stage))
        chinese = [t for t in kept if is_chinese(t)]
        candidates = fold_candidates(kept_images, senses, wn,
                                     partners=_clicked_under(spark, products, clicked, chinese, kept))
        folds = fold_in_rounds(candidates, lambda pending, groups: _evidence(
            spark, products, clicked, pairs, pending, groups, kept_images), kept_images, tc)
        log.info("taxonomy %s: %d surface forms folded into their most frequent form (%d linked candidates)",
                 run_date, len(folds), len(candidates))
        products.unpersist()
        clicked.unpersist()
        merges = _concat([merges, folds])
    hierarchy = build_hierarchy({s.synset for s in senses.values() if s.synset}, wn, roots)
    node_names = {s: wn.synset(s).lemma_names()[0].replace("_", " ") for s in hierarchy.parent}
    tag_map, taxonomy, merged = build_classes(images, dropped, merges, senses, hierarchy, node_names,
                                              tc.merge_synonyms)
    tag_map = write_rows(tag_map, "tag_map")
    support = _support(spark, tags, tag_map, taxonomy)
    taxonomy = with_support(taxonomy, support)
    decisions = _concat([dropped, rules[rules["action"] != "drop"], merged])
    write_rows(decisions, "decisions")
    write_rows(taxonomy, "taxonomy")

    previous_date = io.previous_run_date(spark, root, STAGE, run_date)
    previous = (io.read_table(spark, root, STAGE, "taxonomy", previous_date).toPandas()
                if previous_date else None)
    diff = diff_taxonomies(previous, taxonomy)
    write_rows(diff, "diff")

    mapped_tags = tag_map.where(F.col("class_id").isNotNull()).select("tag")
    covered = tags.join(mapped_tags, "tag").select("image_key").distinct().count() if len(dropped) else labeled
    tags.unpersist()
    labels.unpersist()
    tag_status = tag_map.groupBy("status", "reason").count().collect()
    quarantined = {r["reason"]: int(r["count"]) for r in tag_status if r["status"] == "dropped"}
    out = sum(int(r["count"]) for r in tag_status if r["status"] != "dropped")
    io.check_counts("raw tags", len(images), out, quarantined)
    classes = taxonomy[taxonomy["kind"] == "class"]
    summary = stage.finish({
        "tags": {"in": len(images), "out": out, "quarantined": quarantined,
                 "merged": sum(int(r["count"]) for r in tag_status if r["status"] == "merged")},
        "images": labeled,
        "classes": len(classes),
        "nodes": int((taxonomy["kind"] == "node").sum()),
        "domains": {str(k): int(v) for k, v in classes.groupby("domain").size().sort_index().items()},
        "mapped_by": {str(k): int(v) for k, v in pd.Series([s.mapped_by for s in senses.values()])
                      .value_counts().sort_index().items()},
        "coverage": {"before": 1.0 if labeled else 0.0, "after": covered / labeled if labeled else 0.0},
        "merge_candidates": int((rules["rule"] == "cooccurrence_merge").sum()),
        "child_candidates": int((rules["rule"] == "implied_by").sum()),
        "previous_run_date": previous_date.isoformat() if previous_date else None,
        "diff": {str(k): int(v) for k, v in diff.groupby("change").size().items()},
        "config": {"min_share": tc.min_share, "min_images": tc.min_images,
                   "isolated_max_conditional": tc.isolated_max_conditional,
                   "merge_min_conditional": tc.merge_min_conditional, "merge_cooccurring": tc.merge_cooccurring,
                   "child_min_conditional": tc.child_min_conditional, "merge_synonyms": tc.merge_synonyms,
                   "domain_roots": list(roots), "propagate_to_ancestors": tc.propagate_to_ancestors,
                   "canonicalize": tc.canonicalize, "fold_min_conditional": tc.fold_min_conditional,
                   "fold_min_shared": tc.fold_min_shared, "spelling_ratio": tc.spelling_ratio,
                   "fold_strong_conditional": tc.fold_strong_conditional,
                   "fold_strong_shared": tc.fold_strong_shared},
    })
    log.info("taxonomy %s: %d raw tags -> %d classes in %d domains (%d dropped, %d merged)", run_date,
             len(images), summary["classes"], len(summary["domains"]), sum(quarantined.values()),
             summary["tags"]["merged"])
    return summary


def _context(pairs: DataFrame) -> dict[str, list[str]]:
    """Each tag's CONTEXT_PARTNERS most often co-occurring tags (by P(partner | tag)), for disambiguation."""
    both = directed(pairs).select("tag", "partner", F.col("p_partner").alias("p"))
    rank = F.row_number().over(Window.partitionBy("tag").orderBy(F.desc("p"), "partner"))
    top = both.withColumn("rank", rank).where(F.col("rank") <= CONTEXT_PARTNERS)
    context: dict[str, list[str]] = {}
    for r in top.orderBy("tag", "rank").collect():  # at most CONTEXT_PARTNERS rows per tag
        context.setdefault(r["tag"], []).append(r["partner"])
    return context


def _search_log_products(stage: StageRun) -> tuple[DataFrame, DataFrame]:
    """(tag, product_id) of the search log's product labels, and (partner, product_id) of every query shoppers
    clicked a product under: the co-click evidence of taxonomy.canonical."""
    products = stage.read("labels", stages.MINE_LOGS).select(tag_of(F.col("label")).alias("tag"), "product_id")
    clicked = (stage.read("tuples", stages.MINE_LOGS).where(F.col("clicks") > 0)
               .select(F.col("query_norm").alias("partner"), "product_id"))
    return products.distinct(), clicked.distinct()


def _clicked_under(spark: SparkSession, products: DataFrame, clicked: DataFrame, tags: list[str],
                   kept: list[str]) -> dict[str, str]:
    """Each of `tags` -> the kept English tag its products were clicked under most (ties: the smaller tag)."""
    if not tags:
        return {}
    english = [t for t in kept if not is_chinese(t)]
    wanted = spark.createDataFrame([(t,) for t in tags], "tag string")
    allowed = spark.createDataFrame([(t,) for t in english], "partner string")
    counts = (products.join(wanted, "tag").join(clicked, "product_id").join(allowed, "partner")
              .groupBy("tag", "partner").count())
    best = counts.withColumn("rank", F.row_number().over(
        Window.partitionBy("tag").orderBy(F.desc("count"), "partner"))).where(F.col("rank") == 1)
    return {r["tag"]: r["partner"] for r in best.collect()}  # one row per tag of `tags`


def _evidence(spark: SparkSession, products: DataFrame, clicked: DataFrame, pairs: DataFrame,
              candidates: list[Candidate], groups: dict[str, list[str]],
              images: dict[str, int]) -> dict[tuple[str, str], Evidence]:
    """(t, T) -> Evidence for the fold candidates only (a few per tag, never the whole tables): of t's search-log
    products, those clicked under any of T's forms (`groups`: T -> its forms, taxonomy.canonical.fold_in_rounds);
    for a t without search-log products, of its images, those labeled with one form of T (the form that shares
    the most: images labeled with two forms would count twice in a sum)."""
    if not candidates:
        return {}
    rows = [(c.tag, c.into, form) for c in candidates for form in groups.get(c.into, [c.into])]
    wanted = spark.createDataFrame(rows, "tag string, into string, partner string")
    per_product = (wanted.join(products, "tag")
                   .join(clicked.withColumn("hit", F.lit(1)), ["partner", "product_id"], "left")
                   .groupBy("tag", "into", "product_id").agg(F.max("hit").alias("hit"))
                   .groupBy("tag", "into").agg(F.count(F.lit(1)).alias("total"), F.count("hit").alias("shared")))
    found = {(r["tag"], r["into"]): Evidence(int(r["shared"]), int(r["total"]), "products")
             for r in per_product.collect()}
    together = (directed(pairs).join(wanted, ["tag", "partner"]).groupBy("tag", "into")
                .agg(F.max("together").alias("together")))
    for r in together.collect():
        found.setdefault((r["tag"], r["into"]), Evidence(int(r["together"]), images[r["tag"]], "images"))
    return found


def _support(spark: SparkSession, tags: DataFrame, tag_map: DataFrame, taxonomy: pd.DataFrame) -> dict[int, int]:
    """class_id -> images carrying it or, for the classes above, any class below it (Tencent ML-Images)."""
    above = [(k, a) for k, chain in ancestors(taxonomy).items() for a in [k, *chain]]
    lift = spark.createDataFrame(above, "class_id int, counted_id int")
    per_image = (tags.join(tag_map.where(F.col("class_id").isNotNull()).select("tag", "class_id"), "tag")
                 .join(lift, "class_id").select("image_key", "counted_id").distinct())
    return {int(r["counted_id"]): int(r["count"]) for r in per_image.groupBy("counted_id").count().collect()}


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Decision rows of several frames, as one frame (built from records: pandas' concat warns about
    all-null columns)."""
    return pd.DataFrame([row for f in frames for row in f[list(DECISION_COLUMNS)].to_dict("records")],
                        columns=list(DECISION_COLUMNS))


def _rows(frame: pd.DataFrame) -> list[tuple]:
    """Plain Python rows (NaN and pandas NA as None, numpy scalars as Python ones) for createDataFrame."""
    def plain(value):
        if isinstance(value, list | tuple):
            return list(value)
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [tuple(plain(v) for v in row) for row in frame.itertuples(index=False)]
