#!/usr/bin/env bash
# System packages cospeech uses beyond PyPI: libespeak-ng (speech synthesis with phoneme
# timings, for the synthetic corpus). Installs them when missing and we are root with apt;
# otherwise says what to install and carries on (only `cospeech data synth` needs it).
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q libespeak-ng.so; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing espeak-ng (Debian) ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng libespeak-ng1 >/dev/null
else
  echo "note: libespeak-ng not found; install espeak-ng (e.g. 'sudo apt-get install espeak-ng')" \
       "to build the synthetic corpus" >&2
fi
