#!/usr/bin/env bash
# Takes docs/screenshot.png from the real window under Xvfb while a summary streams.
#
#   scripts/screenshot.sh [DATA_DIR] [MODEL]
#
# DATA_DIR defaults to sample_data/jsonl, MODEL to `default` (the SmolLM2 GGUF).
# Env: WAIT_SECS (seconds between the window opening and the shot; default 40),
#      OUT (default docs/screenshot.png).
# Installs xvfb, imagemagick and a software GL/Vulkan driver when missing (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${1:-sample_data/jsonl}"
MODEL="${2:-default}"
WAIT_SECS="${WAIT_SECS:-40}"
OUT="${OUT:-docs/screenshot.png}"

need=()
command -v Xvfb >/dev/null || need+=(xvfb)
command -v import >/dev/null || need+=(imagemagick)
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need+=(mesa-vulkan-drivers libgl1-mesa-dri libegl1 libxkbcommon-x11-0)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update
    $SUDO apt-get install -y "${need[@]}"
fi

cargo build --bin trsr
BIN="${CARGO_TARGET_DIR:-target}/debug/trsr"

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
DISPLAY_NUM=":${DISPLAY_NUM:-97}"
Xvfb "$DISPLAY_NUM" -screen 0 1400x900x24 -nolisten tcp &
XVFB_PID=$!
SETTINGS_DIR="$(mktemp -d)"
SETTINGS="$SETTINGS_DIR/settings.ron"
APP_PID=""
cleanup() {
    [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null || true
    kill "$XVFB_PID" 2>/dev/null || true
    rm -rf "$SETTINGS_DIR"
}
trap cleanup EXIT
sleep 2

# A fresh settings file so the shot does not depend on this machine's settings.
DISPLAY="$DISPLAY_NUM" "$BIN" gui --data "$DATA" --model "$MODEL" --autorun --settings "$SETTINGS" &
APP_PID=$!
sleep "$WAIT_SECS"
kill -0 "$APP_PID" || { echo "the window exited early" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
DISPLAY="$DISPLAY_NUM" import -window root "$OUT"
echo "wrote $OUT"
