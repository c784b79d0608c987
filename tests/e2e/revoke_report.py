"""The figures of tests/e2e/bench_revoke.sh: one trial's record from
peer_watch's output and the daemons' logs, and the summary over trials.

    revoke_report.py wgkey IDENTITY_KEY_BASE64       its WireGuard key, hex
    revoke_report.py pids IFNAME...                  pids of `wireguard-go -f IFNAME`, comma-separated
    revoke_report.py trial N WATCH_OUT ROOT JSONL HOST=LOG:OFFSET...
        waits (up to 10 s) until every HOST's log, from OFFSET on, has the
        trial's lines, prints one line and appends the record to JSONL
    revoke_report.py packets JSONL N                 adds the trial's overlay packet count to its record
    revoke_report.py idle WATCH_OUT                  the idle mesh's CPU (peer_watch -t N ... -- true)
    revoke_report.py summary JSONL                   min / median / max over the trials

Log timestamps are spdlog's default, local time with milliseconds, truncated:
every log-based figure is up to 1 ms early. peer_watch's times are
CLOCK_REALTIME in ns, the clock spdlog reads, so both sets of figures share t0.
"""
import base64
import json
import os
import re
import statistics
import sys
import time
from datetime import datetime

# ---------------------------------------------------------------------------
# Log-line patterns. The daemon's logging is being rewritten: adjust these
# (and only these) when its wording changes. Each is searched (re.search) in
# one log line; the time is taken from TIMESTAMP at the start of that line.
#
# TIMESTAMP       spdlog's "[2026-12-01 09:22:33.123] [info] ..." prefix; group 1
#                 parsed with TIMESTAMP_FORMAT (%f takes 3 to 6 digits, so a
#                 sub-ms pattern needs no change here).
# ROOT_APPLIED    the root (the node the CLI talks to) has stored and applied the
#                 admin command's op and starts gossiping it.
# NODE_APPLIED    any other node has applied the op received by gossip. Also
#                 accepted on the root, should the new logging print it there.
# WG_REMOVED      a node has set its WireGuard configuration (logged after the
#                 set returns); group "removed" = peers removed, the trial's
#                 line is the node's first with removed >= 1.
# ---------------------------------------------------------------------------
TIMESTAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
ROOT_APPLIED = re.compile(r"admin: \S+ .* is now revoked")
NODE_APPLIED = re.compile(r"applied \d+ op\(s\) from gossip")
WG_REMOVED = re.compile(r"WireGuard \S+: \d+ peer\(s\) changed \((?P<removed>\d+) removed\)")
# ---------------------------------------------------------------------------

P = 2**255 - 19


def wg_key_hex(identity_b64):
    """The X25519 form of an Ed25519 identity key: u = (1 + y) / (1 - y) (docs/identity.md)."""
    y = int.from_bytes(base64.b64decode(identity_b64), "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little").hex()


def wireguard_go_pids(ifnames):
    want, found = set(ifnames), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"wireguard-go" and argv[-1].decode() in want:
            found.append(d)
    return ",".join(found)


def line_time(line):
    m = TIMESTAMP.search(line)
    return datetime.strptime(m.group(1), TIMESTAMP_FORMAT).timestamp() if m else None


def scan_log(path, offset, is_root):
    """(applied, wg_removed) Unix times in this log from offset on; None when not there yet."""
    applied = removed = None
    with open(path, errors="replace") as f:
        f.seek(offset)
        for line in f:
            if applied is None and (NODE_APPLIED.search(line) or (is_root and ROOT_APPLIED.search(line))):
                applied = line_time(line)
            m = WG_REMOVED.search(line)
            if removed is None and m and int(m.group("removed")) >= 1:
                removed = line_time(line)
    return applied, removed


def read_watch(path):
    w = {"gone": []}
    with open(path) as f:
        for line in f:
            f_ = line.split()
            if f_[0] == "t0":
                w["t0"] = int(f_[1]) / 1e9
            elif f_[0] == "cli":
                w["cli_end"], w["cli_status"] = int(f_[1]) / 1e9, int(f_[2])
            elif f_[0] == "gone":
                idx, last_present, gone_send, gone_recv, polls, mean_get, max_get = map(int, f_[1:])
                w["gone"].append({"last_present": last_present / 1e9, "gone_send": gone_send / 1e9,
                                  "gone_recv": gone_recv / 1e9, "polls": polls,
                                  "mean_get_ms": mean_get / 1e6, "max_get_ms": max_get / 1e6})
            elif f_[0] == "window":
                w["window_end"] = int(f_[1]) / 1e9
            elif f_[0] == "cpu":
                w.setdefault("cpu_ms", {})[f_[1]] = int(f_[2]) / 1e6
            elif f_[0] == "runqueue":
                w.setdefault("runqueue_ms", {})[f_[1]] = int(f_[2]) / 1e6
            elif f_[0] == "sys":
                w.setdefault("sys", {})[f_[1]] = int(f_[2])
    return w


def trial(n, watch_out, root, jsonl, hosts):
    w = read_watch(watch_out)
    if w["cli_status"] != 0:
        sys.exit(f"trial {n}: fortmesh revoke exited with {w['cli_status']}")
    t0 = w["t0"]
    ms = lambda t: (t - t0) * 1000
    logs = []
    for spec in hosts:
        name, rest = spec.split("=", 1)
        path, offset = rest.rsplit(":", 1)
        logs.append((name, path, int(offset)))
    deadline = time.time() + 10
    while True:
        seen = {name: scan_log(path, off, name == root) for name, path, off in logs}
        missing = [name for name, (a, r) in seen.items() if a is None or r is None]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.05)
    if missing:
        sys.exit(f"trial {n}: no applied/WireGuard-removal line after 10 s on {', '.join(missing)} "
                 "(see the patterns at the top of revoke_report.py)")
    rec = {"trial": n, "cli_ms": ms(w["cli_end"]), "cli_status": w["cli_status"]}
    root_applied = seen[root][0]
    last_applied = max(a for a, _ in seen.values())
    last_wg = max(r for _, r in seen.values())
    rec["log"] = {"control": ms(root_applied), "gossip": (last_applied - root_applied) * 1000,
                  "wireguard": (last_wg - last_applied) * 1000, "total": ms(last_wg)}
    rec["log_per_node"] = {name: {"applied": ms(a), "wg_removed": ms(r)} for name, (a, r) in seen.items()}
    if w["gone"]:
        g = w["gone"]
        names = [name for name, _, _ in logs]
        rec["outside"] = {
            "total": ms(max(x["gone_recv"] for x in g)),
            # the last removal happened after this (the latest "still there" poll)
            "lower": ms(max(max(x["last_present"], t0) for x in g)),
            "mean_get_ms": statistics.mean(x["mean_get_ms"] for x in g),
            "max_get_ms": max(x["max_get_ms"] for x in g),
            "polls": sum(x["polls"] for x in g),
            # how long after a node's own log line its watcher saw the peer gone
            "lag_after_log_ms": max(ms(x["gone_recv"]) - rec["log_per_node"][nm]["wg_removed"]
                                    for x, nm in zip(g, names)),
        }
    # CPU in the window peer_watch measured over, in cores (of 2)
    win = ms(w["window_end"])
    cores = {k: v / win for k, v in w["cpu_ms"].items()}
    cores["all processes"] = w["sys"]["busy"] / 1e6 / win
    cores["others (not this bench)"] = max(0.0, cores["all processes"] - sum(w["cpu_ms"].values()) / win)
    rec["cpu"] = {"window_ms": win, "cores": cores, "runqueue_ms": w["runqueue_ms"],
                  "psi_some": w["sys"]["psi_some"] / 1e3 / win if "psi_some" in w["sys"] else None}
    with open(jsonl, "a") as f:
        f.write(json.dumps(rec) + "\n")
    lg = rec["log"]
    out = f"trial {n:2d}: "
    if "outside" in rec:
        o = rec["outside"]
        out += (f"outside {o['total']:6.1f} ms (last removal after {o['lower']:.1f}; get {o['mean_get_ms']:.2f} ms avg, "
                f"seen {o['lag_after_log_ms']:.1f} ms after the log) | ")
    out += (f"CLI {rec['cli_ms']:5.1f} ms | logs: control {lg['control']:4.0f} + gossip {lg['gossip']:3.0f} + "
            f"WireGuard {lg['wireguard']:3.0f} = {lg['total']:4.0f} ms")
    print(out)


def summary(jsonl):
    recs = [json.loads(l) for l in open(jsonl)]
    rows = [("CLI wall time (fortmesh revoke)", [r["cli_ms"] for r in recs])]
    if all("outside" in r for r in recs):
        rows[:0] = [
            ("outside: last peer gone (16 parallel watchers)", [r["outside"]["total"] for r in recs]),
            ("  ... lower bound (last poll still listing it)", [r["outside"]["lower"] for r in recs]),
            ("  watcher saw it after the node's log line", [r["outside"]["lag_after_log_ms"] for r in recs]),
            ("  UAPI get=1 latency, mean over watchers", [r["outside"]["mean_get_ms"] for r in recs]),
        ]
    rows += [
        ("logs: CLI start -> root applied (CLI + control)", [r["log"]["control"] for r in recs]),
        ("logs: root applied -> last node applied (gossip)", [r["log"]["gossip"] for r in recs]),
        ("logs: last applied -> last WireGuard removal", [r["log"]["wireguard"] for r in recs]),
        ("logs: total, CLI start -> last WireGuard removal", [r["log"]["total"] for r in recs]),
    ]
    print(f"{len(recs)} trials, ms: {'min':>7} {'median':>7} {'max':>7}")
    for label, v in rows:
        print(f"  {label:<56} {min(v):7.1f} {statistics.median(v):7.1f} {max(v):7.1f}")
    if all("overlay_packets" in r for r in recs):
        v = [r["overlay_packets"] for r in recs]
        print(f"  {'overlay packets sent, all 16 nodes, per trial':<56} {min(v):7d} {statistics.median(v):7.0f} {max(v):7d}")
    for k in recs[0]["cpu"]["runqueue_ms"]:
        v = [r["cpu"]["runqueue_ms"][k] for r in recs]
        label = {"cli": "the CLI", "daemons": "the 16 daemons", "wireguard-go": "the 16 wireguard-go"}.get(k, k)
        print(f"  {'time runnable, waiting for a CPU: ' + label:<56} {min(v):7.1f} {statistics.median(v):7.1f} {max(v):7.1f}")
    cores = {k: statistics.mean(r["cpu"]["cores"][k] for r in recs) for k in recs[0]["cpu"]["cores"]}
    print(f"  CPU from t0 until the last removal was seen (or {statistics.mean(r['cpu']['window_ms'] for r in recs):.0f} ms), "
          "mean over trials, in cores (of 2):\n    " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()))
    psi = [r["cpu"]["psi_some"] for r in recs if r["cpu"]["psi_some"] is not None]
    if psi:
        print(f"    some task was waiting for a CPU {100 * statistics.mean(psi):.0f} % of that time (/proc/pressure/cpu)")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "wgkey":
        print(wg_key_hex(args[0]))
    elif cmd == "pids":
        print(wireguard_go_pids(args))
    elif cmd == "trial":
        trial(int(args[0]), args[1], args[2], args[3], args[4:])
    elif cmd == "packets":
        recs = [json.loads(l) for l in open(args[0])]
        recs[-1]["overlay_packets"] = int(args[1])
        with open(args[0], "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
    elif cmd == "idle":
        w = read_watch(args[0])
        win = (w["window_end"] - w["t0"]) * 1000
        print(f"idle mesh over {win:.0f} ms, in cores (of 2): " +
              ", ".join(f"{k} {v / win:.2f}" for k, v in w["cpu_ms"].items() if k in ("wireguard-go", "daemons")) +
              f", all processes {w['sys']['busy'] / 1e6 / win:.2f}")
    elif cmd == "summary":
        summary(args[0])
    else:
        sys.exit(__doc__)


main()
