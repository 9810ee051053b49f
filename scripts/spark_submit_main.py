"""The driver file for `spark-submit`: the `tagmill` command, with tagmill imported from `--py-files`.

    spark-submit --master spark://HOST:7077 --py-files dist/tagmill.zip scripts/spark_submit_main.py \
        build --config my.toml
"""

import sys

import tagmill
from tagmill.jobs.cli import main

if __name__ == "__main__":
    print(f"tagmill {tagmill.__version__} from {tagmill.__file__}", file=sys.stderr)
    sys.exit(main(sys.argv[1:]))
