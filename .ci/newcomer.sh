#!/usr/bin/env bash
# The README's first command in a virtual environment of its own (base install, no extras),
# then the README's Quickstart and its two shell lines, as a newcomer runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

python3 -m venv .venv-newcomer
# shellcheck disable=SC1091
. .venv-newcomer/bin/activate
python -m pip install --quiet --upgrade pip

# The README's first command, verbatim:
python -m pip install -e . && lazyimg demo

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
python - "$repo/README.md" <<'PY'
import re, sys
readme = open(sys.argv[1]).read()
block = re.search(r"## Quickstart\n\n```python\n(.*?)```", readme, re.S)
exec(compile(block.group(1), "README.md (Quickstart)", "exec"), {})
PY
lazyimg info bold.nii.gz --json > /dev/null
lazyimg info bold.nii.gz
lazyimg reduce bold.nii.gz --op tsnr --axis time -o tsnr.nii.gz
test -s tsnr.nii.gz
deactivate
