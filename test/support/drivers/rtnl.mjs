// Runs Rtnl method calls in the current network namespace and prints one JSON
// array of outcomes. Usage: node rtnl.mjs '[["createBridge","br0",{"mtu":1400}],["setUp","@br0",true]]'
// An argument "@NAME" is replaced by the ifindex of link NAME at call time.
// Each outcome is {ok:true,value} or {ok:false,error:{name,errno,op,object,message}}; later calls still run.
import { Rtnl } from '../../../dist/netlink/rtnl.js';

const calls = JSON.parse(process.argv[2] ?? '[]');
const rtnl = new Rtnl();
const out = [];
for (const [method, ...args] of calls) {
  try {
    const resolved = [];
    const index = async (a) => {
      const link = await rtnl.getLinkByName(a.slice(1));
      if (!link) throw new Error(`driver: no link ${a.slice(1)}`);
      return link.index;
    };
    for (const a of args) {
      if (typeof a === 'string' && a.startsWith('@')) resolved.push(await index(a));
      else if (a && typeof a === 'object' && typeof a.master === 'string') resolved.push({ ...a, master: await index(a.master) });
      else resolved.push(a);
    }
    const value = await rtnl[method](...resolved);
    out.push({ ok: true, value: value ?? null });
  } catch (err) {
    const { name, errno, op, object, message } = err;
    out.push({ ok: false, error: { name, errno, op, object, message, hasCause: err.cause !== undefined } });
  }
}
rtnl.close();
process.stdout.write(JSON.stringify(out) + '\n');
