"""Waits until a member's WireGuard peer is gone from every given wireguard-go
(read through their UAPI sockets every ~5 ms) and prints the milliseconds
since START (Unix seconds), or -1 after 10 s.

    peer_gone.py START IDENTITY_KEY_BASE64 SOCKET...

The WireGuard key is the X25519 form of the Ed25519 identity key:
u = (1 + y) / (1 - y) mod 2^255 - 19 (docs/identity.md).
"""
import base64
import socket
import sys
import time

P = 2**255 - 19


def wg_key_hex(identity_b64):
    y = int.from_bytes(base64.b64decode(identity_b64), "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little").hex()


def has_peer(path, key_hex):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"get=1\n\n")
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    s.close()
    return ("public_key=" + key_hex + "\n").encode() in data


def main():
    start, key_hex, sockets = float(sys.argv[1]), wg_key_hex(sys.argv[2]), sys.argv[3:]
    deadline = time.time() + 10
    while time.time() < deadline:
        if not any(has_peer(p, key_hex) for p in sockets):
            print(int((time.time() - start) * 1000))
            return
        time.sleep(0.005)
    print(-1)


main()
