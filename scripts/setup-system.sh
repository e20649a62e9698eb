#!/usr/bin/env bash
# System packages cospeech uses beyond PyPI: libespeak-ng (speech synthesis with phoneme
# timings, for the synthetic corpus) and chromium (the headless browser test of
# `cospeech serve`, driven by Playwright through /usr/bin/chromium; Playwright's own browser
# download is never used). Installs what is missing when we are root with apt; otherwise
# says what to install and carries on (only `cospeech data synth` and
# tests/test_serve_browser.py need them; that test skips without chromium).
set -euo pipefail
can_install() { [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; }
updated=0
install() {  # install Debian packages; apt's package lists are fetched once
  if [ "$updated" = 0 ]; then apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! ldconfig -p 2>/dev/null | grep -q libespeak-ng.so; then
  if can_install; then
    echo "installing espeak-ng (Debian) ..."
    install espeak-ng libespeak-ng1
  else
    echo "note: libespeak-ng not found; install espeak-ng (e.g. 'sudo apt-get install" \
         "espeak-ng') to build the synthetic corpus" >&2
  fi
fi
# Chromium is optional (one test skips without it), so a failed install is only a note.
if [ ! -x /usr/bin/chromium ]; then
  if can_install; then
    echo "installing chromium (Debian) ..."
    install chromium || echo "note: chromium could not be installed; the browser test of" \
                             "cospeech serve will be skipped" >&2
  else
    echo "note: chromium not found (e.g. 'sudo apt-get install chromium'); the browser test" \
         "of cospeech serve will be skipped" >&2
  fi
fi
