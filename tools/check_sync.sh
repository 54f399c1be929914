#!/usr/bin/env bash
# Fail if nbdev_export, nbdev_clean or the README generator change any file: the library, the notebooks and
# README.md must be exactly what the notebooks produce.
set -euo pipefail
bin=${1:-.venv/bin}
state() { git status --porcelain --untracked-files=all; git diff; }
before=$(state | sha1sum)
"$bin/nbdev_export"
"$bin/nbdev_clean"
"$bin/python" tools/make_readme.py
if [[ "$(state | sha1sum)" != "$before" ]]; then
  echo "Out of sync: nbdev_export / nbdev_clean / tools/make_readme.py changed these files:"
  git status --porcelain --untracked-files=all
  echo "Edit the notebooks (never datacenter_detector/*.py or README.md by hand), run 'make sync', and commit."
  exit 1
fi
echo "in sync: library, notebooks and README match"
