"""tagmill: weakly labeled, deduplicated, validated training sets for marketplace image recognition."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tagmill")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
