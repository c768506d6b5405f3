#!/bin/sh
# Starts a Prism worker node in a container (deploy/compose.yaml).
#
# First start (no $NODE_DIR/node.json yet): waits for the head, mints a
# one-time join token with the bootstrap admin token, and joins with it.
# Later starts reuse the node's identity from $NODE_DIR and need neither
# the token nor the admin token.
#
# DEVELOPMENT ONLY: minting its own join token means this container can
# read a cluster-admin token. In production, mint a token per node
# (`prism node join-token`) and hand it to that node out of band, e.g. as
# PRISM_JOIN_TOKEN; see deploy/README.md.
#
# Environment (defaults in brackets):
#   HEAD_URL        the head, https://HOST:PORT [https://head:7443]
#   BOOTSTRAP_DIR   holds ca.pem and admin.token [/head-state]
#   NODE_DIR        the node's state directory [/var/lib/prism]
#   NODE_LISTEN     address to serve on [0.0.0.0:7000]
#   NODE_ADVERTISE  HOST:PORT where other nodes reach this one (required;
#                   it may change between starts: the node's certificate
#                   names the node, <node id>.node.prism, not HOST)
#   WAIT_SECS       how long to wait for the head on first start [120]
# Arguments are passed on to `prism start` (e.g. --cpus 2).
set -eu

HEAD_URL=${HEAD_URL:-https://head:7443}
BOOTSTRAP_DIR=${BOOTSTRAP_DIR:-/head-state}
NODE_DIR=${NODE_DIR:-/var/lib/prism}
NODE_LISTEN=${NODE_LISTEN:-0.0.0.0:7000}
WAIT_SECS=${WAIT_SECS:-120}
: "${NODE_ADVERTISE:?set NODE_ADVERTISE to HOST:PORT, where other nodes reach this one}"

if [ -f "$NODE_DIR/node.json" ]; then
    echo "worker: rejoining $HEAD_URL with the identity in $NODE_DIR" >&2
    exec prism start --join "$HEAD_URL" --dir "$NODE_DIR" \
        --listen "$NODE_LISTEN" --advertise "$NODE_ADVERTISE" "$@"
fi

for f in ca.pem admin.token; do
    if [ ! -r "$BOOTSTRAP_DIR/$f" ]; then
        echo "worker: first start needs $BOOTSTRAP_DIR/$f (is the head initialized?)" >&2
        exit 1
    fi
done

# Minting the token is also the wait: it fails until the head answers.
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
waited=0
until token=$(prism node join-token --address "$HEAD_URL" \
    --token-file "$BOOTSTRAP_DIR/admin.token" --ca "$BOOTSTRAP_DIR/ca.pem" 2>"$errors"); do
    if [ "$waited" -ge "$WAIT_SECS" ]; then
        echo "worker: no join token from $HEAD_URL after ${WAIT_SECS}s:" >&2
        cat "$errors" >&2
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done
rm -f "$errors"
trap - EXIT

echo "worker: joining $HEAD_URL as $NODE_ADVERTISE" >&2
# Through the environment rather than --join-token, so the token does not
# show in the process list. It is spent by this start.
PRISM_JOIN_TOKEN=$token
export PRISM_JOIN_TOKEN
exec prism start --join "$HEAD_URL" --dir "$NODE_DIR" --ca "$BOOTSTRAP_DIR/ca.pem" \
    --listen "$NODE_LISTEN" --advertise "$NODE_ADVERTISE" "$@"
