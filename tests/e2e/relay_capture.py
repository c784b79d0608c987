#!/usr/bin/env python3
"""Capture on a lighthouse what its relay ports carry, and check it holds no
inner plaintext (tests/e2e/relay_test.sh).

  relay_capture.py OUT PORT...      every IPv4/IPv6 UDP or TCP packet to or
                                    from PORT, on every interface of this
                                    namespace (AF_PACKET), its transport
                                    payload appended to OUT, until killed
  relay_capture.py --check OUT HEX  exit 1 if the bytes HEX appear in OUT (or
                                    OUT holds under 20 packets: a capture that
                                    saw nothing proves nothing)
"""
import os
import signal
import socket
import struct
import sys


def transport(frame):
    """(proto, sport, dport, payload) of an Ethernet frame, or None."""
    if len(frame) < 14:
        return None
    eth = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if eth == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 15) * 4
        proto, rest = ip[9], ip[ihl:]
    elif eth == 0x86DD and len(ip) >= 40:
        proto, rest = ip[6], ip[40:]
    else:
        return None
    if proto == 17 and len(rest) >= 8:
        sport, dport = struct.unpack("!HH", rest[:4])
        return proto, sport, dport, rest[8:]
    if proto == 6 and len(rest) >= 20:
        sport, dport = struct.unpack("!HH", rest[:4])
        off = (rest[12] >> 4) * 4
        return proto, sport, dport, rest[off:]
    return None


def capture(out, ports):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with open(out, "ab") as f:
        while True:
            frame, addr = s.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING:
                continue  # each packet once (as it arrives)
            t = transport(frame)
            if t and (t[1] in ports or t[2] in ports) and t[3]:
                f.write(struct.pack("!I", len(t[3])) + t[3])
                f.flush()


def check(out, marker):
    data = open(out, "rb").read() if os.path.exists(out) else b""
    packets, i = 0, 0
    while i + 4 <= len(data):
        n = struct.unpack("!I", data[i:i + 4])[0]
        i += 4 + n
        packets += 1
    found = bytes.fromhex(marker) in data
    print(f"   capture on the lighthouse: {packets} relay packets, {len(data)} bytes; "
          f"inner ping payload {'FOUND' if found else 'not found'}")
    return 0 if packets >= 20 and not found else 1


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    try:
        capture(sys.argv[1], {int(p) for p in sys.argv[2:]})
    except KeyboardInterrupt:
        pass
