#!/usr/bin/env bash
# Quick start 1: set everything up, then run the main job on the bundled sample ECG.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/echopulse demo --out out/demo
