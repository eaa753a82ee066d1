#!/usr/bin/env bash
# Refreshes security/advisory-db/: the RustSec advisory database (https://github.com/rustsec/advisory-db,
# CC0-1.0 data, a few advisories CC-BY-4.0 with their attribution inside the file), pruned to the
# crates named in Cargo.lock. CI cannot reach GitHub, so `cargo audit` in .ci/run reads this
# committed copy; run this script where GitHub is reachable (and after adding dependencies), then
# commit the result.
#
# Usage: scripts/update_advisories.sh [GIT_DIR]
#   GIT_DIR: an existing clone (bare or not) of rustsec/advisory-db to take HEAD from;
#            default: a fresh shallow clone from GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
out=security/advisory-db
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
  git --git-dir="$1" rev-parse --verify HEAD >/dev/null 2>&1 || git_dir="$1/.git"
  git_dir="${git_dir:-$1}"
else
  git clone --quiet --bare --depth 1 https://github.com/rustsec/advisory-db "$work/db.git"
  git_dir="$work/db.git"
fi
mkdir "$work/tree"
git --git-dir="$git_dir" archive HEAD | tar -x -C "$work/tree"
commit="$(git --git-dir="$git_dir" log -1 --format='%H %cI')"

rm -rf "$out"
mkdir -p "$out/crates"
cp -r "$work/tree/LICENSES" "$work/tree/support.toml" "$out/"
[ -d "$work/tree/rust" ] && cp -r "$work/tree/rust" "$out/"
kept=0
for name in $(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u); do
  if [ -d "$work/tree/crates/$name" ]; then
    cp -r "$work/tree/crates/$name" "$out/crates/"
    kept=$((kept + 1))
  fi
done
cat > "$out/SOURCE" <<SRC
rustsec/advisory-db at $commit
pruned to the $kept crates of Cargo.lock that have advisories, by scripts/update_advisories.sh
SRC
echo "security/advisory-db: $(find "$out/crates" -name '*.md' | wc -l) advisories for $kept crates, from $commit"
