#!/usr/bin/env bash
# make demo: a single-node controller with embedded NATS and a local agent,
# on loopback, in a temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
WORK=$(mktemp -d /tmp/palisade-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=127.0.0.1:$(port); RAFT=127.0.0.1:$(port); NATS=127.0.0.1:$(port)
export PALISADE_API=http://$API PALISADE_TOKEN_FILE=$WORK/controller/admin.token

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting controller (Raft + embedded NATS + API on $API)"
"$BIN/palisade-controller" run --node-id demo-1 --data-dir "$WORK/controller" --api-addr "$API" \
  --raft-addr "$RAFT" --nats-listen "$NATS" --bootstrap >"$WORK/controller.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$PALISADE_TOKEN_FILE" ] && curl -fsS "http://$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$API/healthz"

step "creating an enrolment token"
TOKEN=$("$BIN/palisadectl" enroll-token create --ttl 10m)
echo "token: ${TOKEN:0:8}…"

step "starting the agent (enrols, then heartbeats every second)"
"$BIN/palisade-agent" run --controller "http://$API" --enroll-token "$TOKEN" --state-dir "$WORK/agent" \
  --heartbeat-interval 1s >"$WORK/agent.log" 2>&1 &
AGENT=$!
PIDS+=($AGENT)
for _ in $(seq 100); do "$BIN/palisadectl" hosts list -o json | grep -q '"online": true' && break; sleep 0.1; done
"$BIN/palisadectl" hosts list

step "stopping the agent: the host goes offline after three missed heartbeats"
kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
for _ in $(seq 100); do "$BIN/palisadectl" hosts list -o json | grep -q '"online": false' && break; sleep 0.1; done
"$BIN/palisadectl" hosts list

step "audit log"
"$BIN/palisadectl" audit list

step "done: stopping the controller and removing $WORK"
