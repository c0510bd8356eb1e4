/**
 * `vnet import-libvirt`: libvirt network XML (written from libvirt's documented format, plus
 * the default.xml Debian ships) → vnet TOML, compared byte for byte with goldens; refusals;
 * the command's options, --write/--force and exit codes. The real libvirtd side is
 * test/integration/libvirt-import.test.ts.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import fc from 'fast-check';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { document, importLibvirt } from '../../src/import/command.js';
import { importNetwork, ImportRefused } from '../../src/import/libvirt.js';
import { emitDefinition } from '../../src/import/toml.js';
import { parseXml } from '../../src/import/xml.js';
import { parseDefinition } from '../../src/spec/parse.js';

const dir = path.join(import.meta.dirname, '__golden__', 'import');

/**
 * Compare with a stored golden file byte for byte. UPDATE_GOLDEN=1 rewrites the file and FAILS,
 * so an update run never passes by comparing a file with itself: review `git diff`, then rerun.
 */
function expectGolden(file: string, text: string): void {
  const p = path.join(dir, file);
  if (process.env.UPDATE_GOLDEN === '1') {
    writeFileSync(p, text);
    throw new Error(`golden ${file} rewritten: review \`git diff ${path.relative(process.cwd(), p)}\` and rerun without UPDATE_GOLDEN`);
  }
  expect(text).toBe(readFileSync(p, 'utf8'));
}

function imported(xml: string, opts: { autostart?: boolean } = {}) {
  return importNetwork(parseXml(xml, 'test.xml'), 'test.xml', opts);
}

function refusal(xml: string): string {
  try {
    imported(xml);
  } catch (err) {
    expect(err).toBeInstanceOf(ImportRefused);
    return (err as Error).message;
  }
  throw new Error('imported, expected a refusal');
}

const goldens = readdirSync(dir).filter((f) => f.endsWith('.xml')).sort();

describe('golden: libvirt XML → vnet TOML', () => {
  it('covers the documented kinds of network', () => {
    expect(goldens).toEqual(expect.arrayContaining(['debian-default.xml', 'libvirt-default.xml', 'hosts-dns.xml', 'dual-stack.xml', 'route.xml', 'isolated.xml', 'nat-ranges.xml', 'open.xml', 'host-bridge.xml', 'everything-else.xml']));
  });

  for (const file of goldens) {
    it(file, () => {
      const net = importNetwork(parseXml(readFileSync(path.join(dir, file)), file), file, { autostart: file === 'libvirt-default.xml' });
      const text = document(net);
      expectGolden(file.replace(/\.xml$/, '.toml'), text);
      // what is written reads back as the same table
      expect(parseToml(text)).toEqual(net.table);
    });
  }

  it('the stock default, as Debian ships it and as libvirt rewrites it, is vnet\'s built-in default and passes vnet\'s parser', () => {
    for (const file of ['debian-default.xml', 'libvirt-default.xml']) {
      const net = importNetwork(parseXml(readFileSync(path.join(dir, file)), file), file);
      expect(net.table).toEqual({ bridge: 'virbr0', address: '192.168.122.1/24', forward: 'nat', 'dhcp-range': ['192.168.122.2', '192.168.122.254'] });
      const spec = parseDefinition('default', 'default.toml', document(net));
      expect(spec.bridge.name).toBe('virbr0');
    }
  });
});

describe('what is carried, what is named', () => {
  it('merges the IPv4 (by MAC) and IPv6 (by name) entries of one guest into one [[hosts]] table', () => {
    const net = imported(readFileSync(path.join(dir, 'dual-stack.xml'), 'utf8'));
    expect(net.table.hosts).toEqual([
      { mac: '52:54:00:60:00:10', name: 'alpha', ip: ['10.60.0.10', 'fd42:6:6::10'] },
      { name: 'beta', ip: 'fd42:6:6::11' },
    ]);
    expect(net.notCarried.map((n) => n.element)).toEqual([
      "<bridge> (no stp='off')",
      "<ip family='ipv6' address='fd42:6:6::1'><dhcp><host name='beta' ip='fd42:6:6::11'> id='0:3:0:1:0:16:3e:11:22:33'",
      "<ip family='ipv6' address='fd42:6:6::1'><dhcp><host ip='fd42:6:6::12' id='0:1:0:1:18:aa:62:fe:0:16:3e:44:55:66'>",
    ]);
  });

  it('<nat ipv6=yes> becomes nat6 only for unique local addresses', () => {
    const ula = imported(`<network><name>a</name><forward><nat ipv6='yes'/></forward><bridge name='b0'/><ip address='10.1.0.1' prefix='24'/><ip family='ipv6' address='fd00:1::1' prefix='64'/></network>`);
    expect(ula.table.nat6).toBe(true);
    const gua = imported(`<network><name>a</name><forward><nat ipv6='yes'/></forward><bridge name='b0'/><ip address='10.1.0.1' prefix='24'/><ip family='ipv6' address='2001:db8::1' prefix='64'/></network>`);
    expect(gua.table.nat6).toBeUndefined();
    expect(gua.notCarried).toContainEqual({ element: "<nat ipv6='yes'>", reason: expect.stringContaining('2001:db8::/64 is not one') });
  });

  it('a network of ten thousand addresses gets the lease cap libvirt gave it; past 65535 the cap is named', () => {
    expect(imported(readFileSync(path.join(dir, 'nat-ranges.xml'), 'utf8')).table['dhcp-lease-max']).toBe(2304);
    const big = imported(`<network><name>a</name><bridge name='b0'/><ip address='10.0.0.1' prefix='8'><dhcp><range start='10.0.0.2' end='10.9.0.0'/></dhcp></ip></network>`);
    expect(big.table['dhcp-lease-max']).toBe(65535);
    expect(big.notCarried).toContainEqual(expect.objectContaining({ reason: expect.stringContaining('at most 65535 leases') }));
  });

  it('every element and attribute it does not know is named, not dropped', () => {
    const net = imported(`<network foo='1'><name>a</name><bridge name='b0' stp='off' colour='red'/><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.2' end='10.0.0.9' x='y'/></dhcp></ip><bogus/></network>`);
    expect(net.notCarried.map((n) => n.element)).toEqual(["<network> foo='1'", '<bogus>', "<bridge name='b0'> colour='red'", "<ip address='10.0.0.1'><dhcp><range start='10.0.0.2'> x='y'"]);
  });

  it('text from the XML cannot end a TOML comment: newlines and control characters are escaped', () => {
    const net = imported(`<network><name>a</name><bridge name='b0' stp='off'/><ip address='10.0.0.1' prefix='24'/><frob x='1&#10;forward = "open"&#13;'/></network>`);
    const text = document(net);
    expect(text).not.toMatch(/^forward = "open"/m);
    expect(text).toContain('\\u000aforward');
    expect(parseToml(text)).toEqual(net.table);
  });

  it('strings survive quoting: any TXT value reads back as written', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (value) => {
        const table = { bridge: 'b0', 'dns-records': [{ type: 'txt', name: 'n', value }] };
        expect(parseToml(emitDefinition(table, ['a comment', value]))).toEqual(table);
      }),
    );
  });
});

describe('refused networks', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['SR-IOV passthrough', `<network><name>p</name><forward mode='passthrough'><interface dev='eth10'/></forward></network>`, /<forward mode='passthrough'> connects guests to host NICs directly/],
    ['hostdev with a PF', `<network><name>p</name><forward mode='hostdev' managed='yes'><pf dev='eth0'/></forward></network>`, /macvtap or SR-IOV/],
    ['macvtap bridge mode', `<network><name>p</name><forward mode='bridge'><interface dev='eth20'/></forward></network>`, /macvtap's bridge mode/],
    ['Open vSwitch', `<network><name>p</name><forward mode='bridge'/><bridge name='ovsbr0'/><virtualport type='openvswitch'/></network>`, /Open vSwitch/],
    ['a name vnet refuses', `<network><name>my.net</name><bridge name='b0'/></network>`, /network "my\.net" not imported: the name "my\.net" is not a vnet network name: it must be 1-64 ASCII letters.*does not rename/],
    ['a bridge name vnet refuses', `<network><name>n</name><bridge name='a-very-long-bridge-name'/></network>`, /bridge name "a-very-long-bridge-name" must be at most 15 bytes/],
    ['bridge "all"', `<network><name>n</name><bridge name='all'/></network>`, /bridge name "all" means every bridge/],
    ['no bridge', `<network><name>n</name><ip address='10.0.0.1' prefix='24'/></network>`, /no <bridge name=\.\.\.>/],
    ['unknown mode', `<network><name>n</name><forward mode='warp'/><bridge name='b0'/></network>`, /unknown forward mode "warp"/],
    ['not a network', `<domain><name>n</name></domain>`, /root element is <domain>/],
    ['no name', `<network><bridge name='b0'/></network>`, /no <name>/],
  ];
  for (const [what, xml, re] of cases) it(what, () => expect(refusal(xml)).toMatch(re));
});

describe('the command', () => {
  function io(env: Record<string, string> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    return {
      io: { out: async (s: string) => void out.push(s), err: async (s: string) => void err.push(s), env: { PATH: process.env.PATH ?? '', ...env } },
      stdout: () => out.join(''),
      stderr: () => err.join(''),
    };
  }
  function scratch() {
    const base = mkdtempSync(path.join(os.tmpdir(), 'vnet-import-'));
    const nets = path.join(base, 'libvirt', 'networks');
    mkdirSync(path.join(nets, 'autostart'), { recursive: true });
    writeFileSync(path.join(nets, 'default.xml'), readFileSync(path.join(dir, 'libvirt-default.xml')));
    writeFileSync(path.join(nets, 'lab.xml'), readFileSync(path.join(dir, 'hosts-dns.xml')));
    symlinkSync('/etc/libvirt/qemu/networks/default.xml', path.join(nets, 'autostart', 'default.xml'));
    return { base, nets, env: { VNET_CONFIG_DIR: path.join(base, 'etc-vnet') } };
  }

  it('prints one document per network, each headed by its file; autostart from libvirt\'s autostart/ links; changes nothing', async () => {
    const s = scratch();
    const c = io(s.env);
    expect(await importLibvirt([s.nets], c.io)).toBe(0);
    const target = (n: string) => path.join(s.env.VNET_CONFIG_DIR, 'networks', `${n}.toml`);
    expect(c.stdout()).toContain(`# ==> ${target('default')} <==\n# vnet network "default", imported by \`vnet import-libvirt\` from ${path.join(s.nets, 'default.xml')}\n`);
    expect(c.stdout()).toContain(`# ==> ${target('lab')} <==`);
    const docs = c.stdout().split(/^# ==> .* <==$/m).slice(1);
    expect(parseToml(docs[0]!)).toMatchObject({ autostart: true });
    expect(parseToml(docs[1]!)).not.toHaveProperty('autostart');
    expect(c.stderr()).toContain("default: not carried: <mac address='52:54:00:51:ff:06'>: vnet gives the bridge a fixed MAC address");
    // lab's hosts, DNS records, forwarders and lease times are all keys vnet reads: checked by its parser
    expect(c.stderr()).not.toContain('lab: not checked by vnet\'s parser');
    expect(() => lstatSync(s.env.VNET_CONFIG_DIR)).toThrow(/ENOENT/);
  });

  it('--write writes NAME.toml (0644), refuses an existing file without --force and a symlink even with it, and writes nothing then', async () => {
    const s = scratch();
    const c = io(s.env);
    expect(await importLibvirt([path.join(s.nets, 'default.xml'), '--write'], c.io)).toBe(0);
    const file = path.join(s.env.VNET_CONFIG_DIR, 'networks', 'default.toml');
    expect(lstatSync(file).mode & 0o777).toBe(0o644);
    expect(readFileSync(file, 'utf8')).toMatch(/^# vnet network "default"[^]*\nbridge = "virbr0"\n/);
    expect(c.stdout()).toBe(`wrote ${file}\nnext: \`vnet check\`, then stop each network in libvirt (README: "Move libvirt's networks to vnet")\n`);

    writeFileSync(file, 'mine\n');
    const again = io(s.env);
    expect(await importLibvirt([s.nets, '--write'], again.io)).toBe(1);
    expect(again.stderr()).toContain(`${file}: exists (--force replaces it)`);
    expect(again.stderr()).toContain('nothing written');
    expect(readFileSync(file, 'utf8')).toBe('mine\n');
    expect(() => lstatSync(path.join(s.env.VNET_CONFIG_DIR, 'networks', 'lab.toml'))).toThrow(/ENOENT/);

    expect(await importLibvirt([s.nets, '--write', '--force'], io(s.env).io)).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('bridge = "virbr0"');

    const lab = path.join(s.env.VNET_CONFIG_DIR, 'networks', 'lab.toml');
    const elsewhere = path.join(s.base, 'elsewhere');
    writeFileSync(elsewhere, 'keep\n');
    chmodSync(elsewhere, 0o600);
    (await import('node:fs')).rmSync(lab);
    symlinkSync(elsewhere, lab);
    const sym = io(s.env);
    expect(await importLibvirt([s.nets, '--write', '--force'], sym.io)).toBe(1);
    expect(sym.stderr()).toContain(`${lab}: a symlink; refusing to write through it`);
    expect(readFileSync(elsewhere, 'utf8')).toBe('keep\n');
  });

  it('a file that is not well-formed names file, line and column; exit 1, nothing written', async () => {
    const s = scratch();
    writeFileSync(path.join(s.nets, 'broken.xml'), '<network>\n  <name>x</name>\n  <bridge name="b0">\n</network>\n');
    const c = io(s.env);
    expect(await importLibvirt([s.nets, '--write'], c.io)).toBe(1);
    expect(c.stderr()).toContain(`${path.join(s.nets, 'broken.xml')}:4:1: </network> closes <bridge> (line 3)`);
    expect(c.stderr()).toContain('nothing written');
    expect(() => lstatSync(path.join(s.env.VNET_CONFIG_DIR, 'networks'))).toThrow(/ENOENT/);
  });

  it('usage errors exit 2 and name the option', async () => {
    for (const [args, msg] of [
      [['--frobnicate', 'x.xml'], "Unknown option '--frobnicate'"],
      [[], 'give one FILE.xml or DIR, or --running'],
      [['a.xml', 'b.xml'], 'give one FILE.xml or DIR, or --running'],
      [['--running', 'a.xml'], 'give one FILE.xml or DIR, or --running'],
      [['a.xml', '--force'], '--force only goes with --write'],
    ] as const) {
      const c = io();
      expect(await importLibvirt([...args], c.io)).toBe(2);
      expect(c.stderr()).toContain(msg);
      expect(c.stderr()).toContain('usage: vnet import-libvirt');
    }
  });

  it('--running asks virsh, checks each listed name before it reaches virsh\'s command line, and refuses a name the XML contradicts', async () => {
    const s = scratch();
    const bin = path.join(s.base, 'bin');
    mkdirSync(bin);
    const log = path.join(s.base, 'virsh.log');
    // a stand-in for virsh: three networks, one with a hostile name, one that lies about its name
    writeFileSync(
      path.join(bin, 'virsh'),
      `#!/bin/sh
echo "$@" >> ${log}
case "$*" in
  *"net-list --all --autostart --name"*) printf 'default\\n' ;;
  *"net-list --all --name"*) printf 'default\\n--help\\nliar\\n' ;;
  *"--network default"*) cat ${path.join(dir, 'libvirt-default.xml')} ;;
  *"--network liar"*) cat ${path.join(dir, 'debian-default.xml')} ;;
  *) exit 1 ;;
esac
`,
      { mode: 0o755 },
    );
    const c = io({ ...s.env, PATH: `${bin}:${process.env.PATH}` });
    expect(await importLibvirt(['--running'], c.io)).toBe(1);
    expect(c.stdout()).toContain('autostart = true');
    expect(c.stderr()).toContain('qemu:///system network "--help": network "--help" not imported: the name is not a vnet network name');
    expect(c.stderr()).toContain('qemu:///system network "liar": network "default" not imported: libvirtd listed it as "liar"');
    const calls = readFileSync(log, 'utf8');
    expect(calls).toContain('-c qemu:///system net-dumpxml --inactive --network default');
    expect(calls).not.toContain('--help');
  });
});
