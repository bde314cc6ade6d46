#!/usr/bin/env bash
# crhook demo: shape a network namespace, checkpoint it, delete it, restore it into a fresh
# namespace, and let `crhook diff` say whether the two are the same.
#
#   sudo ./scripts/demo.sh
#
# Everything happens in two namespaces this script makes and removes (crh-demo-<pid> and its
# "host side" crh-demo-host-<pid>); the namespace you run it from is not touched. Needs root,
# iproute2 and iptables (sudo .ci/install-deps installs them on Debian). Set CRHOOK=/path/to/crhook
# to use a binary you built; otherwise the script builds one with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (sudo ./scripts/demo.sh)" >&2; exit 1; }
for prog in ip iptables iptables-save; do
  command -v "$prog" >/dev/null 2>&1 || { echo "demo: $prog not found; install iproute2 and iptables (sudo .ci/install-deps)" >&2; exit 1; }
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -z "${CRHOOK:-}" ]; then
  step "build crhook"
  if command -v cargo >/dev/null 2>&1; then
    cargo build -p crhook
  elif [ -n "${SUDO_USER:-}" ] && home=$(getent passwd "$SUDO_USER" | cut -d: -f6) \
       && [ -x "$home/.cargo/bin/cargo" ]; then
    # under sudo, root's PATH rarely has the invoking user's cargo; build as that user
    sudo -u "$SUDO_USER" -H "$home/.cargo/bin/cargo" build -p crhook
  else
    echo "demo: cargo not found; build crhook and pass CRHOOK=/path/to/crhook" >&2
    exit 1
  fi
  CRHOOK=$PWD/target/debug/crhook
fi

NS=crh-demo-$$
HOST=crh-demo-host-$$
WORK=$(mktemp -d /tmp/crh-demo.XXXXXX)
IMAGES=$WORK/netstate
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$HOST" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
ping_gw() {
  local ping=(ping)
  command -v ping >/dev/null 2>&1 || ping=(busybox ping)
  if in_ns "${ping[@]}" -c 1 -W 2 192.0.2.1 >/dev/null 2>&1; then
    echo "ping 192.0.2.1 (the bridge in $HOST) from $1: ok"
  else
    echo "ping 192.0.2.1 (the bridge in $HOST) from $1: FAILED"
    return 1
  fi
}

step "make $NS with a veth to a bridge in $HOST"
ip netns add "$HOST"
ip netns add "$NS"
ip -n "$HOST" link add br0 type bridge
ip -n "$HOST" addr add 192.0.2.1/24 dev br0
ip -n "$HOST" addr add 2001:db8:1::1/64 dev br0 nodad
ip -n "$HOST" link set br0 up
ip -n "$NS" link add eth0 type veth peer name veth-demo netns "$HOST"
ip -n "$HOST" link set veth-demo master br0 up
ip -n "$NS" link set lo up
ip -n "$NS" link set eth0 address 02:00:00:00:00:10 mtu 1400 up
ip -n "$NS" addr add 192.0.2.10/24 dev eth0
ip -n "$NS" addr add 2001:db8:1::10/64 dev eth0 nodad

step "routes in two tables, a rule, a neighbour, a sysctl, an iptables rule"
ip -n "$NS" route add default via 192.0.2.1
ip -n "$NS" route add 198.51.100.0/24 via 192.0.2.1 table 100
ip -n "$NS" -6 route add 2001:db8:2::/64 via 2001:db8:1::1 table 100
ip -n "$NS" rule add from 192.0.2.10 lookup 100 pref 1000
ip -n "$NS" neigh add 192.0.2.2 lladdr 02:00:00:00:00:02 dev eth0 nud permanent
in_ns sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 2 > /proc/sys/net/ipv4/conf/eth0/rp_filter'
in_ns iptables -A INPUT -p tcp --dport 8080 -j ACCEPT
in_ns iptables -P FORWARD DROP
ip -n "$NS" -br addr
ip -n "$NS" route show table all | grep -v '^local\|^multicast\|fe80' || true
ping_gw "$NS"
# IPv6 duplicate address detection still running is a moment of the kernel's, not a setting:
# checkpoint the namespace once it has settled
for _ in $(seq 50); do [ -z "$(ip -n "$NS" -6 addr show tentative)" ] && break; sleep 0.1; done

step "crhook checkpoint"
"$CRHOOK" checkpoint --netns "/run/netns/$NS" --images "$IMAGES" --print-stats
"$CRHOOK" show "$IMAGES" --format text | head -n 40

step "delete $NS, make an empty one with the same name"
before=$(mktemp "$WORK/before.XXXX")
{ ip -n "$NS" -d addr; ip -n "$NS" route show table all; ip -n "$NS" rule; in_ns iptables-save | grep -v "^#" | sed -E "s/\[[0-9]+:[0-9]+\]//"; } >"$before"
ip netns del "$NS"
# the kernel deletes the veth's other end from a workqueue, a moment later
for _ in $(seq 100); do ip -n "$HOST" link show veth-demo >/dev/null 2>&1 || break; sleep 0.1; done
ip netns add "$NS"
ip -n "$NS" -br link

step "crhook restore"
"$CRHOOK" restore --netns "/run/netns/$NS" --images "$IMAGES" --print-stats

step "crhook diff"
if "$CRHOOK" diff --netns "/run/netns/$NS" --images "$IMAGES"; then
  echo "crhook diff: identical"
else
  echo "crhook diff: the namespaces differ (lines above)"
  exit 1
fi
ip -n "$NS" -br addr
ping_gw "the restored $NS"
after=$(mktemp "$WORK/after.XXXX")
{ ip -n "$NS" -d addr; ip -n "$NS" route show table all; ip -n "$NS" rule; in_ns iptables-save | grep -v "^#" | sed -E "s/\[[0-9]+:[0-9]+\]//"; } >"$after"
if diff -u "$before" "$after"; then
  echo "ip addr/route/rule and iptables-save: identical"
else
  echo "ip/iptables-save differ (above)"
  exit 1
fi
