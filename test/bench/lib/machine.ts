// The facts a figure is meaningless without: the machine, its load, and the versions under test.
import { execFile } from 'node:child_process';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 10_000 });
    return (stdout || stderr).trim().split('\n')[0] ?? '';
  } catch {
    return 'unavailable';
  }
}

async function composeVersion(): Promise<string> {
  try {
    const { stdout, stderr } = await run('podman-compose', ['--version'], { timeout: 10_000 });
    // 1.0.3 prints "podman-composer version  1.0.3" among other lines.
    return /podman-composer? version\s+(\S+)/.exec(stdout + stderr)?.[1] ?? 'unknown';
  } catch {
    return 'unavailable';
  }
}

export interface MachineFacts {
  date: string;
  hostname: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  freeMemoryGiB: number;
  loadAverage: number[];
  node: string;
  nats: string;
  postgres: string;
  podman: string;
  buildah: string;
  podmanCompose: string;
  commit: string;
}

export async function machineFacts(databaseUrl: string): Promise<MachineFacts> {
  const [nats, postgres, podman, buildah, podmanCompose, commit, hostname] = await Promise.all([
    firstLine('nats-server', ['--version']),
    firstLine('psql', [databaseUrl, '-Atc', 'show server_version']),
    firstLine('podman', ['--version']),
    firstLine('buildah', ['--version']),
    composeVersion(),
    firstLine('git', ['rev-parse', '--short', 'HEAD']),
    firstLine('hostname', []),
  ]);
  return {
    date: new Date().toISOString(),
    hostname,
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    freeMemoryGiB: Math.round((freemem() / 1024 ** 3) * 10) / 10,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
    nats,
    postgres,
    podman,
    buildah,
    podmanCompose,
    commit,
  };
}
