#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the OpenAI-compatible HTTP server) for the remote-model tests
# and scripts/bench_remote.sh. Why from the llama-cpp-python source distribution: PyPI keeps that
# sdist (with llama.cpp vendored) immutable per version, so a pinned version is a pinned llama.cpp,
# fetched with pip through the same registry the project already uses. CPU only, no curl.
#
# Prints the binary's path. A no-op (just the print) when the binary is already cached.
# Environment: TRSR_LLAMA_CPP_PYTHON_VERSION overrides the pin; TRSR_BUILD_JOBS the -j (default 2).
set -euo pipefail

version="${TRSR_LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
jobs="${TRSR_BUILD_JOBS:-2}"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/trsr/llama-server/$version"
bin="$cache_dir/llama-server"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

log() { echo "build_llama_server: $*" >&2; }

if ! command -v cmake >/dev/null; then
  log "installing cmake"
  if command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq cmake) >&2
  else
    python3 -m pip install -q --disable-pip-version-check cmake >&2
  fi
fi
command -v c++ >/dev/null || { log "a C++ compiler is needed (apt-get install build-essential)"; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/trsr-llama-server.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# `--no-binary llama-cpp-python` rather than `:all:`: pip prepares the sdist's metadata in an
# isolated build environment, and `:all:` would build that environment's packages (the
# scikit-build-core backend and its own dependencies) from source too, for minutes.
log "downloading llama-cpp-python==$version (source distribution)"
python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
  -d "$work/dl" "llama-cpp-python==$version" >&2
sdist="$(find "$work/dl" -maxdepth 1 -name 'llama*cpp*python-*.tar.gz' | head -n1)"
[ -n "$sdist" ] || { log "no source distribution downloaded"; exit 1; }
tar -xzf "$sdist" -C "$work"
src="$(find "$work" -maxdepth 3 -type d -path '*/vendor/llama.cpp' | head -n1)"
[ -f "$src/CMakeLists.txt" ] || { log "no vendored llama.cpp in $sdist"; exit 1; }

log "configuring $src"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_CUDA=OFF \
  -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DGGML_NATIVE=ON >&2
log "building llama-server with -j$jobs (several minutes on 2 cores)"
cmake --build "$work/build" --target llama-server -j "$jobs" >&2

built="$(find "$work/build" -type f -name llama-server -perm -u+x | head -n1)"
[ -n "$built" ] || { log "the build produced no llama-server"; exit 1; }
mkdir -p "$cache_dir"
cp "$built" "$bin.tmp" && mv "$bin.tmp" "$bin"
echo "$bin"
