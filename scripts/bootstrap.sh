#!/usr/bin/env bash
# Installs everything frtwatch needs on a fresh machine, idempotently:
#   1. Debian packages: Java, Maven, Prometheus and Alertmanager (as root, via apt-get);
#   2. the Python environment in .venv, exactly requirements.lock (`make lock`) and frtwatch itself
#      (re-installed when either that or pyproject.toml changes);
#   3. the Apache Kafka jars from Maven Central into ~/.cache/frtwatch (outside the repo);
#   4. the judge's hot modules compiled with mypyc, into the same cache.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_apt[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
stamp=.venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating the Python environment in .venv"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.lock  # exact versions, hashes checked
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.installed-* && touch "$stamp"
fi

.venv/bin/frtwatch stack fetch
# The judge compiled with mypyc (frtwatch/compiled.py); without it the judging runs interpreted.
.venv/bin/frtwatch compile || echo "bootstrap: warning: the judge will run interpreted (slower)" >&2
