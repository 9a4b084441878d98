#!/usr/bin/env bash
# The one test command (README and CI): environment, lint, type check, tests.
#
#   bash scripts/test.sh [PYTEST ARGS...]
#
# 1. scripts/setup_env.sh (creates/updates .venv; about a second when the pins are unchanged),
# 2. ruff check . (configuration in pyproject.toml),
# 3. mypy on the packages listed in MYPY_PACKAGES below,
# 4. pytest (extra arguments are passed through, e.g. `tests/server -x -q`).
# Exits non-zero on any failure, and also when pytest ran no test at all (everything skipped or
# deselected): a green run must mean that something was tested. JUnit XML goes to
# build/test-results/junit.xml for CI.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Packages type-checked by mypy. Add yours here when it lands.
MYPY_PACKAGES=(server sam training client/src/sam_client)

bash scripts/setup_env.sh
bash scripts/install_system_deps.sh
# shellcheck disable=SC1091
. .venv/bin/activate

echo "== ruff check" >&2
ruff check .

echo "== mypy ${MYPY_PACKAGES[*]}" >&2
mypy "${MYPY_PACKAGES[@]}"

echo "== pytest" >&2
results="$repo/build/test-results"
mkdir -p "$results"
rm -f "$results/junit.xml"
# `python -m pytest` puts the repository root on sys.path, so tests import the packages as a clean
# clone has them (nothing is pip-installed in editable mode).
python -m pytest --junitxml="$results/junit.xml" "$@"

python - "$results/junit.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
total = sum(int(s.get("tests", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
if total - skipped <= 0:
    sys.exit(f"test.sh: pytest executed no test ({total} collected, {skipped} skipped); refusing to pass")
print(f"test.sh: {total - skipped} tests executed, {skipped} skipped", file=sys.stderr)
PY
