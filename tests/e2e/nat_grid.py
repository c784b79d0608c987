"""The checks of nat_grid_test.sh, over snapshots of `peers --json` and
`status --json` of every daemon, and the device watcher it runs.

  nat_grid.py --watch T0 OUT IFACE...   every 0.2 s, each WireGuard device's
      UAPI socket (/var/run/wireguard/IFACE.sock): the first time each peer
      has a handshake, "IFACE WG_KEY SECONDS_SINCE_T0" appended to OUT, and
      the first time the device has sent the peer anything (tx_bytes > 0),
      the same line ending in " tx"
  nat_grid.py CONF SNAP HANDSHAKES CHECK [ARGS]
      elapsed T0             seconds since T0, one decimal
      pairs connectable|blocked
                             the node pairs ("a b" lines) whose modes allow a
                             direct path, or do not
      reflection [quiet]     reflected endpoints and NAT class of every node
      connected [quiet]      every connectable pair: both ends direct or
                             roamed, with a recent handshake
      relayed [quiet]        every blocked pair: both ends relayed through one
                             lighthouse at a proxy address, with a recent
                             handshake (over TCP on a tcponly node's side)
      relay_first MESH_DIR   each symmetric-symmetric pair: relay_first in effect
                             on both ends (their logs: no re-probe on the timer)
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

# The cells where no direct path can exist (docs/endpoints.md, checked with
# plain UDP by nat_test.sh), and any pair with a node whose upstream drops UDP:
# relayed (docs/relay.md).
BLOCKED = {frozenset(["easy", "symmetric"]), frozenset(["symmetric"])}
TCP_ONLY = "tcponly"
RECENT_SEC = 180  # WireGuard's REJECT_AFTER_TIME
# maintainer/wg/path.cc: why a pair is relayed without probing first.
RELAY_FIRST = "no direct path expected: both ends behind symmetric NATs"


def is_proxy(endpoint):  # 127.128.0.0/9, the daemon's relay proxy
    parts = endpoint.rsplit(":", 1)[0].split(".")
    return len(parts) == 4 and parts[0] == "127" and int(parts[1]) >= 128


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
                    elif key == "tx_bytes" and peer and value != "0" and (ifname, peer, "tx") not in seen:
                        seen.add((ifname, peer, "tx"))
                        out.write(f"{ifname} {peer} {now - t0:.2f} tx\n")
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
        modes = frozenset([self.mode(a), self.mode(b)])
        return modes in BLOCKED or TCP_ONLY in modes

    def cell_of(self, a, b):
        order = ["none", "easy", "fullcone", "symmetric", TCP_ONLY]
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
            if mode == TCP_ONLY:
                self.check(reflected == [] and nat == "unknown",
                           f"{n} (UDP blocked): reached only through the relay, nothing reflected, NAT class unknown",
                           where)
            elif mode == "none":
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

    def relayed_end(self, a, b):
        """a's view of b: relayed at a proxy address, recently; the relay "LH udp|tcp"."""
        p = self.peers(a).get(b)
        if p is None:
            return False, "", f"{a} has no peer {b}"
        age = int(p.get("handshake_age_sec", -1))
        relay = p.get("relay", "")
        want = "tcp" if self.mode(a) == TCP_ONLY else "udp"
        ok = (p.get("path") == "relayed" and is_proxy(p.get("endpoint", "")) and 0 <= age < RECENT_SEC and
              relay.endswith(" " + want))
        return ok, relay.split(" ")[0], (f"{a}: {p.get('path')} {relay or '-'} at {p.get('endpoint') or '-'} "
                                         f"({p.get('path_reason')}), handshake "
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
                if self.mode(n) == TCP_ONLY:  # a local channel to the lighthouse's own WireGuard
                    ok, relay, d = self.relayed_end(n, lh)
                    ok = (ok and relay == lh) or self.reprobing(n, lh)
                else:
                    ok, d = self.end(n, lh)
                self.check(ok, f"{n}-{lh}: the lighthouse is reached", d)

    def first_handshakes(self, kind=None):
        """Per node pair, the first time either device had a handshake with
        the other (kind None), or had sent it anything (kind "tx")."""
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
            if len(parts) != (3 if kind is None else 4) or parts[0] not in by_if or parts[3:] not in ([], [kind]):
                continue
            pair = frozenset([by_if[parts[0]], wg_name.get(parts[1], parts[1])])
            first[pair] = min(first.get(pair, float("inf")), float(parts[2]))
        return first

    def reprobing(self, a, b):
        """a is trying b's direct path again from relayed (for 6 s every 30 s and more)."""
        p = self.peers(a).get(b, {})
        return p.get("path") == "probing" and p.get("path_reason", "").startswith("probing the direct path again")

    def relayed(self):
        for a, b in self.pairs():
            if not self.blocked(a, b):
                continue
            ok_a, via_a, da = self.relayed_end(a, b)
            ok_b, via_b, db = self.relayed_end(b, a)
            same = via_a == via_b and via_a in self.lighthouses
            # One end re-probing the direct path is relayed between its tries.
            ok = (ok_a and ok_b and same) or (ok_a and self.reprobing(b, a)) or (ok_b and self.reprobing(a, b))
            self.check(ok, f"{self.cell_of(a, b)} {a}-{b}: relayed through one lighthouse on both ends", f"{da}; {db}")

    def relay_first(self, mesh_dir):
        """Each symmetric-symmetric pair: relay_first came into effect on both ends.

        Whether a pair is relayed without probing at all depends on how soon
        both NAT classes are known (reflections from both lighthouses, then
        the records), a race at a start like this one's: printed, not
        asserted. What is asserted: once relay_first holds, the direct path is
        not re-probed on the 30 s timer, which without it comes 30 s after the
        pair was relayed; the test runs well past that."""
        wg_key = {}
        for name in self.sites:
            for p in self.load(name, "peers").get("peers", []):
                wg_key.setdefault(p.get("name"), p.get("wg_key", ""))
        for a, b in self.pairs():
            if self.mode(a) != "symmetric" or self.mode(b) != "symmetric":
                continue
            for x, y in ((a, b), (b, a)):
                try:
                    with open(os.path.join(mesh_dir, f"{x}.log"), errors="replace") as f:
                        lines = [l for l in f.read().splitlines() if f"path to {wg_key.get(y, '?')[:8]}: " in l]
                except OSError:
                    lines = []
                at_once = any(": relayed " in l and RELAY_FIRST in l for l in lines)
                timer = [l for l in lines if "probing the direct path again after" in l]
                self.check(bool(lines) and not timer,
                           f"{x}-{y}: relay_first in effect (no re-probe on the timer); relayed without probing "
                           f"first: {'yes' if at_once else 'no (the NAT classes came after the 6 s)'}",
                           timer[0] if timer else f"{len(lines)} path lines for {y} in {x}.log")

    def figures(self):
        first = self.first_handshakes()
        first_tx = self.first_handshakes("tx")
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
            how = " relayed" if self.blocked(a, b) else ""
            tx = first_tx.get(frozenset([a, b]))
            if how and t is not None and tx is not None:
                # The figure: from the first packet either WireGuard
                # sent the other to their first (relayed) handshake.
                since += f", {max(0.0, t - tx):.1f} s after the first packet between them"
            if t is None:
                print(f"figure: cell {cell} first{how} handshake none ({a}-{b}){rest}")
            else:
                print(f"figure: cell {cell} first{how} handshake {t:.1f} s ({a}-{b}{since}){rest}")
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
    elif what == "relayed":
        g.relayed()
    elif what == "relay_first":
        g.relay_first(args[0])
    elif what == "figures":
        g.figures()
    else:
        print(f"nat_grid.py: unknown check {what}", file=sys.stderr)
        return 2
    return 1 if g.failures else 0


if __name__ == "__main__":
    sys.exit(main())
