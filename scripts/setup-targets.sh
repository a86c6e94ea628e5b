#!/usr/bin/env bash
# Build one virtualenv per loading tool under .venvs/, and make sure PostgreSQL is installed.
#
# Singer targets pin old libraries that clash with the tap's own, so each tool gets its own
# virtualenv. Re-running is cheap: a venv whose marker file holds the same pinned spec, and whose
# entry point still starts, is kept as it is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="${VENVS:-$ROOT/.venvs}"
PYTHON="${PYTHON:-python3}"

# name | pip requirements (space separated) | command that must succeed inside the venv
TOOLS=(
  "target-jsonl|target-jsonl==0.1.4|target-jsonl --help"
  "target-postgres|pipelinewise-target-postgres==2.1.2|target-postgres --help"
  "target-duckdb|target-duckdb==0.8.0 duckdb<1.3|target-duckdb --help"
  "singer-tools|singer-tools==0.4.1|singer-check-tap --help"
  "meltano|meltano==3.7.9|meltano --version"
)

venv_ok() {  # venv_ok DIR SPEC CHECK
  [ -f "$1/.spec" ] && [ "$(cat "$1/.spec")" = "$2" ] && (PATH="$1/bin:$PATH" $3 >/dev/null 2>&1)
}

build_venv() {  # build_venv NAME SPEC CHECK
  local dir="$VENVS/$1" spec="$2" check="$3"
  if venv_ok "$dir" "$spec" "$check"; then
    echo "setup-targets: $1 ok ($spec)"
    return
  fi
  echo "setup-targets: building $1 ($spec)"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check $spec
  PATH="$dir/bin:$PATH" $check >/dev/null
  echo "$spec" > "$dir/.spec"
}

find_pg_bin() {
  command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
  ls -d /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}

install_postgres() {
  if find_pg_bin; then
    echo "setup-targets: PostgreSQL ok"
    return
  fi
  echo "setup-targets: installing PostgreSQL from the distribution's packages"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  find_pg_bin
}

# With names (setup-targets.sh target-jsonl), only those venvs; with none, everything and PostgreSQL.
mkdir -p "$VENVS"
[ $# -eq 0 ] && install_postgres
for tool in "${TOOLS[@]}"; do
  IFS='|' read -r name spec check <<<"$tool"
  if [ $# -eq 0 ] || [[ " $* " == *" $name "* ]]; then
    build_venv "$name" "$spec" "$check"
  fi
done
