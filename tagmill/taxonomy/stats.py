"""Tag statistics over both label sources, and the rare-tag filter (58.com: rare tags below 0.05% of images).

A tag is a label as both sources spell it once case and spacing are folded (`tag_of`): the search log's
normalized query "mobile phone" and the teacher's display name "Mobile phone" are one tag. Counts are of
distinct images and distinct products, never of label rows, so an image listed by two products, or tagged by
both sources, counts once.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tagmill.labeling.sources import SEARCH_LOG, SELLER_CATEGORY, TEACHER


def tag_of(label: Column) -> Column:
    """The tag of a raw label: lower case, trimmed, inner whitespace collapsed to one space; null when empty.
    Search-log labels are already normalized queries (labeling.text.normalize_query), so this only folds the
    teacher's display names ("Mobile phone") onto them. Use it wherever labels are joined back to tags."""
    tag = F.trim(F.regexp_replace(F.lower(label), r"\s+", " "))
    return F.when(tag != "", tag)


def image_tags(labels: DataFrame) -> DataFrame:
    """Which tags each image carries. labels: LABEL_COLUMNS rows (needs image_key, label) -> image_key, tag,
    distinct pairs; labels whose tag is empty are left out."""
    return (labels.select("image_key", tag_of(F.col("label")).alias("tag"))
            .where(F.col("tag").isNotNull() & F.col("image_key").isNotNull()).distinct())


def tag_statistics(labels: DataFrame) -> tuple[DataFrame, DataFrame, int]:
    """Images and products per tag, overall and per source and tier.

    labels: LABEL_COLUMNS rows (needs image_key, product_id, label, source, tier).
    Returns (tag_stats, tag_stats_by_source, labeled_images):
      tag_stats: tag, images, products, share (images / labeled_images), search_log_images, teacher_images;
      tag_stats_by_source: tag, source, tier (null for the teacher), images, products;
      labeled_images: distinct images with at least one tag (the one Spark job this function runs; the tables
      are lazy). share is the 58.com frequency the rare filter reads.
    """
    tagged = (labels.select("image_key", "product_id", "source", "tier", tag_of(F.col("label")).alias("tag"))
              .where(F.col("tag").isNotNull() & F.col("image_key").isNotNull()))
    labeled_images = tagged.select("image_key").distinct().count()

    def images_from(source: str) -> Column:
        return F.count_distinct(F.when(F.col("source") == source, F.col("image_key")))

    stats = (tagged.groupBy("tag")
             .agg(F.count_distinct("image_key").alias("images"), F.count_distinct("product_id").alias("products"),
                  images_from(SEARCH_LOG).alias("search_log_images"), images_from(TEACHER).alias("teacher_images"),
                  images_from(SELLER_CATEGORY).alias("seller_category_images"))
             .select("tag", "images", "products",
                     (F.col("images") / F.lit(float(max(labeled_images, 1)))).alias("share"),
                     "search_log_images", "teacher_images", "seller_category_images"))
    by_source = (tagged.groupBy("tag", "source", "tier")
                 .agg(F.count_distinct("image_key").alias("images"),
                      F.count_distinct("product_id").alias("products")))
    return stats, by_source, labeled_images


def rare_drops(tag_stats: DataFrame, min_share: float, min_images: int) -> DataFrame:
    """Rows of the decisions table (taxonomy.tables), action "drop", for the tags too rare to learn.

    tag_stats: tag, images, share (as tag_statistics makes it). A tag is dropped by rule "rare_share" when
    share < min_share (58.com: below 0.05% of the images), else by "rare_images" when images < min_images (an
    absolute floor for small runs, where 0.05% is a handful of images). value is the measured share or image
    count, threshold the configured one; detail says both with the number of labeled images, e.g.
    "12 images = 0.008% of 150,000 labeled images < 0.05%". min_share 0 or min_images 0 turns that rule off.
    """
    if min_share < 0 or min_images < 0:
        raise ValueError(f"rare_drops: min_share and min_images must be >= 0, got {min_share} and {min_images}")
    images, share = F.col("images"), F.col("share")
    # the labeled images, recovered from one row (images / share is N up to rounding; images > 0 always)
    labeled = F.format_number(F.round(images / share), 0)
    percent = share * 100
    shown = F.when(percent >= 0.001, F.format_number(percent, 3)).otherwise(F.format_number(percent, 6))
    count = F.concat(F.format_number(images, 0), F.when(images == 1, " image").otherwise(" images"))
    by_share = share < F.lit(float(min_share))
    return (tag_stats.where(by_share | (images < F.lit(min_images)))
            .select("tag", F.lit("drop").alias("action"),
                    F.when(by_share, "rare_share").otherwise("rare_images").alias("rule"),
                    F.lit(None).cast("string").alias("other"),
                    F.when(by_share, share).otherwise(images.cast("double")).alias("value"),
                    F.when(by_share, F.lit(float(min_share))).otherwise(F.lit(float(min_images))).alias("threshold"),
                    F.when(by_share, F.concat(count, F.lit(" = "), shown, F.lit("% of "), labeled,
                                              F.lit(f" labeled images < {min_share * 100:.6g}%")))
                    .otherwise(F.concat(count, F.lit(f" < {min_images:,} images (= "), shown, F.lit("% of "),
                                        labeled, F.lit(" labeled images)"))).alias("detail")))


def accompanied_images(image_tags: DataFrame) -> DataFrame:
    """Per tag, how many of its images carry at least one other tag: image_tags (image_key, tag) -> tag,
    accompanied_images (tags that are always alone have 0). cooccurrence_rules reads it to tell a tag that
    co-occurs with nothing (noise) from one that is simply alone on its images (a search-log label set is
    often one query per image)."""
    per_image = image_tags.groupBy("image_key").agg(F.count("tag").alias("tags_on_image"))
    return (image_tags.join(per_image, "image_key").groupBy("tag")
            .agg(F.count(F.when(F.col("tags_on_image") > 1, True)).alias("accompanied_images")))
