"""The checks of nat_grid_test.sh, over snapshots of `peers --json` and
`status --json` of every daemon, and the device watcher it runs.

  nat_grid.py --watch T0 OUT IFACE...   every 0.2 s, each WireGuard device's
      UAPI socket (/var/run/wireguard/IFACE.sock): the first time each peer
      has a handshake, "IFACE WG_KEY SECONDS_SINCE_T0" appended to OUT
  nat_grid.py CONF SNAP HANDSHAKES CHECK [ARGS]
      elapsed T0             seconds since T0, one decimal
      pairs connectable|blocked
                             the node pairs ("a b" lines) whose modes allow a
                             direct path, or do not
      reflection [quiet]     reflected endpoints and NAT class of every node
      connected [quiet]      every connectable pair: both ends direct or
                             roamed, with a recent handshake
      blocked                no blocked pair has had a handshake
      figures                time to the first handshake, per cell
A check prints "ok ..." or "FAIL ..." per item (only failures when quiet)
and exits 1 if any failed.
"""
import base64
import json
import os
import socket
import sys
import time

# The cells where no direct path can exist: RELAY.md section 3, checked with
# plain UDP by nat_test.sh. Relayed in the relay issue.
BLOCKED = {frozenset(["easy", "symmetric"]), frozenset(["symmetric"])}
RECENT_SEC = 180  # WireGuard's REJECT_AFTER_TIME


def watch(t0, out_path, ifaces):
    seen = set()
    with open(out_path, "a", buffering=1) as out:
        while True:
            for ifname in ifaces:
                try:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.settimeout(1.0)
                        s.connect(f"/var/run/wireguard/{ifname}.sock")
                        s.sendall(b"get=1\n\n")
                        data = b""
                        while not data.endswith(b"\n\n"):
                            chunk = s.recv(65536)
                            if not chunk:
                                break
                            data += chunk
                except OSError:
                    continue
                now = time.time()
                peer = None
                for line in data.decode(errors="replace").splitlines():
                    key, _, value = line.partition("=")
                    if key == "public_key":
                        peer = base64.b64encode(bytes.fromhex(value)).decode()
                    elif key == "last_handshake_time_sec" and peer and value != "0" and (ifname, peer) not in seen:
                        seen.add((ifname, peer))
                        out.write(f"{ifname} {peer} {now - t0:.2f}\n")
            time.sleep(0.2)


class Grid:
    def __init__(self, conf, snap, handshakes):
        with open(conf) as f:
            c = json.load(f)
        self.sites = c["sites"]
        self.nodes = c["nodes"]
        self.lighthouses = c["lighthouses"]
        self.cells = [tuple(x.split(":")) for x in c["cells"]]
        self.snap = snap
        self.handshakes = handshakes
        self.failures = 0
        self.quiet = False

    def load(self, name, what):
        try:
            with open(os.path.join(self.snap, f"{name}.{what}.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def peers(self, name):
        return {p.get("name", ""): p for p in self.load(name, "peers").get("peers", [])}

    def mode(self, name):
        return self.sites[name]["mode"]

    def pairs(self):
        for i, a in enumerate(self.nodes):
            for b in self.nodes[i + 1:]:
                yield a, b

    def blocked(self, a, b):
        return frozenset([self.mode(a), self.mode(b)]) in BLOCKED

    def cell_of(self, a, b):
        order = ["none", "easy", "fullcone", "symmetric"]
        ma, mb = sorted([self.mode(a), self.mode(b)], key=order.index)
        return f"{ma}-{mb}"

    def check(self, ok, what, detail=""):
        if not ok:
            self.failures += 1
        if not ok or not self.quiet:
            print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail else ""))

    # -- checks --------------------------------------------------------------

    def reflection(self):
        views = {lh: self.peers(lh) for lh in self.lighthouses}
        for n in self.nodes:
            st = self.load(n, "status")
            mode, public = self.mode(n), self.sites[n]["public"]
            nat, reflected, endpoints = st.get("nat", "?"), st.get("reflected", []), st.get("endpoints", [])
            seen = {lh: views[lh].get(n, {}).get("endpoint", "") for lh in self.lighthouses}
            where = f"nat {nat}, reflected {reflected}, endpoints {endpoints}; lighthouses see " + \
                ", ".join(f"{lh} {e or 'nothing'}" for lh, e in seen.items())
            if mode == "none":
                self.check(nat == "none" and f"{public}:51820" in endpoints and reflected == [],
                           f"{n} (none): NAT class none, its own {public}:51820 announced, nothing reflected", where)
            elif mode in ("easy", "fullcone"):
                want = f"{public}:51820"
                self.check(nat == "endpoint-independent" and reflected == [want] and
                           all(e == want for e in seen.values()),
                           f"{n} ({mode}): NAT class endpoint-independent, reflected {want} "
                           f"(its router's public address, the WireGuard port kept)", where)
            else:
                hosts = {e.rsplit(":", 1)[0] for e in seen.values()}
                ports = {e.rsplit(":", 1)[-1] for e in seen.values() if e}
                self.check(nat == "symmetric" and reflected == [] and hosts == {public} and
                           len(ports) == len(self.lighthouses),
                           f"{n} (symmetric): NAT class symmetric; nothing reflected announced (mappings are per "
                           f"destination); the lighthouses see it at {public}, one port each", where)

    def end(self, a, b):
        p = self.peers(a).get(b)
        if p is None:
            return False, f"{a} has no peer {b}"
        age = int(p.get("handshake_age_sec", -1))
        ok = p.get("path") in ("direct", "roamed") and 0 <= age < RECENT_SEC
        return ok, (f"{a}: {p.get('path')} at {p.get('endpoint') or '-'} ({p.get('path_reason')}), handshake "
                    f"{'never' if age < 0 else str(age) + ' s ago'}")

    def connected(self):
        for a, b in self.pairs():
            if self.blocked(a, b):
                continue
            ok_a, da = self.end(a, b)
            ok_b, db = self.end(b, a)
            self.check(ok_a and ok_b, f"{self.cell_of(a, b)} {a}-{b}: direct on both ends", f"{da}; {db}")
        for n in self.nodes:  # each node's gossip path
            for lh in self.lighthouses:
                ok, d = self.end(n, lh)
                self.check(ok, f"{n}-{lh}: the lighthouse is reached", d)

    def first_handshakes(self):
        by_if = {s["if"]: name for name, s in self.sites.items()}
        wg_name = {}
        for name in self.sites:
            for p in self.load(name, "peers").get("peers", []):
                if p.get("name"):
                    wg_name[p["wg_key"]] = p["name"]
        first = {}
        try:
            with open(self.handshakes) as f:
                lines = f.read().split("\n")
        except OSError:
            lines = []
        for line in lines:
            parts = line.split()
            if len(parts) != 3 or parts[0] not in by_if:
                continue
            pair = frozenset([by_if[parts[0]], wg_name.get(parts[1], parts[1])])
            first[pair] = min(first.get(pair, float("inf")), float(parts[2]))
        return first

    def blocked_check(self):
        first = self.first_handshakes()
        for a, b in self.pairs():
            if not self.blocked(a, b):
                continue
            pa, pb = self.peers(a).get(b, {}), self.peers(b).get(a, {})
            ages = [int(p.get("handshake_age_sec", -2)) for p in (pa, pb)]
            watched = first.get(frozenset([a, b]))
            self.check(ages == [-1, -1] and watched is None,
                       f"{self.cell_of(a, b)} {a}-{b}: no handshake (no direct path; relayed in the relay issue)",
                       f"{a}: {pa.get('path')} ({pa.get('path_reason')}), candidates {pa.get('candidates')}; "
                       f"{b}: {pb.get('path')} ({pb.get('path_reason')}), candidates {pb.get('candidates')}"
                       + (f"; watcher saw a handshake at {watched:.1f} s" if watched is not None else ""))

    def figures(self):
        first = self.first_handshakes()
        by_cell = {}
        for a, b in self.pairs():
            by_cell.setdefault(self.cell_of(a, b), []).append(first.get(frozenset([a, b])))
        def via_lighthouse(n):  # when a node first had a handshake with a lighthouse
            ts = [first.get(frozenset([n, lh])) for lh in self.lighthouses]
            ts = [t for t in ts if t is not None]
            return min(ts) if ts else None

        for cell, a, b in self.cells:
            t = first.get(frozenset([a, b]))
            la, lb = via_lighthouse(a), via_lighthouse(b)
            since = f", {t - max(la, lb):.1f} s after both reached a lighthouse" if None not in (t, la, lb) else ""
            all_t = [x for x in by_cell.get(cell, []) if x is not None]
            rest = f" (all {len(by_cell[cell])} pairs of the cell: " + \
                (f"{min(all_t):.1f}-{max(all_t):.1f} s" if all_t else "none") + \
                (f", {len(by_cell[cell]) - len(all_t)} never" if len(all_t) < len(by_cell[cell]) else "") + ")"
            if t is None:
                print(f"figure: cell {cell} first handshake none ({a}-{b}, no direct path){rest}")
            else:
                print(f"figure: cell {cell} first handshake {t:.1f} s ({a}-{b}{since}){rest}")
        for lh in self.lighthouses:
            ts = [first.get(frozenset([n, lh])) for n in self.nodes]
            ts = [t for t in ts if t is not None]
            if ts:
                print(f"figure: node-{lh} first handshake {min(ts):.1f}-{max(ts):.1f} s over {len(ts)} nodes")


def main():
    if sys.argv[1] == "--watch":
        watch(float(sys.argv[2]), sys.argv[3], sys.argv[4:])
        return 0
    conf, snap, handshakes, what, *args = sys.argv[1:]
    g = Grid(conf, snap, handshakes)
    g.quiet = "quiet" in args
    if what == "elapsed":
        print(f"{time.time() - float(args[0]):.1f}")
    elif what == "pairs":
        for a, b in g.pairs():
            if g.blocked(a, b) == (args[0] == "blocked"):
                print(a, b)
    elif what == "reflection":
        g.reflection()
    elif what == "connected":
        g.connected()
    elif what == "blocked":
        g.blocked_check()
    elif what == "figures":
        g.figures()
    else:
        print(f"nat_grid.py: unknown check {what}", file=sys.stderr)
        return 2
    return 1 if g.failures else 0


if __name__ == "__main__":
    sys.exit(main())
