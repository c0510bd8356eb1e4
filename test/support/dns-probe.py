#!/usr/bin/python3
"""
dns-probe.py ADDRESS [NAME]: how a DNS server at ADDRESS:53 treats this host, over UDP and TCP.
Prints one JSON line {"udp": ..., "tcp": ...}, each one of
  "answered"/"connected"  a reply came / the TCP handshake completed
  "refused"               ICMP port unreachable or a TCP reset: rejected, and fast
  "timeout"               nothing within 3 s: dropped (or nobody there)
A connected UDP socket is what turns the ICMP error into ECONNREFUSED on recv().
"""
import json
import socket
import struct
import sys

address = sys.argv[1]
name = sys.argv[2] if len(sys.argv) > 2 else "probe.invalid"
FAMILY = socket.AF_INET6 if ":" in address else socket.AF_INET
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    query += bytes([len(label)]) + label.encode()
query += b"\x00" + struct.pack(">HH", 1, 1)

out = {}
u = socket.socket(FAMILY, socket.SOCK_DGRAM)
u.settimeout(3)
u.connect((address, 53))
u.send(query)
try:
    u.recv(4096)
    out["udp"] = "answered"
except ConnectionRefusedError:
    out["udp"] = "refused"
except socket.timeout:
    out["udp"] = "timeout"

t = socket.socket(FAMILY, socket.SOCK_STREAM)
t.settimeout(3)
try:
    t.connect((address, 53))
    out["tcp"] = "connected"
except ConnectionRefusedError:
    out["tcp"] = "refused"
except socket.timeout:
    out["tcp"] = "timeout"
print(json.dumps(out))
