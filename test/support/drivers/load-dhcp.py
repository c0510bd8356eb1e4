#!/usr/bin/python3
"""A guest that keeps changing its MAC and asking for a lease each time.

    load-dhcp.py SPEC_JSON

SPEC: {"iface": "g0", "macs": ["52:54:00:..", ...], "batch": 50, "waitMs": 400,
       "leaseFile": path (optional, sampled every 10 ms)}

Runs in the guest's namespace as root. Sends, from an AF_PACKET socket on IFACE, whole
Ethernet frames whose source MAC is the client's MAC (as a guest that changed its MAC
with `ip link set address` would): DHCPDISCOVER (broadcast flag set), then DHCPREQUEST
for the offered address, `batch` clients at a time. A client with no answer within
waitMs of the last packet seen is recorded as "none".

Prints one JSON line: {"results": {mac: "ack IP" | "nak" | "none"}, "acks": n, "naks": n,
"none": n, "maxLeaseLines": n (most lines the lease file held at any sample), "seconds": s}.
"""
import json, os, random, select, socket, struct, sys, threading, time

ETH_P_IP = 0x0800
DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(':'))


def ip_checksum(header):
    s = sum(struct.unpack('!%dH' % (len(header) // 2), header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(mac, xid, msg_type, hostname, requested=None, server=None):
    opts = bytes([53, 1, msg_type])
    opts += bytes([12, len(hostname)]) + hostname.encode()
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server:
        opts += bytes([54, 4]) + socket.inet_aton(server)
    opts += bytes([55, 3, 1, 3, 6, 255])
    bootp = struct.pack('!BBBBIHH4s4s4s4s16s64s128s', 1, 1, 6, 0, xid, 0, 0x8000, b'\0' * 4, b'\0' * 4, b'\0' * 4,
                        b'\0' * 4, mac_bytes(mac) + b'\0' * 10, b'\0' * 64, b'\0' * 128)
    payload = bootp + b'\x63\x82\x53\x63' + opts
    payload += b'\0' * max(0, 300 - len(payload))
    udp = struct.pack('!HHHH', 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), random.getrandbits(16), 0, 64, 17, 0,
                     b'\0' * 4, b'\xff' * 4)
    ip = ip[:10] + struct.pack('!H', ip_checksum(ip)) + ip[12:]
    return b'\xff' * 6 + mac_bytes(mac) + struct.pack('!H', ETH_P_IP) + ip + udp


def parse_reply(data):
    """(xid, type, yiaddr, server id) of a DHCP reply to port 68, else None."""
    if len(data) < 14 + 20 + 8 + 240 or struct.unpack('!H', data[12:14])[0] != ETH_P_IP:
        return None
    ihl = (data[14] & 0x0F) * 4
    if data[14 + 9] != 17:
        return None
    u = 14 + ihl
    if struct.unpack('!H', data[u + 2:u + 4])[0] != 68:
        return None
    b = u + 8
    if data[b] != 2:
        return None
    xid = struct.unpack('!I', data[b + 4:b + 8])[0]
    yiaddr = socket.inet_ntoa(data[b + 16:b + 20])
    i = b + 240
    msg_type = server = None
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, n = data[i], data[i + 1]
        val = data[i + 2:i + 2 + n]
        if code == 53:
            msg_type = val[0]
        elif code == 54:
            server = socket.inet_ntoa(val)
        i += 2 + n
    return xid, msg_type, yiaddr, server


class LeaseSampler(threading.Thread):
    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.max, self.stop = path, 0, threading.Event()

    def sample(self):
        try:
            with open(self.path) as f:
                self.max = max(self.max, sum(1 for line in f if line.strip()))
        except OSError:
            pass

    def run(self):
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.01)


def main():
    spec = json.loads(sys.argv[1])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.bind((spec['iface'], ETH_P_IP))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sampler = LeaseSampler(spec['leaseFile']) if spec.get('leaseFile') else None
    if sampler:
        sampler.start()
    wait = spec.get('waitMs', 400) / 1000
    results = {}
    t0 = time.monotonic()
    macs = spec['macs']
    batch = spec.get('batch', 50)
    for start in range(0, len(macs), batch):
        pending = {}
        for k, mac in enumerate(macs[start:start + batch]):
            xid = random.getrandbits(32)
            pending[xid] = mac
            results[mac] = 'none'
            sock.send(frame(mac, xid, DISCOVER, 'g%d' % (start + k)))
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            r, _, _ = select.select([sock], [], [], max(0, deadline - time.monotonic()))
            if not r:
                break
            parsed = parse_reply(sock.recv(4096))
            if not parsed or parsed[0] not in pending:
                continue
            xid, msg_type, yiaddr, server = parsed
            mac = pending[xid]
            deadline = time.monotonic() + wait
            if msg_type == OFFER and results[mac] == 'none':
                results[mac] = 'offer ' + yiaddr
                sock.send(frame(mac, xid, REQUEST, 'g', requested=yiaddr, server=server))
            elif msg_type == ACK:
                results[mac] = 'ack ' + yiaddr
                del pending[xid]
            elif msg_type == NAK:
                results[mac] = 'nak'
                del pending[xid]
        if sampler:
            sampler.sample()
    if sampler:
        time.sleep(0.05)
        sampler.sample()
        sampler.stop.set()
    values = list(results.values())
    print(json.dumps({
        'results': results,
        'acks': sum(1 for v in values if v.startswith('ack')),
        'naks': values.count('nak'),
        'offersOnly': sum(1 for v in values if v.startswith('offer')),
        'none': values.count('none'),
        'maxLeaseLines': sampler.max if sampler else None,
        'seconds': round(time.monotonic() - t0, 2),
    }), flush=True)


main()
