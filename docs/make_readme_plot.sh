#!/usr/bin/env bash
# Regenerate docs/paired.png (embedded in README.md) from a fresh quickstart run.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$repo/.venv/bin/normstudy" run quickstart --storage "$work/results"
cp "$work/results/quickstart/comparison/paired.png" "$repo/docs/paired.png"
echo "wrote $repo/docs/paired.png"
