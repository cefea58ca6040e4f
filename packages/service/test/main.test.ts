// Every service starts tracing from OTEL_* through runService: a bad value stops it at start with exit
// code 2 naming the variable; asked for, tracing is on, and lines inside a span carry its trace id.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const entry = fileURLToPath(new URL('./fixtures/tiny-service.ts', import.meta.url));

function start(env: Record<string, string>) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
  const child = spawn(process.execPath, [entry], { env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = async () => {
    while (!output.includes('"msg":"started"')) {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { child, exited, started, output: () => output };
}

const lines = (output: string) =>
  output
    .split('\n')
    .filter((l) => l.startsWith('{"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('runService and tracing', () => {
  it('refuses a bad OTEL_* value at start with exit code 2, naming the variable', async () => {
    const service = start({ OTEL_TRACES_EXPORTER: 'jaeger' });
    expect(await service.exited).toBe(2);
    expect(service.output()).toContain(
      'tiny: invalid configuration: OTEL_TRACES_EXPORTER: unsupported exporter jaeger',
    );
  });

  it('runs without tracing by default: no trace ids on its lines', async () => {
    const service = start({});
    await service.started();
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    const all = lines(service.output());
    expect(all.find((l) => l.msg === 'started')).not.toHaveProperty('trace_id');
    expect(all.some((l) => l.msg === 'tracing on: spans exported as OTEL_* says')).toBe(false);
  });

  it('traces when OTEL_* asks: the line written inside a span carries its trace id, and the drain exports it', async () => {
    const service = start({ OTEL_TRACES_EXPORTER: 'console' });
    await service.started();
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    const all = lines(service.output());
    expect(all.some((l) => l.msg === 'tracing on: spans exported as OTEL_* says')).toBe(true);
    const started = all.find((l) => l.msg === 'started');
    expect(started?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    // The console exporter prints the span (not JSON): its trace id is there.
    expect(service.output()).toContain(String(started?.trace_id));
    expect(service.output()).toContain("name: 'tiny start'");
  });
});

describe('runService and an unreachable collector', () => {
  it('says once that spans could not be exported, and still drains with exit code 0', async () => {
    // A port nothing listens on (the discard port on loopback): every export is refused.
    const service = start({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_EXPORTER_OTLP_TIMEOUT: '1000',
    });
    await service.started();
    while (!service.output().includes('spans could not be exported')) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    const warnings = lines(service.output()).filter((l) => l.msg === 'spans could not be exported');
    expect(warnings[0]).toMatchObject({ level: 'warn', failures: 1, err: { code: 'ECONNREFUSED' } });
    expect(warnings[0]).not.toHaveProperty('trace_id');
    expect(warnings.length).toBe(1);
  });
});
