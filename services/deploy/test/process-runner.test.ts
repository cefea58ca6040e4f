// What a program the deploy worker starts inherits: the allow-listed tool variables, never the
// worker's own credentials (the runner is @stageline/exec's, the build service's too).
import { describe, expect, it } from 'vitest';
import { ProcessRunner } from '../src/adapters/process/command-runner.ts';

describe('the deploy worker starts programs with a minimal environment', () => {
  it('passes PATH and the container tools their configuration, never DATABASE_URL or MANAGED_POSTGRES_URL', async () => {
    const runner = new ProcessRunner({
      PATH: process.env.PATH,
      CONTAINERS_CONF: '/etc/containers/containers.conf',
      DATABASE_URL: 'postgres://deploy:worker-secret@db/stageline',
      MANAGED_POSTGRES_URL: 'postgres://postgres:admin-secret@db:5433/postgres',
      STAGELINE_TLS_DIR: '/var/lib/stageline/tls',
    });
    const lines: string[] = [];
    const result = await runner.run('env', [], { onLine: (line) => lines.push(line) });
    expect(result.exitCode).toBe(0);
    const names = result.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(0, l.indexOf('=')));
    expect(names.sort()).toEqual(['CONTAINERS_CONF', 'PATH']);
    expect(result.stdout).not.toContain('secret');
    // Output that is data is still shown line by line.
    expect(lines.some((l) => l.startsWith('PATH='))).toBe(true);
  });

  it('an environment given per call is filtered the same way', async () => {
    const result = await new ProcessRunner({}).run('env', [], {
      env: { PATH: process.env.PATH, KUBECONFIG: '/k', DATABASE_URL: 'postgres://x' },
    });
    expect(result.stdout).toContain('KUBECONFIG=/k');
    expect(result.stdout).not.toContain('DATABASE_URL');
  });
});
