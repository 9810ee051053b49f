"""Assemble: image labels of every source -> a class index and one sample per image, split by product.

Each label keeps its provenance (source, tier, evidence counts) and confidence, so a trainer or an analyst
can weigh or filter them later. Teacher tags (image pass) and the taxonomy mapping join here as further
sources when those stages exist; today the source is the search log (MSURU 3.2).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tagmill.config import SPLITS

SEARCH_LOG = "search_log"

_HASH_RANGE = 1 << 30


def class_index(image_labels: DataFrame) -> DataFrame:
    """One class per distinct label: class_id (0..n-1 in label order, so ids are stable for equal
    inputs), name, path (ancestor names from the top down; empty until a taxonomy supplies them).

    Needs `label`. Numbered with zipWithIndex over the sorted names: distributed, no single-partition window."""
    names = image_labels.select(F.col("label").alias("name")).distinct().orderBy("name")
    numbered = names.rdd.zipWithIndex().map(lambda pair: (pair[1], pair[0][0]))
    return names.sparkSession.createDataFrame(numbered, "class_id long, name string").select(
        F.col("class_id").cast("int"), "name", F.array().cast("array<string>").alias("path"))


def split_column(key: Column, ratios: dict[str, float], seed: int) -> Column:
    """train / validation / test from a stable hash of `key`: the same key lands in the same split on any
    machine and in any run with the same seed, and all rows of one key stay together."""
    uniform = F.abs(F.xxhash64(F.lit(seed), F.lit("split"), key) % F.lit(_HASH_RANGE)) / F.lit(float(_HASH_RANGE))
    train, validation = ratios["train"], ratios["train"] + ratios["validation"]
    return F.when(uniform < train, SPLITS[0]).when(uniform < validation, SPLITS[1]).otherwise(SPLITS[2])


def assemble_samples(image_labels: DataFrame, images: DataFrame, repeats: DataFrame, classes: DataFrame,
                     ratios: dict[str, float], seed: int) -> DataFrame:
    """One sample per image.

    Needs image_labels (image_key, image_path, product_id, label, tier, clicks, contacts, in_conversations,
    sessions, confidence), images (image_key, product_id, title), repeats (image_key, repeats) and the class
    index. Returns image_key, product_id, image_path, title, class_ids (sorted), labels (array of structs
    sorted by class_id: class_id, name, confidence, source, tier, clicks, contacts, in_conversations,
    sessions), repeats, split.

    An image listed by two products (a re-used path) is one sample: it belongs to the product with the
    smallest id, whose split and title it takes, and carries the labels of both (the strongest evidence
    of each class).
    """
    label = F.struct(
        F.col("class_id"), F.col("name"), F.col("confidence"), F.lit(SEARCH_LOG).alias("source"),
        F.col("tier"), F.col("clicks"), F.col("contacts"), F.col("in_conversations"), F.col("sessions"))
    per_class = (image_labels.join(classes.select("class_id", F.col("name").alias("label"), "name"), "label")
                 .groupBy("image_key", "class_id")
                 # max over structs compares confidence first: the strongest evidence of a class wins
                 .agg(F.max(F.struct("confidence", label.alias("label"))).getField("label").alias("label")))
    labels = per_class.groupBy("image_key").agg(F.array_sort(F.collect_list("label")).alias("labels"))
    owner = (images.groupBy("image_key")
             .agg(F.min(F.struct("product_id", "title")).alias("owner")))
    paths = image_labels.groupBy("image_key").agg(F.min("image_path").alias("image_path"))
    return (labels.join(owner, "image_key").join(paths, "image_key").join(repeats.select("image_key", "repeats"),
                                                                          "image_key")
            .select(
                "image_key",
                F.col("owner.product_id").alias("product_id"),
                "image_path",
                F.col("owner.title").alias("title"),
                F.transform("labels", lambda x: x["class_id"]).alias("class_ids"),
                "labels",
                F.col("repeats").cast("int").alias("repeats"),
                split_column(F.col("owner.product_id"), ratios, seed).alias("split"),
            ))


def class_support(samples: DataFrame, classes: DataFrame) -> DataFrame:
    """The class index with its support per split: class_id, name, path, support_train, support_validation,
    support_test (images carrying the class, repeats not counted)."""
    counts = (samples.select("split", F.explode("class_ids").alias("class_id"))
              .groupBy("class_id").pivot("split", list(SPLITS)).count())
    return classes.join(counts, "class_id", "left").select(
        "class_id", "name", "path",
        *[F.coalesce(F.col(s), F.lit(0)).cast("long").alias(f"support_{s}") for s in SPLITS])
