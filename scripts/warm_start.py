"""Start a checkpoint for another config from a trained one (`echopulse.generator.training.warm_start`).

Used by `scripts/train_default_model.sh` between the cycle tokenizer's two runs.
Usage: python scripts/warm_start.py SOURCE_DIR CONFIG OUT_DIR   (CONFIG: a config name or JSON file)
"""

from __future__ import annotations

import sys

from echopulse.generator.training.common import resolve_config
from echopulse.generator.training.warm_start import warm_start

if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python scripts/warm_start.py SOURCE_DIR CONFIG OUT_DIR")
    result = warm_start(sys.argv[1], resolve_config(sys.argv[2]), sys.argv[3])
    for part in result.carried:
        print(f"{part}: {len(result.carried[part])} tensors carried over, fresh: "
              f"{', '.join(result.fresh[part]) or 'none'}")
    print(f"wrote {result.out}")
