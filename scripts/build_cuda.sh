#!/usr/bin/env bash
# The real CUDA build: `cargo build --release --features cuda` with candle's kernels
# compiled by a real nvcc (scripts/check_cuda.sh is the fast stand-in type-check).
#
# Toolkit: an `nvcc` on PATH (or in $CUDA_HOME/bin) is used as it is. Without one, on
# Debian 12 this installs Debian's `nvidia-cuda-toolkit` (CUDA 11.8, in the contrib and
# non-free components, which this script enables in a sources file of its own) and g++-11
# (nvcc 11.8 supports host compilers up to gcc 11; Debian 12's default is gcc 12).
# CUDA 11.8 is enough: cudarc 0.19 supports 11.4 and later, candle 0.11's kernels compile
# with it, and 11.8 is the first release with sm_90 (Hopper).
#
# Architectures: candle-kernels builds for one compute capability (CUDA_COMPUTE_CAP,
# default here 80). Its PTX kernels are loaded at run time, and the driver JIT-compiles
# sm_80 PTX for any newer GPU (A100, RTX 30/40, H100, ...). Its static library (the GGUF
# quantized mat-vec/mat-mat kernels) is machine code (sm_80 code runs on sm_86 and sm_89,
# not on sm_90), so scripts/cuda/nvcc-multiarch adds SASS for sm_90 (TRSR_CUDA_EXTRA_ARCHS)
# and sm_80 PTX (a JIT fallback for newer GPUs) to those compiles.
# A GPU older than sm_80 needs its own build: CUDA_COMPUTE_CAP=75 scripts/build_cuda.sh.
#
# Run time: the binary links (cudarc's and candle's `dynamic-linking`, not dlopen) against
# libcuda.so.1 (the driver), and the toolkit's libcudart, libcublas, libcublasLt,
# libcurand and libnvrtc of the major version built with; the report at the end lists them.
#
# Flash attention (TRSR_FLASH_ATTN=1): adds the `flash-attn` feature, candle-flash-attn's
# fused attention kernels for prefill on sm_80 and newer. Its build clones CUTLASS from
# GitHub at a pinned commit; offline, point TRSR_CUTLASS_GIT at a local clone or mirror
# (scripts/cuda/seed-cutlass). Its 53 kernel files are heavy: one took 4 CPU-minutes with
# nvcc 11.8 here (hdim 64), so budget several CPU-hours; the compiled objects are kept in
# $CARGO_TARGET_DIR/flash-attn-kernels, so an interrupted build goes on where it stopped.
# They are sm_80 code plus PTX (TRSR_FLASH_EXTRA_ARCHS="90" adds sm_90 code, doubling the
# time); the binary sets CUDA_MODULE_LOADING=LAZY, so a newer GPU JIT-compiles only the
# kernels it uses.
#
# Usage: scripts/build_cuda.sh          (target dir target/cuda; hours cold on 2 cores)
# Env:   CUDA_COMPUTE_CAP (80), TRSR_CUDA_EXTRA_ARCHS ("90"), CARGO_TARGET_DIR,
#        TRSR_NO_INSTALL=1 to fail instead of installing a toolkit,
#        TRSR_FLASH_ATTN=1, TRSR_CUTLASS_GIT, TRSR_FLASH_EXTRA_ARCHS (""), CUDAFORGE_THREADS
#        (parallel nvcc jobs for the flash kernels; default all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

find_nvcc() {
  if command -v nvcc >/dev/null 2>&1; then command -v nvcc; return; fi
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr/lib/nvidia-cuda-toolkit; do
    if [[ -n "$d" && -x "$d/bin/nvcc" ]]; then echo "$d/bin/nvcc"; return; fi
  done
  return 1
}

install_debian_toolkit() {
  if [[ "${TRSR_NO_INSTALL:-}" == 1 ]]; then
    echo "error: no nvcc found and TRSR_NO_INSTALL=1; install a CUDA toolkit (11.8 or later)" >&2
    exit 1
  fi
  if ! grep -qs 'bookworm' /etc/os-release; then
    echo "error: no nvcc found; install a CUDA toolkit (11.8 or later) from" \
         "https://developer.nvidia.com/cuda-downloads and put nvcc on PATH" >&2
    exit 1
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "error: installing the toolkit needs root (or sudo)" >&2; exit 1; }
    sudo=(sudo)
  fi
  local list=/etc/apt/sources.list.d/trsr-cuda-nonfree.sources
  if [[ ! -f "$list" ]]; then
    echo "enabling Debian contrib/non-free in $list" >&2
    "${sudo[@]}" tee "$list" >/dev/null <<'EOF'
# Added by TRSR Workbench scripts/build_cuda.sh: Debian's CUDA toolkit lives in contrib/non-free.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  echo "installing nvidia-cuda-toolkit and g++-11 (about 1.6 GB to download)" >&2
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    nvidia-cuda-toolkit g++-11
}

nvcc="$(find_nvcc)" || { install_debian_toolkit; nvcc="$(find_nvcc)"; }
export PATH="$(dirname "$nvcc"):$PATH"
release="$("$nvcc" --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1.\2/p')"
major="${release%%.*}"
minor="${release#*.}"
if [[ -z "$release" ]] || (( major < 11 || (major == 11 && minor < 8) )); then
  echo "error: $nvcc is CUDA ${release:-of unknown version}; the build needs 11.8 or later" >&2
  exit 1
fi
echo "toolkit: $nvcc (CUDA $release)" >&2

# nvcc 11.x rejects gcc 12 and later: use g++-11 when the default is newer.
if [[ -z "${NVCC_CCBIN:-}" && "$major" == 11 ]]; then
  gxx_major="$(g++ -dumpversion 2>/dev/null | cut -d. -f1 || echo 0)"
  if (( gxx_major > 11 )); then
    if command -v g++-11 >/dev/null; then
      export NVCC_CCBIN=g++-11
    else
      echo "error: nvcc $release needs g++ 11 or older (g++ is $gxx_major): apt-get install g++-11" >&2
      exit 1
    fi
  fi
fi

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
export TRSR_REAL_NVCC="$nvcc" NVCC="$root/scripts/cuda/nvcc-multiarch"
export TRSR_CUDA_EXTRA_ARCHS="${TRSR_CUDA_EXTRA_ARCHS-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
features=cuda
if [[ "${TRSR_FLASH_ATTN:-}" == 1 ]]; then
  features="cuda flash-attn"
  scripts/cuda/seed-cutlass
  export CANDLE_FLASH_ATTN_BUILD_DIR="$CARGO_TARGET_DIR/flash-attn-kernels"
  mkdir -p "$CANDLE_FLASH_ATTN_BUILD_DIR"
  export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
fi
echo "building: features: $features; CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP extra SASS:" \
     "${TRSR_CUDA_EXTRA_ARCHS:-none}; host compiler: ${NVCC_CCBIN:-default}; target: $CARGO_TARGET_DIR" >&2
t0=$SECONDS
nice -n 10 cargo build --release --features "$features" --bin trsr
echo "build took $(( (SECONDS - t0) / 60 )) min" >&2

bin="$CARGO_TARGET_DIR/release/trsr"
stripped="$CARGO_TARGET_DIR/release/trsr-stripped"
objcopy --strip-all "$bin" "$stripped"
size_of() { du -h "$1" | cut -f1; }

echo
echo "## CUDA build"
case "$bin" in /*) shown="$bin" ;; *) shown="$root/$bin" ;; esac
echo "binary:   $shown ($(size_of "$bin"); stripped copy $stripped: $(size_of "$stripped"))"
echo "toolkit:  CUDA $release ($nvcc), host compiler ${NVCC_CCBIN:-g++}"
ptx_targets="$(strings "$bin" | sed -n 's/^\.target[[:space:]]*\(sm_[0-9a-z]*\).*/\1/p' | sort | uniq -c | awk '{print $2" ("$1" modules)"}' | paste -sd, -)"
echo "PTX:      ${ptx_targets:-none found} (JIT-compiled by the driver for newer GPUs)"
moe="$(ls -t "$CARGO_TARGET_DIR"/release/build/candle-kernels-*/out/libmoe.a 2>/dev/null | head -1 || true)"
# "SASS sm_80 sm_90; PTX sm_80": the machine code and PTX archs in a static library.
archs_of() {
  local sass ptx
  sass="$(cuobjdump --list-elf "$1" 2>/dev/null | sed -n 's/.*\.\(sm_[0-9a-z]*\)\..*/\1/p' | sort -u | paste -sd' ' -)"
  ptx="$(cuobjdump --list-ptx "$1" 2>/dev/null | sed -n 's/.*\.\(sm_[0-9a-z]*\)\..*/\1/p' | sort -u | paste -sd' ' -)"
  echo "SASS ${sass:-?}; PTX ${ptx:-none}"
}
if [[ -n "$moe" ]] && command -v cuobjdump >/dev/null; then
  echo "static kernels (libmoe.a): $(archs_of "$moe")"
fi
if [[ "${TRSR_FLASH_ATTN:-}" == 1 ]]; then
  flash_lib="$(ls "$CANDLE_FLASH_ATTN_BUILD_DIR"/libflashattention*.a 2>/dev/null | head -1 || true)"
  if [[ -n "$flash_lib" ]] && command -v cuobjdump >/dev/null; then
    echo "flash attention ($(basename "$flash_lib")): $(archs_of "$flash_lib")"
  else
    echo "flash attention: no kernel library found in $CANDLE_FLASH_ATTN_BUILD_DIR"
  fi
fi
echo "linked at run time (readelf NEEDED -> where this machine resolves it):"
readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | while read -r lib; do
  case "$lib" in
    libcuda.so*|libcudart*|libcublas*|libcurand*|libnvrtc*)
      where="$(ldd "$bin" | awk -v l="$lib" '$1==l {print $3}')"
      echo "  $lib -> ${where:-NOT FOUND here}";;
  esac
done
echo "libnvrtc also loads libnvrtc-builtins.so.$release at run time (same folder)."
echo "the GPU machine needs an NVIDIA driver for CUDA >= $release and these libraries" \
     "(see scripts/gpu_check.sh, which looks for them)."
