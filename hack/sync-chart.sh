#!/usr/bin/env bash
# The chart's CRDs and RBAC rules come from config/, the one source: this
# copies them, so that a stale chart shows up in `make verify-manifests`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p charts/cooperator/crds charts/cooperator/files
rm -f charts/cooperator/crds/*.yaml
cp config/crd/bases/*.yaml charts/cooperator/crds/
cp config/rbac/role.yaml charts/cooperator/files/manager-role.yaml
