#!/usr/bin/env bash
# One-time (and idempotent) set-up from a fresh clone: Java check, WordNet, virtual environment, packages.
# Every `make` target calls this first; a second call costs a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${TAGMILL_VENV:-.venv}
PYTHON=${PYTHON:-python3}
# The CPU build of torch; an unpinned torch would pull gigabytes of CUDA packages.
TORCH_SPEC=${TAGMILL_TORCH:-torch==2.13.0}
WORDNET_DIR=/usr/share/wordnet

say() { printf 'tagmill setup: %s\n' "$*" >&2; }

# 1. Python 3.11+
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11 or newer is required (found: $("$PYTHON" --version 2>&1 || echo none))."
  say "Install it (Debian/Ubuntu: apt-get install python3 python3-venv) or set PYTHON=/path/to/python3.11."
  exit 1
fi

# 2. Java 17+ (Spark 4 runs on it)
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null || [ -z "$(java_major)" ]; then
  say "Java 17 or newer is required by Spark 4 (found: $(java -version 2>&1 | head -n1 || echo none))."
  say "Install it: apt-get install openjdk-17-jre-headless   (or any JDK 17+, then put its bin/ on PATH or set JAVA_HOME)."
  exit 1
fi

# 3. WordNet 3.0 database, offline, from Debian's packages
if [ ! -f "$WORDNET_DIR/data.noun" ] || [ ! -f "$WORDNET_DIR/index.sense" ]; then
  packages="wordnet-base wordnet-sense-index"
  if [ "$(id -u)" = 0 ]; then
    say "installing WordNet: apt-get install $packages"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages) >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing WordNet: sudo apt-get install $packages"
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages) >/dev/null
  else
    say "WordNet 3.0 is missing from $WORDNET_DIR. Install it: sudo apt-get install $packages"
    exit 1
  fi
fi

# 4. Virtual environment and packages (re-installed only when pyproject.toml changes)
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.tagmill-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_SPEC"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
