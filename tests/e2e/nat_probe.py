#!/usr/bin/env python3
"""UDP probes for the NAT topology self-test (tests/e2e/nat_test.sh).

An agent runs inside a namespace and owns one UDP socket (the "internal
socket" whose NAT mapping the test studies), so every probe from a node
leaves from the same address:port. The test drives it over a Unix socket
(a filesystem path, so the client needs no namespace):

  nat_probe.py agent CTL_PATH UDP_PORT [TCP_PORT]
  nat_probe.py ctl CTL_PATH COMMAND ARGS...

What the agent's UDP socket does on its own, whatever the test asks:
  "ask"          -> replies "seen IP:PORT" (the source it observed): a
                    STUN-like reflector
  "hello TAG"    -> replies "reply TAG" to the source, as WireGuard answers
                    a handshake from wherever it came
  anything       -> kept in a log, with its source, for `heard`
With TCP_PORT, it also accepts TCP there and writes "seen IP:PORT\\n".

Commands (one line; the answer is one line, "ok ..." or "no ..."; the
client exits 0 for ok and 1 for no):
  ask IP:PORT TIMEOUT         the mapping IP:PORT reports for this socket
  send IP:PORT PAYLOAD [FROM_PORT]
                              three datagrams, 20 ms apart, from the agent's
                              socket or from a fresh one on FROM_PORT
  heard PAYLOAD TIMEOUT       a datagram with PAYLOAD arrived (now or before)
  punch IP:PORT TAG PEER_TAG DURATION
                              "hello TAG" to IP:PORT every 50 ms; once a
                              "hello PEER_TAG" has come from anywhere, send
                              there instead (WireGuard's roaming); ok when
                              "reply TAG" arrives, with its source
  tcp IP:PORT TIMEOUT         a TCP connection from this namespace works
"""
import os
import socket
import sys
import threading
import time


def parse_ep(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def fmt_ep(ep):
    return "%s:%d" % ep


class Agent:
    def __init__(self, udp_port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", udp_port))
        self.cond = threading.Condition()
        self.log = []  # (source, payload), in arrival order

    def receive_loop(self):
        while True:
            data, src = self.sock.recvfrom(2048)
            text = data.decode(errors="replace")
            if text == "ask":
                self.sock.sendto(("seen " + fmt_ep(src)).encode(), src)
            elif text.startswith("hello "):
                self.sock.sendto(("reply " + text[6:]).encode(), src)
            with self.cond:
                self.log.append((src, text))
                self.cond.notify_all()

    def wait_for(self, match, timeout, start=0):
        """First log entry at index >= start that match() accepts, or None."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.log):
                    if match(*self.log[i]):
                        return self.log[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.log)

    def cmd_ask(self, ep, timeout):
        ep, timeout = parse_ep(ep), float(timeout)
        start = self.mark()
        deadline = time.monotonic() + timeout
        # A few tries: the first datagram may wait for ARP on a fresh link.
        while time.monotonic() < deadline:
            self.sock.sendto(b"ask", ep)
            got = self.wait_for(lambda s, t: s == ep and t.startswith("seen "),
                                min(0.2, max(0.0, deadline - time.monotonic())), start)
            if got:
                return "ok " + got[1][5:]
        return "no reply from " + fmt_ep(ep)

    def cmd_send(self, ep, payload, from_port=None):
        ep, sock = parse_ep(ep), self.sock
        if from_port:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("0.0.0.0", int(from_port)))
        for i in range(3):
            if i:
                time.sleep(0.02)
            sock.sendto(payload.encode(), ep)
        if from_port:
            sock.close()
        return "ok sent"

    def cmd_heard(self, payload, timeout):
        got = self.wait_for(lambda s, t: t == payload, float(timeout))
        return "ok from " + fmt_ep(got[0]) if got else "no " + payload

    def cmd_punch(self, ep, tag, peer_tag, duration):
        peer, deadline = parse_ep(ep), time.monotonic() + float(duration)
        hello, reply, peer_hello = "hello " + tag, "reply " + tag, "hello " + peer_tag
        with self.cond:
            start = len(self.log)
            while True:
                for src, text in self.log[start:]:
                    if text == reply:
                        return "ok direct " + fmt_ep(src)
                # Roam to where the peer's latest hello came from, even one
                # that arrived before this command (WireGuard would have).
                for src, text in reversed(self.log):
                    if text == peer_hello:
                        peer = src
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    return "no reply to %s (last sent to %s)" % (tag, fmt_ep(peer))
                self.sock.sendto(hello.encode(), peer)
                self.cond.wait(min(0.05, left))

    def cmd_tcp(self, ep, timeout):
        try:
            with socket.create_connection(parse_ep(ep), timeout=float(timeout)) as c:
                return "ok " + c.recv(100).decode().strip()
        except OSError as e:
            return "no tcp to %s: %s" % (ep, e)

    def serve_ctl(self, conn):
        with conn:
            words = conn.makefile().readline().split()
            try:
                answer = getattr(self, "cmd_" + words[0])(*words[1:])
            except Exception as e:  # a bad command answers, it does not kill the agent
                answer = "no error: %r" % (e,)
            conn.sendall((answer + "\n").encode())


def tcp_loop(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    while True:
        conn, src = srv.accept()
        with conn:
            conn.sendall(("seen " + fmt_ep(src) + "\n").encode())


def agent(ctl_path, udp_port, tcp_port=None):
    a = Agent(int(udp_port))
    threading.Thread(target=a.receive_loop, daemon=True).start()
    if tcp_port:
        threading.Thread(target=tcp_loop, args=(int(tcp_port),), daemon=True).start()
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = ctl_path + ".tmp"
    ctl.bind(tmp)
    ctl.listen(16)
    os.rename(tmp, ctl_path)  # the path appears only once the agent answers
    while True:
        conn, _ = ctl.accept()
        threading.Thread(target=a.serve_ctl, args=(conn,), daemon=True).start()


def ctl(ctl_path, *words):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(ctl_path)
    c.sendall((" ".join(words) + "\n").encode())
    answer = c.makefile().readline().strip()
    print(answer)
    return 0 if answer.startswith("ok") else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "agent":
        agent(*sys.argv[2:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "ctl":
        sys.exit(ctl(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
