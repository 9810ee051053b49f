"""Pack tagmill for `spark-submit --py-files`: the package as one zip (code, templates, lexnames), no caches.

    python scripts/spark_package.py dist/tagmill.zip

The executors import tagmill from the zip (importlib.resources and Jinja2's PackageLoader read its data
files in place); its dependencies (pyspark, torch, faiss, ...) must be installed where the executors run,
or shipped as a packed environment with `--archives`.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pack(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in (REPO / "tagmill").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(str(path.relative_to(REPO)), date_time=(1980, 1, 1, 0, 0, 0))  # same bytes each time
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(pack(Path(sys.argv[1])))
