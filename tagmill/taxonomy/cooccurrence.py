"""Tag x tag co-occurrence over images, and the pruning and merge rules read from it (58.com: "remove
low-co-occurrence tags via a co-occurrence matrix").

The matrix stays distributed and sparse: one row per pair of tags seen together on at least one image, never
a list of pairs on the driver. Each image contributes its sorted tag list once; its pairs are generated
inside the JVM (a higher-order array expression) and counted with one aggregation, which is the self-join on
image_key with tag_a < tag_b without shuffling the join's output twice.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tagmill.taxonomy.tables import columns

DEFAULT_MAX_TAGS_PER_IMAGE = 64

_PAIRS = ("flatten(transform(sequence(1, size(tags) - 1), i -> transform(slice(tags, i + 1, size(tags) - i), "
          "b -> named_struct('tag_a', tags[i - 1], 'tag_b', b))))")
"""Every (tags[i], tags[j]) with i < j of a sorted, distinct array of >= 2 tags: k(k-1)/2 pairs, tag_a < tag_b."""


def _tags_per_image(image_tags: DataFrame) -> DataFrame:
    return image_tags.groupBy("image_key").agg(F.array_sort(F.collect_set("tag")).alias("tags"))


def crowded_images(image_tags: DataFrame, max_tags_per_image: int = DEFAULT_MAX_TAGS_PER_IMAGE) -> DataFrame:
    """The images cooccurrence leaves out: image_key, tags (their distinct tags, sorted), those with more
    than max_tags_per_image tags. Count it for the run summary; it is lazy like everything here."""
    return _tags_per_image(image_tags).where(F.size("tags") > max_tags_per_image)


def cooccurrence(image_tags: DataFrame, labeled_images: int,
                 max_tags_per_image: int = DEFAULT_MAX_TAGS_PER_IMAGE) -> DataFrame:
    """The co-occurrence table (taxonomy.tables), one row per pair of tags seen together on >= 1 image.

    image_tags: image_key, tag (stats.image_tags, usually filtered to the kept tags); labeled_images: N, the
    images the counts are a share of (stats.tag_statistics' third value).
    Returns tag_a, tag_b (tag_a < tag_b, no self pairs), images_ab, images_a, images_b, p_a_given_b
    (images_ab / images_b), p_b_given_a (images_ab / images_a), pmi (ln(images_ab * N / (images_a *
    images_b))), jaccard (images_ab / (images_a + images_b - images_ab)).

    An image with more than max_tags_per_image distinct tags would add k(k-1)/2 pairs (2,016 at 64, 500,000
    at 1,000) and the aggregation would grow quadratically with one bad image; such images are nearly always a
    stock photo or banner reused across unrelated listings, whose tags say nothing about each other. They are
    skipped whole (see crowded_images to count them), and left out of images_a, images_b and N too, so every
    number in a row is over the same images: the result equals X^T X of the binary image x tag matrix of the
    images kept. Lazy: nothing runs until the caller writes or counts it.
    """
    if max_tags_per_image < 2:
        raise ValueError(f"cooccurrence: max_tags_per_image must be >= 2 (one pair), got {max_tags_per_image}")
    per_image = _tags_per_image(image_tags)
    kept = per_image.where(F.size("tags") <= max_tags_per_image)
    per_tag = (kept.select(F.explode("tags").alias("tag")).groupBy("tag").agg(F.count(F.lit(1)).alias("images")))
    crowded = per_image.agg(F.count(F.when(F.size("tags") > max_tags_per_image, True)).alias("crowded"))
    together = (kept.where(F.size("tags") >= 2).select(F.explode(F.expr(_PAIRS)).alias("pair"))
                .groupBy(F.col("pair.tag_a").alias("tag_a"), F.col("pair.tag_b").alias("tag_b"))
                .agg(F.count(F.lit(1)).alias("images_ab")))
    ab, a, b = (F.col(c).cast("double") for c in ("images_ab", "images_a", "images_b"))
    n = F.lit(float(labeled_images)) - F.col("crowded").cast("double")
    return (together
            .join(per_tag.select(F.col("tag").alias("tag_a"), F.col("images").alias("images_a")), "tag_a")
            .join(per_tag.select(F.col("tag").alias("tag_b"), F.col("images").alias("images_b")), "tag_b")
            .crossJoin(crowded)  # one row: N less the skipped images, without a Spark job here
            .select("tag_a", "tag_b", "images_ab", "images_a", "images_b",
                    (ab / b).alias("p_a_given_b"), (ab / a).alias("p_b_given_a"),
                    F.log(ab * n / (a * b)).alias("pmi"), (ab / (a + b - ab)).alias("jaccard")))


def _fmt(value: Column, digits: int = 3) -> Column:
    return F.format_number(value, digits)


def cooccurrence_rules(pairs: DataFrame, tag_stats: DataFrame, *, isolated_max_conditional: float,
                       isolated_min_images: int, merge_min_conditional: float, child_min_conditional: float,
                       accompanied: DataFrame | None = None) -> DataFrame:
    """Pruning and merge candidates from the co-occurrence table: rows of the decisions table (taxonomy.tables).

    pairs: the cooccurrence table; tag_stats: tag, images for the tags the pairs were computed on (kept tags);
    accompanied: stats.accompanied_images over the same image_tags, optional (see "isolated").
      "isolated" (drop): a tag with >= isolated_min_images images whose strongest partner is weak, max over
        partners of P(partner|tag) < isolated_max_conditional: it co-occurs with nothing consistently (58.com's
        low-co-occurrence pruning). value = that max, detail names the partner. A tag with no partner at all
        counts as max 0 only when it appears on images that carry other tags (accompanied_images > 0): a tag
        that is always alone on its images is not noise by this rule (a search-log label set is often one
        query per image). Without `accompanied` such tags are taken to be alone, because every image that
        carries a tag with another one puts a pair in `pairs`. 0 turns the rule off.
      "cooccurrence_merge" (merge): P(a|b) >= merge_min_conditional and P(b|a) >= merge_min_conditional; tag =
        the one with fewer images (ties: the larger name), other = the one it merges into, value = the smaller
        conditional. A tag can be a candidate with several others; resolving chains is the caller's.
      "implied_by" (child): P(parent|child) >= child_min_conditional while P(child|parent) <
        merge_min_conditional; tag = child, other = parent, value = P(parent|child). A tag can have several
        parents (leather sofa: sofa, furniture); the caller picks.
    Content is deterministic; row order is not.
    """
    for name, value in (("isolated_max_conditional", isolated_max_conditional),
                        ("merge_min_conditional", merge_min_conditional),
                        ("child_min_conditional", child_min_conditional)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"cooccurrence_rules: {name} is a probability in [0, 1], got {value}")
    decisions = [_merges(pairs, merge_min_conditional), _children(pairs, child_min_conditional,
                                                                  merge_min_conditional)]
    if isolated_max_conditional > 0:
        decisions.append(_isolated(pairs, tag_stats, accompanied, isolated_max_conditional, isolated_min_images))
    out = decisions[0]
    for more in decisions[1:]:
        out = out.unionByName(more)
    return out


def _merges(pairs: DataFrame, threshold: float) -> DataFrame:
    a_smaller = F.col("images_a") < F.col("images_b")  # ties: tag_b (the larger name) merges into tag_a
    tag = F.when(a_smaller, F.col("tag_a")).otherwise(F.col("tag_b"))
    other = F.when(a_smaller, F.col("tag_b")).otherwise(F.col("tag_a"))
    p_other = F.when(a_smaller, F.col("p_b_given_a")).otherwise(F.col("p_a_given_b"))  # P(other | tag)
    p_tag = F.when(a_smaller, F.col("p_a_given_b")).otherwise(F.col("p_b_given_a"))  # P(tag | other)
    return (pairs.where((F.col("p_a_given_b") >= threshold) & (F.col("p_b_given_a") >= threshold))
            .select(tag.alias("tag"), F.lit("merge").alias("action"), F.lit("cooccurrence_merge").alias("rule"),
                    other.alias("other"), F.least("p_a_given_b", "p_b_given_a").alias("value"),
                    F.lit(float(threshold)).alias("threshold"),
                    F.concat(F.lit("together on "), _fmt(F.col("images_ab"), 0), F.lit(" images: P("), other,
                             F.lit("|"), tag, F.lit(") = "), _fmt(p_other), F.lit(", P("), tag, F.lit("|"), other,
                             F.lit(") = "), _fmt(p_tag), F.lit(f", both >= {threshold:g}")).alias("detail")))


def directed(pairs: DataFrame) -> DataFrame:
    """Both directions of each pair: tag, partner, together, images (the tag's), partner_images, p_partner
    (P(partner|tag)), p_tag (P(tag|partner))."""
    forward = pairs.select(F.col("tag_a").alias("tag"), F.col("tag_b").alias("partner"),
                           F.col("images_ab").alias("together"), F.col("images_a").alias("images"),
                           F.col("images_b").alias("partner_images"), F.col("p_b_given_a").alias("p_partner"),
                           F.col("p_a_given_b").alias("p_tag"))
    backward = pairs.select(F.col("tag_b").alias("tag"), F.col("tag_a").alias("partner"),
                            F.col("images_ab").alias("together"), F.col("images_b").alias("images"),
                            F.col("images_a").alias("partner_images"), F.col("p_a_given_b").alias("p_partner"),
                            F.col("p_b_given_a").alias("p_tag"))
    return forward.unionByName(backward)


def _children(pairs: DataFrame, child_min: float, merge_min: float) -> DataFrame:
    return (directed(pairs).where((F.col("p_partner") >= child_min) & (F.col("p_tag") < merge_min))
            .select("tag", F.lit("child").alias("action"), F.lit("implied_by").alias("rule"),
                    F.col("partner").alias("other"), F.col("p_partner").alias("value"),
                    F.lit(float(child_min)).alias("threshold"),
                    F.concat(F.lit("with "), F.col("partner"), F.lit(" on "), _fmt(F.col("together"), 0),
                             F.lit(" of its "), _fmt(F.col("images"), 0), F.lit(" images (P = "),
                             _fmt(F.col("p_partner")), F.lit(f" >= {child_min:g}); "), F.col("partner"),
                             F.lit(" with it on "), _fmt(F.col("together"), 0), F.lit(" of "),
                             _fmt(F.col("partner_images"), 0), F.lit(" (P = "), _fmt(F.col("p_tag")),
                             F.lit(f" < {merge_min:g})")).alias("detail")))


def _isolated(pairs: DataFrame, tag_stats: DataFrame, accompanied: DataFrame | None, threshold: float,
              min_images: int) -> DataFrame:
    # max over structs compares P first, then the partner's name: the strongest partner, ties deterministic
    strongest = (directed(pairs).groupBy("tag")
                 .agg(F.max(F.struct("p_partner", "partner")).alias("best"))
                 .select("tag", F.col("best.p_partner").alias("best_p"), F.col("best.partner").alias("partner")))
    candidates = tag_stats.select("tag", "images").where(F.col("images") >= min_images).join(
        strongest, "tag", "left")
    if accompanied is None:
        candidates = candidates.withColumn("accompanied_images", F.lit(0))
    else:
        candidates = candidates.join(accompanied.select("tag", "accompanied_images"), "tag", "left")
    alone = F.col("partner").isNull() & (F.coalesce(F.col("accompanied_images"), F.lit(0)) == 0)
    best = F.coalesce(F.col("best_p"), F.lit(0.0))
    images = _fmt(F.col("images"), 0)
    return (candidates.where(~alone & (best < threshold))
            .select("tag", F.lit("drop").alias("action"), F.lit("isolated").alias("rule"),
                    F.lit(None).cast("string").alias("other"), best.alias("value"),
                    F.lit(float(threshold)).alias("threshold"),
                    F.when(F.col("partner").isNull(),
                           F.concat(F.lit("no partner among the kept tags on its "), images, F.lit(" images, "),
                                    _fmt(F.col("accompanied_images"), 0),
                                    F.lit(f" of which carry other tags (max P = 0 < {threshold:g})")))
                    .otherwise(F.concat(F.lit("strongest partner "), F.col("partner"), F.lit(": P("),
                                        F.col("partner"), F.lit("|"), F.col("tag"), F.lit(") = "), _fmt(best),
                                        F.lit(f" < {threshold:g} over its "), images, F.lit(" images")))
                    .alias("detail"))
            .select(*columns("decisions")))
