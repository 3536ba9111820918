#!/usr/bin/env bash
# The scheduled-style check: install the NEWEST releases the registry has (no constraints, no upper
# bounds on the mirrored libraries) in a scratch venv, run the suite there and report what breaks.
# It changes nothing in the project; a failure here says which pin to lift next and what to mend.
#   scripts/check_latest.sh [pytest args]     e.g. scripts/check_latest.sh -m "not slow"
set -uo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q -e '.[dev]'
# Lift the upper bounds of the libraries whose behaviour the estimate mirrors.
"$venv/bin/pip" install -q --upgrade peft transformers trl bitsandbytes accelerate datasets
echo "== newest versions"
"$venv/bin/pip" list 2>/dev/null | grep -iE '^(peft|transformers|trl|bitsandbytes|accelerate|datasets) '
echo "== differences from constraints.txt"
"$venv/bin/pip" freeze --exclude-editable | grep -v '^-e' | sort > "$venv/../freeze.txt"
grep -v '^#' constraints.txt | sort | comm -13 - "$venv/../freeze.txt"
echo "== tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
