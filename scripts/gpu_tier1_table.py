"""Print the tier-1 GPU check's Markdown table (for docs/benchmarks.md) from its JSON.

    python scripts/gpu_tier1_table.py OUT            # the folder, or OUT/tier1.json

Needs no torch: the table and the targets come from the JSON alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tip_ray.gpucheck.report import markdown, targets  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/gpu_tier1_table.py OUT_FOLDER_OR_tier1.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path = path / "tier1.json" if path.is_dir() else path
    if not path.is_file():
        print(f"gpu_tier1_table: error: {path} does not exist (the check writes tier1.json into its --out folder)",
              file=sys.stderr)
        return 2
    result = json.loads(path.read_text())
    result["targets"] = targets(result)
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
