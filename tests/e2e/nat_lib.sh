# NAT topologies for the end-to-end tests: sites of "node <-> NAT router <->
# internet bridge", with the nftables NATs of docs/nat-testing.md. Source it
# after lib.sh; its names, work directory and EXIT trap are lib.sh's.
#
#   nat_init [FORTMESH_BINARY]     mesh_init, and lib.sh's bridge becomes the
#                                  internet (203.0.113.0/24, only inside these
#                                  namespaces)
#   nat_e2e_start FORTMESH_BINARY  for tests with daemons: lib.sh's e2e_start
#                                  (root and the tools, or exit 77), nft too,
#                                  then what nat_init adds
#   nat_add_site NAME MODE         MODE none | easy | fullcone | symmetric:
#                                  node namespace NAME (ns_of NAME), behind a
#                                  router namespace unless MODE is none
#   nat_public_ip NAME             the router's WAN address (none: the node's own)
#   nat_exec NAME CMD...           CMD in NAME's node namespace
#   nat_router_exec NAME CMD...    CMD in NAME's router namespace (not for none)
#   nat_block_udp NAME [allow-tcp-443]
#                                  drop UDP both ways between the site and the
#                                  internet; TCP is untouched either way
#   nat_unblock_udp NAME           undo nat_block_udp
#
# Site i (its index among lib.sh's hosts): the node's address is
# MESH_IP[NAME], 192.168.i.2/24 behind a router at 192.168.i.1 (WAN
# 203.0.113.i), or 203.0.113.i itself for none. NAT_MODE[NAME] holds the mode.
# A site is a lib.sh host (MESH_IF, MESH_DIR/NAME, mesh_start and fm work on
# it), but it does not share lib.sh's 10.N.0.0/24 underlay: in a NAT
# topology add every host, lighthouses too, with nat_add_site (a lighthouse
# is `nat_add_site lh none`).
#
# Names: the node's leg is fmv<pid><i> and its bridge port fmb<pid><i>, as in
# lib.sh; a router namespace is fmr<pid>-NAME (in MESH_NETNS, so the trap
# deletes it) with legs named WAN and LAN, so its nft rules read as in
# RELAY.md section 6. Every link is created inside its namespaces, never in
# the machine's own.

# The port a full-cone router forwards to its node (the WireGuard port).
NAT_FULLCONE_PORT=${NAT_FULLCONE_PORT:-51820}

nat_init() {
  mesh_init "$@"
  declare -gA NAT_MODE=() NAT_PUBLIC=() NAT_BRPORT=()
}

nat_e2e_start() {
  command -v nft >/dev/null || { echo "SKIP: nft is not installed (scripts/setup.sh --tests)"; exit 77; }
  e2e_start "$1"
  declare -gA NAT_MODE=() NAT_PUBLIC=() NAT_BRPORT=()
}

nat_router_ns() { echo "fmr$MESH_ID-$1"; }

nat_add_site() {
  local name=$1 mode=$2 i=$(( ${#MESH_HOSTS[@]} + 1 ))
  case "$mode" in none|easy|fullcone|symmetric) ;; *)
    echo "nat_add_site $name: unknown NAT mode '$mode' (none|easy|fullcone|symmetric)" >&2; return 1 ;;
  esac
  [ "$i" -le 254 ] || { echo "nat_add_site: at most 254 sites" >&2; return 1; }
  local ns; ns=$(ns_of "$name")
  local node_if="fmv$MESH_ID$i" port="fmb$MESH_ID$i" public="203.0.113.$i"
  ip netns add "$ns"
  MESH_HOSTS+=("$name")  # from here on the trap removes it (and wants MESH_IF)
  MESH_IF[$name]="fmw$MESH_ID$i"
  ip -n "$ns" link set lo up
  if [ "$mode" = none ]; then
    ip link add "$node_if" netns "$ns" type veth peer name "$port" netns "$MESH_HUB"
    ip -n "$ns" addr add "$public/24" dev "$node_if"
    MESH_IP[$name]=$public
  else
    local r; r=$(nat_router_ns "$name")
    local lan="192.168.$i.2" gw="192.168.$i.1"
    ip netns add "$r"
    MESH_NETNS+=("$r")
    ip -n "$r" link set lo up
    ip link add WAN netns "$r" type veth peer name "$port" netns "$MESH_HUB"
    ip link add LAN netns "$r" type veth peer name "$node_if" netns "$ns"
    ip -n "$r" addr add "$public/24" dev WAN
    ip -n "$r" addr add "$gw/24" dev LAN
    ip -n "$r" link set WAN up
    ip -n "$r" link set LAN up
    ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
    nat_rules "$mode" "$lan" "$public" | ip netns exec "$r" nft -f -
    ip -n "$ns" addr add "$lan/24" dev "$node_if"
    MESH_IP[$name]=$lan
  fi
  ip -n "$MESH_HUB" link set "$port" master br0 up
  ip -n "$ns" link set "$node_if" up
  [ "$mode" = none ] || ip -n "$ns" route add default via "192.168.$i.1"
  NAT_MODE[$name]=$mode
  NAT_PUBLIC[$name]=$public
  NAT_BRPORT[$name]=$port
  mkdir -p "$MESH_DIR/$name"
  chmod 700 "$MESH_DIR/$name"
}

# The router's ruleset for MODE: RELAY.md section 6's rules, with this site's
# LAN and WAN addresses in place of its examples' 10.0.1.2 and 198.51.100.2.
# Its one-line tables are split over lines: nftables 1.0.6 wants a newline
# or ";" between a chain's closing brace and the table's, so the one-liners
# as printed there are syntax errors.
nat_rules() {
  local mode=$1 lan=$2 public=$3
  case "$mode" in
    easy) cat <<EOF
table ip nat {
 chain post { type nat hook postrouting priority srcnat; oifname "WAN" masquerade; }
}
EOF
    ;;
    fullcone) cat <<EOF
table ip nat {
 chain pre  { type nat hook prerouting  priority dstnat; iifname "WAN" udp dport $NAT_FULLCONE_PORT dnat to $lan:$NAT_FULLCONE_PORT; }
 chain post { type nat hook postrouting priority srcnat;
              oifname "WAN" ip saddr $lan udp sport $NAT_FULLCONE_PORT snat to $public:$NAT_FULLCONE_PORT;
              oifname "WAN" masquerade; }
}
EOF
    ;;
    symmetric) cat <<EOF
table ip nat {
 chain post { type nat hook postrouting priority srcnat; oifname "WAN" masquerade random; }
}
EOF
    ;;
  esac
  # Every NAT: unsolicited inbound to the router itself is dropped, so its
  # own stack never confirms a conntrack entry that would take a mapping.
  cat <<EOF
table inet filter {
 chain in { type filter hook input priority filter; iifname "WAN" ct state new drop; }
}
EOF
}

nat_public_ip() { echo "${NAT_PUBLIC[$1]}"; }

nat_exec() {
  local name=$1; shift
  ip netns exec "$(ns_of "$name")" "$@"
}

nat_router_exec() {
  local name=$1; shift
  [ "${NAT_MODE[$name]}" != none ] || { echo "nat_router_exec: $name has no router" >&2; return 1; }
  ip netns exec "$(nat_router_ns "$name")" "$@"
}

# The drop sits on the site's port of the internet bridge (bridge family, in
# the bridge's namespace), the same place for every mode: the router's
# conntrack and NAT state are left as they were, as when a real upstream
# starts dropping UDP.
nat_block_udp() {
  local name=$1 variant=${2:-}
  case "$variant" in ""|allow-tcp-443) ;; *)
    echo "nat_block_udp $name: unknown variant '$variant' (allow-tcp-443)" >&2; return 1 ;;
  esac
  local port=${NAT_BRPORT[$name]}
  nat_unblock_udp "$name"
  ip netns exec "$MESH_HUB" nft -f - <<EOF
table bridge block_$port {
 chain forward {
  type filter hook forward priority filter;
  iifname "$port" meta l4proto udp drop
  oifname "$port" meta l4proto udp drop
 }
}
EOF
}

nat_unblock_udp() {
  local port=${NAT_BRPORT[$1]}
  if ip netns exec "$MESH_HUB" nft list table bridge "block_$port" >/dev/null 2>&1; then
    ip netns exec "$MESH_HUB" nft delete table bridge "block_$port"
  fi
}
