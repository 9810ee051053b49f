"""tagmill's expectation suites: which table must meet which rules before a dataset is published.

Each function takes the tables of one stage and returns `TableSuite`s for `tagmill.dataset.gate.run_gate`.
Rules GX can check on a plain column use native expectations. Rules that need a join or an array (class ids
inside the class index, confidences inside the labels array, a product in one split) are first turned into
plain columns of a derived frame, computed once, when the gate caches the frame it validates:

    unknown_class_ids      int     the row's class ids that are not in the class index
    class_ids_consistent   boolean class_ids are sorted, distinct and the class ids of `labels`
    min_confidence         double  smallest label confidence (null when the row has no labels)
    max_confidence         double  largest label confidence (null when the row has no labels)
    product_splits         int     distinct splits among the samples of the row's product
    cluster_canonicals     int     (image-pass images) canonical images in the row's duplicate cluster
    class_id_in_range      boolean (classes) 0 <= class_id < number of classes

Every expectation carries a description: the Data Docs show it in place of GX's generic sentence, and the
gate's error message repeats it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from tagmill.config import SPLITS, TIERS
from tagmill.dataset.gate import TableSuite, load_gx

IMAGE_KEY_PATTERN = r"^[0-9a-f]{20}$"
"""An image key: 20 lowercase hex digits (the shard member name, see the dataset layout)."""


def mined_suites(tuples: DataFrame, image_labels: DataFrame, summary: dict) -> list[TableSuite]:
    """Suites for mine-logs' outputs.

    tuples needs query_norm, product_id, clicks, contacts, in_conversations, sessions; image_labels needs
    label, product_id, image_path, image_key, tier, clicks, contacts, in_conversations, confidence.
    summary is mine-logs' run summary: summary["tuples"] is the tuples row count and
    summary["labels"]["image_label_pairs"] the image_labels row count.
    """
    gxe = load_gx().expectations
    tuple_rules = (
        gxe.ExpectTableRowCountToEqual(
            value=int(summary["tuples"]), description="as many tuples as the mine-logs summary counted"),
        *_not_null(gxe, "query_norm", "product_id", "clicks", "contacts", "in_conversations", "sessions"),
        *_tiers_nested(gxe),
    )
    label_rules = (
        gxe.ExpectTableRowCountToEqual(
            value=int(summary["labels"]["image_label_pairs"]),
            description="as many image labels as the mine-logs summary's image_label_pairs"),
        *_not_null(gxe, "label", "product_id", "image_key", "image_path", "confidence"),
        gxe.ExpectColumnValuesToMatchRegex(
            column="image_key", regex=IMAGE_KEY_PATTERN, description="image_key is 20 lowercase hex digits"),
        gxe.ExpectColumnValuesToBeBetween(
            column="confidence", min_value=0, max_value=1, description="confidence is in [0, 1]"),
        gxe.ExpectColumnValuesToBeInSet(
            column="tier", value_set=list(TIERS), description=f"tier is one of {', '.join(TIERS)}"),
        *_tiers_nested(gxe),
    )
    return [
        TableSuite("mine-logs.tuples", tuples, tuple_rules, ("query_norm", "product_id")),
        TableSuite("mine-logs.image_labels", image_labels, label_rules, ("image_key", "label", "product_id")),
    ]


def image_pass_suites(teacher_tags: DataFrame, images: DataFrame, summary: dict) -> list[TableSuite]:
    """Suites for the image pass's outputs.

    teacher_tags needs image_key, mid, name, score, teacher_id, teacher_version; images needs image_key,
    image_path, content_hash, cluster, canonical. summary is the image pass's run summary (its tag and
    usable image counts)."""
    gxe = load_gx().expectations
    tag_rules = (
        gxe.ExpectTableRowCountToEqual(
            value=int(summary["tags"]["tags"]), description="as many teacher tags as the image-pass summary counted"),
        *_not_null(gxe, "image_key", "mid", "name", "score", "teacher_id", "teacher_version"),
        gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1,
                                          description="a teacher score is in [0, 1]"),
    )
    image_rules = (
        gxe.ExpectTableRowCountToEqual(
            value=int(summary["images"]["out"]), description="as many images as the image-pass summary's usable ones"),
        *_not_null(gxe, "image_key", "image_path", "content_hash", "cluster", "canonical"),
        gxe.ExpectColumnValuesToBeUnique(column="image_key", description="image_key is unique: one cluster per image"),
        gxe.ExpectColumnValuesToMatchRegex(column="content_hash", regex=r"^[0-9a-f]{64}$",
                                           description="content_hash is a sha256 hex digest"),
        gxe.ExpectColumnValuesToBeInSet(
            column="cluster_canonicals", value_set=[1],
            description="cluster_canonicals = 1: each duplicate cluster keeps exactly one canonical image"),
    )
    canonicals = F.sum(F.col("canonical").cast("int")).over(Window.partitionBy("cluster"))
    return [
        TableSuite("image-pass.teacher_tags", teacher_tags, tag_rules, ("image_key", "mid")),
        TableSuite("image-pass.images", images.select("*", canonicals.alias("cluster_canonicals")), image_rules,
                   ("image_key", "image_path", "cluster")),
    ]


def sample_suites(samples: DataFrame, classes: DataFrame, expected_samples: int) -> list[TableSuite]:
    """Suites for assemble's outputs.

    samples needs image_key, product_id, image_path, class_ids, labels (array of structs with class_id and
    confidence), repeats and split; classes needs class_id, name, support_train, support_validation and
    support_test. expected_samples is the samples row count of assemble's run summary. The derived frames
    are lazy; the gate caches them while it runs.
    """
    gxe = load_gx().expectations
    sample_rules = (
        gxe.ExpectTableRowCountToEqual(
            value=int(expected_samples), description="as many samples as the assemble summary counted"),
        *_not_null(gxe, "image_key", "product_id", "image_path", "split", "repeats"),
        gxe.ExpectColumnValuesToMatchRegex(
            column="image_key", regex=IMAGE_KEY_PATTERN, description="image_key is 20 lowercase hex digits"),
        gxe.ExpectColumnValuesToBeUnique(
            column="image_key", description="image_key is unique: one sample per image, so no image in two splits"),
        gxe.ExpectColumnValuesToBeInSet(
            column="split", value_set=list(SPLITS), description=f"split is one of {', '.join(SPLITS)}"),
        gxe.ExpectColumnValuesToBeInSet(
            column="product_splits", value_set=[1],
            description="product_splits = 1: all images of a product are in one split (the split is by product)"),
        gxe.ExpectColumnValuesToBeBetween(column="repeats", min_value=1, description="repeats >= 1"),
        gxe.ExpectColumnValuesToBeInSet(
            column="unknown_class_ids", value_set=[0],
            description="unknown_class_ids = 0: every class id is in the class index"),
        gxe.ExpectColumnValuesToBeInSet(
            column="class_ids_consistent", value_set=[True],
            description="class_ids are sorted, distinct and the class ids of the labels"),
        gxe.ExpectColumnValuesToBeBetween(
            column="min_confidence", min_value=0,
            description="min_confidence is at least 0: no label confidence below 0"),
        gxe.ExpectColumnValuesToBeBetween(
            column="max_confidence", max_value=1,
            description="max_confidence is at most 1: no label confidence above 1 (nor NaN)"),
    )
    class_rules = (
        *_not_null(gxe, "class_id", "name"),
        gxe.ExpectColumnValuesToBeUnique(column="class_id", description="class_id is unique"),
        gxe.ExpectColumnValuesToBeUnique(column="name", description="name is unique: one class per label"),
        # n unique ids in 0..n-1 are exactly 0..n-1.
        gxe.ExpectColumnValuesToBeInSet(
            column="class_id_in_range", value_set=[True],
            description="class_id_in_range: class_id is in 0..n-1 (n = classes in the index)"),
        *[gxe.ExpectColumnValuesToBeBetween(column=f"support_{s}", min_value=0, description=f"support_{s} >= 0")
          for s in SPLITS],
    )
    return [
        TableSuite("assemble.samples", checked_samples(samples, classes), sample_rules, ("image_key", "product_id")),
        TableSuite("assemble.classes", checked_classes(classes), class_rules, ("class_id", "name")),
    ]


def checked_samples(samples: DataFrame, classes: DataFrame) -> DataFrame:
    """The samples columns the suite checks plus unknown_class_ids, class_ids_consistent, min_confidence,
    max_confidence and product_splits (see the module docstring). The class index travels as one broadcast
    row of known ids, so the samples are not shuffled for it; product_splits needs one shuffle by product."""
    known = F.broadcast(classes.agg(F.collect_set("class_id").alias("_known")))
    label_ids = F.array_sort(F.array_distinct(F.transform("labels", lambda label: label["class_id"])))
    confidences = F.transform("labels", lambda label: label["confidence"])
    return samples.crossJoin(known).select(
        "image_key", "product_id", "image_path", "split", "repeats",
        F.size(F.filter("class_ids", lambda c: ~F.array_contains("_known", c))).alias("unknown_class_ids"),
        F.coalesce(F.col("class_ids") == label_ids, F.lit(False)).alias("class_ids_consistent"),
        F.array_min(confidences).alias("min_confidence"),
        F.array_max(confidences).alias("max_confidence"),
        F.size(F.collect_set("split").over(Window.partitionBy("product_id"))).alias("product_splits"),
    )


def checked_classes(classes: DataFrame) -> DataFrame:
    """The class index plus class_id_in_range (0 <= class_id < rows of the index)."""
    count = F.broadcast(classes.agg(F.count(F.lit(1)).alias("_n")))
    return classes.crossJoin(count).select(
        "class_id", "name", *[f"support_{s}" for s in SPLITS],
        ((F.col("class_id") >= 0) & (F.col("class_id") < F.col("_n"))).alias("class_id_in_range"))


def _not_null(gxe, *columns: str) -> list:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c, description=f"{c} is never null") for c in columns]


def _tiers_nested(gxe) -> list:
    """clicks >= contacts >= in_conversations >= 0: a stronger tier implies the weaker ones."""
    return [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="clicks", column_B="contacts", or_equal=True, description="clicks >= contacts (tiers nest)"),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="contacts", column_B="in_conversations", or_equal=True,
            description="contacts >= in_conversations (tiers nest)"),
        gxe.ExpectColumnValuesToBeBetween(
            column="in_conversations", min_value=0, description="in_conversations >= 0"),
    ]
