// testkit's resolveRegistry (packages/testkit/src/registry.ts), exercised where it is used.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { registryAnswers, resolveRegistry } from '@stageline/testkit';
import { describe, expect, it } from 'vitest';

describe('resolveRegistry', () => {
  it('takes REGISTRY_URL as given, host:port or URL', async () => {
    const plain = await resolveRegistry({ env: { REGISTRY_URL: '127.0.0.1:5999' } });
    expect({ url: plain.url, source: plain.source }).toEqual({ url: 'http://127.0.0.1:5999', source: 'env' });
    const url = await resolveRegistry({ env: { REGISTRY_URL: 'https://registry.lan:443/ignored' } });
    expect(url.url).toBe('https://registry.lan');
  });

  it('starts the docker-registry binary on a free port, and stop() ends it and removes its storage', async () => {
    const server = await resolveRegistry({ strategy: 'binary' });
    expect(server.source).toBe('binary');
    expect(await registryAnswers(server.url)).toBe(true);
    const port = new URL(server.url).port;
    // Its storage is a temp dir named in the process's command line (…/config.yml).
    const pid = findRegistryPid(port);
    expect(pid).toBeDefined();
    const configPath = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[2]!;
    const dir = configPath.replace(/\/config\.yml$/, '');
    expect(existsSync(dir)).toBe(true);

    await server.stop();
    expect(await registryAnswers(server.url)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    await server.stop(); // idempotent
  });

  it('is memoized per process', async () => {
    const [a, b] = await Promise.all([resolveRegistry(), resolveRegistry()]);
    expect(a).toBe(b);
    expect(await registryAnswers(a.url)).toBe(true);
  });
});

function findRegistryPid(port: string): number | undefined {
  for (const entry of readdirNumeric('/proc')) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const args = cmdline.split('\0');
    if (!args[0]?.endsWith('docker-registry') || args[1] !== 'serve' || args[2] === undefined) continue;
    try {
      if (readFileSync(args[2], 'utf8').includes(`127.0.0.1:${port}`)) return entry;
    } catch {
      // another test's registry, already gone
    }
  }
  return undefined;
}

function readdirNumeric(dir: string): number[] {
  return readdirSync(dir)
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}
