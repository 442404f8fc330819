#!/usr/bin/env bash
# Screenshots of the HTML report in headless Chromium: its landing page and one figure page, to look
# at the report as a reader sees it, without clicks.
#
#   tools/report_screenshots.sh REPORT.html FIGURE_PAGE.html OUT_DIR
#
# REPORT.html: from `snakemake STUDY --report REPORT.html`; FIGURE_PAGE.html: one of the figure pages
# the figures rule writes beside its PNGs (results/figures/<study>/<figure>.html), the page the report
# opens for that figure. Writes OUT_DIR/landing.png and OUT_DIR/figure.png.
# Needs Chromium (Debian: apt-get install -y chromium); CHROMIUM overrides the binary.
set -euo pipefail
if [ $# -ne 3 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
report=$(realpath "$1") figure=$(realpath "$2") out=$3
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [ -z "$browser" ]; then
    echo "report_screenshots: no Chromium found; install it (apt-get install -y chromium) or set CHROMIUM" >&2
    exit 1
fi
mkdir -p "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

shoot() {  # URL PNG WIDTH HEIGHT: the page after its scripts have run (virtual time), at that window size
    "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
        --no-first-run --user-data-dir="$profile" --hide-scrollbars --virtual-time-budget=15000 \
        --window-size="$3,$4" --screenshot="$2" "$1" 2>/dev/null
    [ -s "$2" ] || { echo "report_screenshots: no screenshot of $1" >&2; exit 1; }
    echo "wrote $2"
}

shoot "file://$report" "$out/landing.png" 1600 2000
shoot "file://$figure" "$out/figure.png" 1400 1400
