#!/usr/bin/env bash
# System packages cospeech uses beyond PyPI: libespeak-ng (speech synthesis with phoneme
# timings, for the synthetic corpus) and chromium (the headless browser test of
# `cospeech serve`, driven by Playwright through /usr/bin/chromium; Playwright's own browser
# download is never used). Installs what is missing when we are root with apt; otherwise
# says what to install and carries on (only `cospeech data synth` and
# tests/test_serve_browser.py need them; that test skips without chromium).
set -euo pipefail
missing=()
if ! ldconfig -p 2>/dev/null | grep -q libespeak-ng.so; then
  missing+=(espeak-ng libespeak-ng1)
fi
if [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (Debian) ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: missing system packages: ${missing[*]} (e.g. 'sudo apt-get install" \
       "${missing[*]}'); espeak-ng builds the synthetic corpus, chromium runs the browser" \
       "test of cospeech serve" >&2
fi
