// A minimal DHCPv6 client for test guests (Debian's busybox has no udhcpc6): Solicit with rapid
// commit, or Solicit → Advertise → Request → Reply, on one interface; prints "LEASE6 ADDRESS" and
// exits 0, or exits 1 naming what went wrong. Run inside the guest's namespace:
//   node dhcp6-client.mjs IFNAME MAC IAID
// The client's DUID is DUID-LL (type 3) of MAC, so the server's lease names the MAC.
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';

const [ifname, mac, iaidText] = process.argv.slice(2);
if (!ifname || !mac || !iaidText) {
  console.error('usage: dhcp6-client.mjs IFNAME MAC IAID');
  process.exit(2);
}
const iaid = Number(iaidText);
const duid = Buffer.from([0, 3, 0, 1, ...mac.split(':').map((b) => parseInt(b, 16))]);

const opt = (code, data = Buffer.alloc(0)) => {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(code, 0);
  h.writeUInt16BE(data.length, 2);
  return Buffer.concat([h, data]);
};
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

function options(buf) {
  const out = [];
  for (let at = 0; at + 4 <= buf.length; ) {
    const code = buf.readUInt16BE(at);
    const len = buf.readUInt16BE(at + 2);
    out.push({ code, data: buf.subarray(at + 4, at + 4 + len) });
    at += 4 + len;
  }
  return out;
}

function message(type, txid, extra) {
  const ia = opt(3, Buffer.concat([u32(iaid), u32(0), u32(0)]));
  return Buffer.concat([Buffer.from([type]), txid, opt(1, duid), ia, opt(8, Buffer.alloc(2)), ...extra]);
}

/** The address in the IA_NA of a reply, or a problem. */
function leased(opts) {
  const ia = opts.find((o) => o.code === 3);
  if (!ia) return { problem: 'no IA_NA in the reply' };
  for (const o of options(ia.data.subarray(12))) {
    if (o.code === 5) {
      const a = o.data.subarray(0, 16);
      const groups = [];
      for (let i = 0; i < 16; i += 2) groups.push(a.readUInt16BE(i).toString(16));
      // the URL parser writes an IPv6 address in its canonical short form
      return { address: new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1) };
    }
    if (o.code === 13) return { problem: `status ${o.data.readUInt16BE(0)}: ${o.data.subarray(2).toString()}` };
  }
  return { problem: 'no address in the IA_NA' };
}

const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true });
const server = `ff02::1:2%${ifname}`;
let txid = randomBytes(3);
let tries = 0;
const send = (buf) => sock.send(buf, 547, server);
const solicit = () => send(message(1, txid, [opt(14)]));

sock.on('message', (buf) => {
  if (buf.length < 4 || !buf.subarray(1, 4).equals(txid)) return;
  const type = buf[0];
  const opts = options(buf.subarray(4));
  if (type === 2) {
    // Advertise: request the same IA from that server
    const serverId = opts.find((o) => o.code === 2);
    if (!serverId) return;
    txid = randomBytes(3);
    send(message(3, txid, [opt(2, serverId.data)]));
  } else if (type === 7) {
    const r = leased(opts);
    if (r.problem) {
      console.error(r.problem);
      process.exit(1);
    }
    console.log(`LEASE6 ${r.address}`);
    process.exit(0);
  }
});
sock.bind(546, '::', () => {
  sock.setMulticastInterface(`::%${ifname}`);
  solicit();
  const timer = setInterval(() => {
    if (++tries >= 10) {
      console.error('no DHCPv6 reply');
      process.exit(1);
    }
    txid = randomBytes(3);
    solicit();
  }, 1000);
  timer.unref?.();
});
