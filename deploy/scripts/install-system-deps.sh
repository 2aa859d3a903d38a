#!/usr/bin/env bash
# Debian packages the project needs; installs only what is missing (fast when all present).
set -euo pipefail
# MP3 and audio decoding come from Python wheels (lameenc, PyAV): no ffmpeg/lame/sox needed.
# chromium: the browser the console's end-to-end tests drive (Playwright, without its own download).
# dnsmasq-base: the DNS server the SIP trunk server-location tests run (NAPTR, SRV records).
PKGS=(postgresql postgresql-client default-jre-headless maven kcat espeak-ng sip-tester baresip chromium dnsmasq-base)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A JDK installed outside apt (17+) is fine for the broker.
if [ " ${missing[*]-} " != "  " ] && command -v java >/dev/null; then
  missing=("${missing[@]/default-jre-headless}")
fi
missing=($(printf '%s\n' "${missing[@]-}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install] apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
