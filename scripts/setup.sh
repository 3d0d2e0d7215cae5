#!/usr/bin/env bash
# Installs what shelfgate needs on a fresh Debian / Raspberry Pi OS machine, then its npm packages.
#   scripts/setup.sh          runtime + demo needs (build tools for native modules, mosquitto-clients)
#   scripts/setup.sh --test   also what the test suite needs (socat, mosquitto broker, systemd-analyze, openssl for test certificates, prometheus for promtool, chromium and a font for the browser tests)
# Needs Node.js >= 20 already installed (Debian 13 / Raspberry Pi OS Trixie: `apt-get install nodejs npm`;
# Bookworm ships Node 18, which is too old: see docs/INSTALL.md).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "shelfgate needs Node.js >= 20 (found: $(node --version 2>/dev/null || echo none)); see docs/INSTALL.md" >&2
  exit 69
fi

pkgs=(python3 make g++ mosquitto-clients)
[ "$want_test" = 1 ] && pkgs+=(socat mosquitto systemd openssl prometheus chromium fonts-liberation)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# A mosquitto package installed just for tests must not keep a system broker on port 1883.
if [ "$want_test" = 1 ] && command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  echo "note: a system mosquitto is running; tests start their own on free ports"
fi
# The prometheus package is installed for promtool only (the fleet rules' CI check).
if [ "$want_test" = 1 ] && command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  echo "note: the prometheus package started a Prometheus server on :9090; tests only use promtool (systemctl disable --now prometheus if unwanted)"
fi

npm ci --no-audit --no-fund
