#!/usr/bin/python3
"""Clients that make vnetd's replies back up: they ask and never read.

    hostile-clients.py SPEC_JSON

SPEC: {"socket": path, "bridge": "virbr0", "connections": 6}

Run as an unprivileged user. First it learns how many ping replies fit in vnetd's socket
buffer: one connection is fed pings one at a time until a reply stops arriving (that
connection is left stuck). Then `connections` connections each get that many pings less two
in one write, so that vnetd's buffer towards them is all but full, and then tap requests for
`bridge`, written as fast as vnetd takes them, never reading a byte: each tap reply, with its
fd, finds the buffer full. A connection vnetd drops is opened again and treated the same.

Prints {"ready": {"pings": K, "connections": N}} once every connection has its pings and its
first tap requests written, {"dropped": n} whenever vnetd drops one, keeps at it until stdin
closes, and prints {"summary": {"connections": opened, "dropped": dropped by vnetd}}.
"""
import array, fcntl, json, socket, struct, sys, termios, threading, time

spec = json.loads(sys.argv[1])
stop = threading.Event()
lock = threading.Lock()
counts = {'connections': 0, 'dropped': 0}


def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack('>I', len(body)) + body


PING = frame({'id': 1, 'method': 'ping'})
TAP = frame({'id': 2, 'method': 'tap', 'params': {'bridge': spec['bridge']}})


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(spec['socket'])
    with lock:
        counts['connections'] += 1
    return s


def unread(s):
    buf = array.array('i', [0])
    fcntl.ioctl(s.fileno(), termios.FIONREAD, buf)
    return buf[0]


def calibrate():
    """Pings, one at a time, until one's reply does not come: the number whose replies did."""
    s = connect()
    n = 0
    while True:
        before = unread(s)
        s.sendall(PING)
        deadline = time.monotonic() + 1.0
        while unread(s) == before:
            if time.monotonic() > deadline:
                return s, n
            time.sleep(0.001)
        n += 1


def attack(pings, ready):
    first = True
    while not stop.is_set():
        s = connect()
        try:
            s.sendall(PING * pings)
            s.sendall(TAP * 16)
            if first:
                ready.release()
                first = False
            # blocks while vnetd does not read; fails once vnetd drops the connection
            while not stop.is_set():
                s.sendall(TAP * 16)
        except OSError:
            with lock:
                counts['dropped'] += 1
                print(json.dumps({'dropped': counts['dropped']}), flush=True)
        finally:
            s.close()


def main():
    stuck, k = calibrate()
    n = spec.get('connections', 6)
    ready = threading.Semaphore(0)
    workers = [threading.Thread(target=attack, args=(max(k - 2, 0), ready), daemon=True) for _ in range(n)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.acquire()
    print(json.dumps({'ready': {'pings': k, 'connections': n}}), flush=True)
    sys.stdin.read()
    stop.set()
    stuck.close()
    with lock:
        print(json.dumps({'summary': dict(counts)}), flush=True)


main()
