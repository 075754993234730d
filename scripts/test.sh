#!/usr/bin/env bash
# Installs what the tests need (dev extras, Debian's chromium) into .venv and runs the whole suite.
# Never downloads a browser: Playwright drives Debian's /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
    echo "== installing Debian's chromium"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# The interop tests' third-party clients (tests/test_interop_*.py): Firefox ESR, driven over WebDriver BiDi,
# GStreamer's webrtcbin through Debian's python3-gi, and iproute2 to give Firefox a network of its own;
# ffmpeg's ffprobe reads the recordings, clips and live MPEG-TS (tests/test_outputs*.py).
interop=(firefox-esr python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-bad gstreamer1.0-plugins-good
         gstreamer1.0-plugins-base gstreamer1.0-nice iproute2 ffmpeg)
missing=()
for package in "${interop[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing Debian's ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== installing longlive-rtc with the dev extras"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# constraints.txt pins the CPU build of torch, so no CUDA packages are downloaded.
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'

if [ -f tests/js/package-lock.json ]; then  # the browser tests' npm packages (e.g. the Reactor JS SDK)
    if ! command -v npm >/dev/null; then
        echo "== installing Debian's npm"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends npm >/dev/null
    fi
    installed=tests/js/node_modules/.package-lock.json
    if [ ! -f "$installed" ] || [ tests/js/package-lock.json -nt "$installed" ]; then
        echo "== installing the locked npm packages of tests/js"
        (cd tests/js && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
.venv/bin/python -m pytest -q -ra "$@"
