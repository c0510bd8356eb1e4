import path from 'node:path';

/** Where vnet reads and writes. Every folder can be moved by its environment variable. */
export interface Paths {
  configDir: string;
  stateDir: string;
  runtimeDir: string;
  qemuConfDir: string;
  networksDir: string;
  socket: string;
}

export function pathsFromEnv(env: NodeJS.ProcessEnv = process.env): Paths {
  const configDir = env.VNET_CONFIG_DIR || '/etc/vnet';
  const stateDir = env.VNET_STATE_DIR || '/var/lib/vnet';
  const runtimeDir = env.VNET_RUNTIME_DIR || '/run/vnet';
  const qemuConfDir = env.VNET_QEMU_CONF_DIR || '/etc/qemu';
  return {
    configDir,
    stateDir,
    runtimeDir,
    qemuConfDir,
    networksDir: path.join(configDir, 'networks'),
    socket: path.join(runtimeDir, 'vnetd.sock'),
  };
}
