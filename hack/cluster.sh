#!/usr/bin/env bash
# Starts or stops the local control plane in the background.
#   hack/cluster.sh up     start it; wait until .local/kubeconfig is written
#   hack/cluster.sh down   stop it
set -euo pipefail
cd "$(dirname "$0")/.."
LOCAL=.local
PIDFILE=$LOCAL/cluster.pid
mkdir -p "$LOCAL"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
up)
  if running; then
    echo "The local control plane is already running (pid $(cat "$PIDFILE")); KUBECONFIG=$PWD/$LOCAL/kubeconfig"
    exit 0
  fi
  rm -f "$LOCAL/kubeconfig"
  go build -o bin/localcluster ./hack/localcluster
  nohup bin/localcluster --dir "$LOCAL/cluster" --kubeconfig "$LOCAL/kubeconfig" >"$LOCAL/cluster.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 600); do
    if [ -f "$LOCAL/kubeconfig" ]; then
      echo "The local control plane is up. Point kubectl at it with:"
      echo "  export KUBECONFIG=$PWD/$LOCAL/kubeconfig"
      echo "Once the CRDs are installed (make install), give the operator the local PostgreSQL server with:"
      echo "  bin/kubectl apply -f $LOCAL/database-server.yaml"
      exit 0
    fi
    if ! running; then
      echo "The local control plane failed to start:" >&2
      cat "$LOCAL/cluster.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "The local control plane did not come up in 120s; see $LOCAL/cluster.log" >&2
  exit 1
  ;;
down)
  if running; then
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    echo "The local control plane is stopped."
  else
    echo "The local control plane is not running."
  fi
  rm -f "$PIDFILE" "$LOCAL/kubeconfig"
  ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
