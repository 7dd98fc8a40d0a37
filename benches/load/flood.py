#!/usr/bin/env python3
"""Floods a SIP address from one loopback source for a bounded time: half
junk datagrams, half unauthenticated INVITEs (each a new transaction).

usage: flood.py HOST:PORT PPS SECONDS [SOURCE_IP]   (loopback only)
"""
import socket
import sys
import time

target, pps, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
src = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.5"
host, port = target.rsplit(":", 1)
assert host.startswith("127."), "loopback only"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
lport = s.getsockname()[1]
junk = b"\x16\x03\x01 not sip at all " * 8
tmpl = (
    "INVITE sip:4420712345{n:04d}@{host} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {src}:{lport};branch=z9hG4bKfl{n}\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:flood@{src}>;tag=f{n}\r\n"
    "To: <sip:4420712345{n:04d}@{host}>\r\nCall-ID: flood-{n}@{src}\r\n"
    "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)
sent, n, start = 0, 0, time.monotonic()
end = start + secs
batch = max(1, pps // 100)
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - start) * pps)
    while sent < due:
        for _ in range(batch):
            n += 1
            msg = junk if n % 2 else tmpl.format(n=n % 10000 + n // 10000 * 10000, host=host, src=src, lport=lport).encode()
            try:
                s.sendto(msg, (host, int(port)))
            except OSError:
                pass
            sent += 1
    time.sleep(0.002)
print(f"flood: {sent} packets in {time.monotonic() - start:.1f} s from {src}")
