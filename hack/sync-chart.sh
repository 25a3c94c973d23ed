#!/usr/bin/env bash
# The chart's CRDs come from config/crd/bases, the one source; this copies
# them so that a stale chart shows up in `make verify-manifests`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p charts/cooperator/crds
rm -f charts/cooperator/crds/*.yaml
cp config/crd/bases/*.yaml charts/cooperator/crds/
