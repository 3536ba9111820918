#!/usr/bin/env bash
# Regenerate constraints.txt: resolve .[dev] as a fresh machine would (pinned CPU torch), then keep the
# header. Run the whole suite on the result before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp)
pip install --dry-run --ignore-installed --quiet --report "$report" torch==2.13.0 -e '.[dev]'
python3 - "$report" <<'PY'
import json, sys
rows = sorted((p["metadata"]["name"], p["metadata"]["version"].split("+")[0])
              for p in json.load(open(sys.argv[1]))["install"]
              if p["metadata"]["name"].lower() != "llm-finetune-planner")
head = [l for l in open("constraints.txt") if l.startswith("#")]
with open("constraints.txt", "w") as f:
    f.writelines(head)
    f.writelines(f"{n}=={v}\n" for n, v in sorted(rows, key=lambda r: r[0].lower()))
PY
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
