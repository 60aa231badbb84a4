# Shared by scripts/test and scripts/demo: a venv with the project, and timed phases.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

phase() {  # phase NAME COMMAND...: run a step and print how long it took
    local name=$1 start=$SECONDS
    shift
    echo "==> ${name}"
    "$@"
    echo "==> ${name}: $((SECONDS - start))s"
}

ensure_venv() {
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "clusternet-py needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
}

export PATH="$PWD/.venv/bin:$PATH"
