"""Spark job entrypoints (the only code that creates a SparkSession), the pipeline and the CLI."""
