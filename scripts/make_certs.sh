#!/usr/bin/env bash
# TLS certificates and SuperNode keys for an avfed federation (openssl + ssh-keygen).
# Usage: scripts/make_certs.sh OUT_DIR NUM_NODES HOST [HOST ...]
#   HOST: every name or IP address SuperNodes use to reach the SuperLink.
# Writes OUT_DIR/ca.crt (to every SuperNode and to where `flwr run` runs), ca.key (keep
# it private), server.pem + server.key (the SuperLink's), and keys/supernode_<i>
# (private: to node i only) + keys/supernode_<i>.pub (register with the SuperLink).
# `avfed federate --tls` makes the same files itself (avfed/deploy/certs.py).
set -euo pipefail
out=${1:?OUT_DIR}; nodes=${2:?NUM_NODES}; shift 2
[ $# -ge 1 ] || { echo "give at least one HOST" >&2; exit 2; }
mkdir -p "$out/keys"; cd "$out"
san=""
for host in "$@" 127.0.0.1 localhost; do
  if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then entry="IP:$host"; else entry="DNS:$host"; fi
  case ",$san," in *",$entry,"*) ;; *) san="${san:+$san,}$entry";; esac
done
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 365 \
  -subj "/CN=avfed federation CA" -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$1" -keyout server.key -out server.csr
echo "subjectAltName=$san" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -sha256 -extfile server.ext -out server.pem
for ((i = 0; i < nodes; i++)); do
  [ -e "keys/supernode_$i" ] || ssh-keygen -q -t ecdsa -b 384 -N "" -f "keys/supernode_$i"
done
echo "certificates and keys in $(pwd)"
