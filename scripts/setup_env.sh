#!/usr/bin/env bash
# Create or update the project's virtual environment at <repo>/.venv.
#
# Idempotent: creates the venv with Python 3.11 when it is missing, installs the exact pins of
# requirements.txt and requirements-dev.txt, checks them with `pip check`, then writes a stamp (the
# sha256 of both requirement files). A later run whose requirement files hash to the same stamp
# returns at once. Needs nothing but a python3.11 (or a python3 that is 3.11) and pip's access to
# its index; torch==2.13.0 is the CPU build (pip's find-links/index settings decide where it comes
# from) and must never be loosened: any other spec pulls a multi-GB CUDA build.
#
# Environment:
#   SAM_PYTHON  interpreter used to create the venv (default: python3.11, else python3 if it is 3.11)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
stamp="$venv/.requirements.sha256"
requirements=("$repo/requirements.txt" "$repo/requirements-dev.txt")

# pyproject.toml is hashed too: the project itself is installed (editable) so that Triton's Python
# backend stub, which ignores PYTHONPATH, can import sam.export.triton_python_backend.
# The gateway image's exact pins constrain the test environment too, so that what the tests run is
# what the image installs (a dependency nobody pins, such as packaging, would otherwise float to
# PyPI's newest release). pip constraints take no extras: they are stripped.
gateway_pins="$repo/requirements-gateway.txt"
want=$(cat "${requirements[@]}" "$gateway_pins" "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)

venv_ok() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}

if venv_ok && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

find_python() {
  local candidate
  for candidate in "${SAM_PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# Two runs at once (a developer and a test run) must not install into the same venv together.
mkdir -p "$repo/build"
exec 9>"$repo/build/setup_env.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
# The other run may have finished the work while this one waited for the lock.
if venv_ok && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! venv_ok; then
  if ! python=$(find_python); then
    echo "setup_env: no Python 3.11 found; install python3.11 or set SAM_PYTHON to a 3.11 interpreter" >&2
    exit 1
  fi
  echo "setup_env: creating $venv with $python ($("$python" --version 2>&1))" >&2
  # --clear: a venv left half-made (or made by another Python) is replaced, not patched.
  "$python" -m venv --clear "$venv"
fi

echo "setup_env: installing pinned requirements into $venv" >&2
rm -f "$stamp"
constraints="$repo/build/constraints-gateway.txt"
sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$gateway_pins" | grep '==' >"$constraints"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$repo/requirements.txt" -r "$repo/requirements-dev.txt" -c "$constraints"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$repo"
if ! problems=$("$venv/bin/python" -m pip check); then
  echo "setup_env: pip check found conflicts:" >&2
  echo "$problems" >&2
  exit 1
fi
"$venv/bin/python" -c 'import torch, sys
if torch.__version__.split("+")[0] != "2.13.0":
    sys.exit(f"setup_env: torch {torch.__version__} installed; requirements pin torch==2.13.0")'
printf '%s\n' "$want" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
echo "setup_env: ready ($venv)" >&2
