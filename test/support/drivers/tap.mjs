// Opens a tap and puts it on a bridge, as vnetd does for a caller.
// Usage: node tap.mjs '{"bridge":"br0","vnetHdr":true,"ownerUid":1000,"handoffFd":3,"lookUp":true}'
// Prints one JSON line {tap, link}. With handoffFd, sends the tap fd over that
// unix socket (1 byte 0x00 + SCM_RIGHTS, like qemu-bridge-helper) and closes its
// own copy. Otherwise keeps the fd until a line arrives on stdin, then closes it
// and prints "closed". Exits when stdin ends.
import { Rtnl } from '../../../dist/netlink/rtnl.js';
import { attachTap, openTap } from '../../../dist/netlink/tun.js';
import { closeFd, sendFd } from '../../../dist/sys/libc.js';

const opts = JSON.parse(process.argv[2] ?? '{}');
const rtnl = new Rtnl();
try {
  // lookUp false: no check of our own, so a missing bridge reaches attachTap itself
  if (opts.lookUp !== false && !(await rtnl.getLinkByName(opts.bridge))) throw new Error(`driver: no bridge ${opts.bridge}`);
  const tap = openTap({ vnetHdr: Boolean(opts.vnetHdr), ownerUid: opts.ownerUid, ownerGid: opts.ownerGid });
  const link = attachTap(tap.name, opts.bridge);
  process.stdout.write(JSON.stringify({ tap, link }) + '\n');
  let open = true;
  if (opts.handoffFd !== undefined) {
    sendFd(opts.handoffFd, Buffer.from([0]), tap.fd);
    closeFd(tap.fd);
    open = false;
  }
  process.stdin.on('data', () => {
    if (!open) return;
    closeFd(tap.fd);
    open = false;
    process.stdout.write('closed\n');
  });
  process.stdin.on('end', () => process.exit(0));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: { name: err.name, errno: err.errno, message: err.message } }) + '\n');
  process.exitCode = 1;
} finally {
  rtnl.close();
}
