#!/usr/bin/env bash
# make demo: the local control plane, the CRDs, the operator and the sample
# coops, until Ctrl-C tears it all down. DEMO_EXIT=1 tears down right after
# the coops are Ready (for scripted runs).
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL=$PWD/.local
export KUBECONFIG=$LOCAL/kubeconfig
kubectl() { bin/kubectl "$@"; }

operator_pid=""
teardown() {
  trap - INT TERM EXIT
  echo
  echo ">> Tearing down"
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  hack/cluster.sh down || true
}
trap teardown EXIT
trap "exit 0" INT TERM

echo ">> Starting the local control plane"
hack/cluster.sh up

echo ">> Installing the CRDs and the sample plans"
kubectl apply --server-side -f config/crd/bases
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl apply --server-side -f config/samples/plans.yaml
kubectl apply --server-side -f "$LOCAL/database-server.yaml"
kubectl apply --server-side -f "$LOCAL/backup-store.yaml"
echo ">> Installing the catalog (config/catalog)"
kubectl apply --server-side -k config/catalog

echo ">> Starting the operator (log: .local/operator.log)"
bin/cooperator manager --metrics-bind-address=0 --health-probe-bind-address=0 --base-domain=coops.localhost \
  --namespace=cooperator-system --runner-image=cooperator:dev >"$LOCAL/operator.log" 2>&1 &
operator_pid=$!

echo ">> Applying the sample cooperatives"
kubectl apply --server-side -f config/samples/cooperatives.yaml
kubectl wait --for=condition=Ready coop --all --timeout=120s
kubectl wait --for=condition=Ready blueprint --all --timeout=60s >/dev/null
echo
kubectl get coops
echo
kubectl get blueprints
echo
kubectl get databaseservers
echo
kubectl get backupstores
echo
kubectl get cronjobs -n cooperator-system
echo
echo "The sample coops are Ready. Point kubectl at this cluster with:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "  bin/kubectl get coops"
echo "  bin/kubectl describe coop velo-couriers"

if [ "${DEMO_EXIT:-}" = 1 ]; then
  exit 0
fi
echo
echo "Press Ctrl-C to tear everything down."
while kill -0 "$operator_pid" 2>/dev/null; do sleep 1; done
echo "The operator stopped; see $LOCAL/operator.log" >&2
exit 1
