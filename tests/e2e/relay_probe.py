#!/usr/bin/env python3
"""Hostile datagrams for a lighthouse's UDP relay port (tests/e2e/relay_test.sh).

  relay_probe.py unpadded HOST PORT       a HANDSHAKE datagram of 70 bytes (a
                                          whole conn_auth frame, unpadded) from
                                          a new source; exit 0 if nothing comes
                                          back within 2 s (no amplification)
  relay_probe.py spoof HOST PORT SESSION  a DATA frame with session id SESSION
                                          (hex) and channel 1, from this host
                                          (not the session's bound address)
"""
import socket
import struct
import sys

kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
if kind == "unpadded":
    body = struct.pack("!H", 60) + bytes(60)
    s.sendto(struct.pack("!BBHI", 3, 0, 0, 0) + body, (host, port))
    try:
        data, _ = s.recvfrom(65535)
        print(f"   unpadded first datagram: {len(data)} bytes came back")
        sys.exit(1)
    except socket.timeout:
        print("   unpadded first datagram (70 bytes): no answer in 2 s")
        sys.exit(0)
elif kind == "spoof":
    session = int(sys.argv[4], 16)
    # A WireGuard-looking payload (type 4, transport data): it must go nowhere.
    s.sendto(struct.pack("!BBHI", 1, 0, 1, session) + b"\x04\x00\x00\x00" + bytes(60), (host, port))
    sys.exit(0)
sys.exit(2)
