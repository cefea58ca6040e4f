// `npm run stack:pods` end to end, as a user runs it: Stageline's images (built once, then reused while
// their inputs do not change: the in-<hash> tag), its local-pods manifests rendered, translated and run
// with podman against the machine's PostgreSQL and Stageline's NATS, and the example environment applied
// and deployed through those pods by the CLI image, its public service answering. Real podman, buildah,
// registry, NATS and PostgreSQL throughout.
//
// The pods bind fixed ports (127.0.0.1:31051-31054, 31151-31154) and share the bus with the one-machine
// stack: the run holds /tmp/stageline-fixed-ports.lock, as every fixed-port command on these machines must.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const STATE = process.env.STAGELINE_STATE ?? path.join(ROOT, '.stageline');
const LOCK = '/tmp/stageline-fixed-ports.lock';
const run = promisify(execFile);

/** Runs a command to its end; resolves with its exit code and output (both streams, in order). */
function runAll(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

describe('npm run stack:pods', () => {
  afterAll(async () => {
    // The example's workloads and database go with it, then the pods.
    const deleted = await runAll('bash', ['deploy/dev/run.sh', 'node', 'deploy/pods/stack-pods.ts', 'delete-example']);
    if (deleted.code !== 0) console.error(deleted.output.slice(-4000));
    await runAll('flock', [LOCK, 'bash', 'deploy/pods/stack-pods.sh', 'down']);
  }, 300_000);

  it('runs Stageline in pods from its images and manifests, and deploys the example through them', async () => {
    const { code, output } = await runAll('flock', [LOCK, 'bash', 'deploy/pods/stack-pods.sh', 'up']);
    if (code !== 0) console.error(output.slice(-8000));
    expect(code).toBe(0);
    // Every service became ready in its pod, probed on its health port.
    for (const [name, port] of [
      ['control', 31151],
      ['planner', 31152],
      ['build', 31153],
      ['deploy', 31154],
    ] as const) {
      expect(output).toContain(`Deployment/${name}: ready (http://127.0.0.1:${port}/readyz)`);
    }
    expect(output).toContain('Job/provision: provisioned');
    // The example ran to the end through them, and its public service answers.
    expect(output).toMatch(/deploy demo\/staging: run \S+ SUCCEEDED/);
    expect(output).toContain('Hello from Stageline: web is up, deployed after its backend.');

    // The pods run the images `npm run images` made, by their input-hash tag.
    const images = Object.fromEntries(
      readFileSync(path.join(STATE, 'images.env'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
    const { stdout } = await run('podman', ['ps', '--filter', 'pod=stageline-control', '--format', '{{.Image}}']);
    expect(stdout).toContain(images.STAGELINE_IMAGE_CONTROL);
    expect(images.STAGELINE_IMAGE_CONTROL).toMatch(/^127\.0\.0\.1:5000\/stageline\/control:in-[0-9a-f]{16}$/);

    // A second `npm run images` with the same inputs builds nothing.
    const again = await runAll('bash', ['deploy/images/images.sh', '--no-push', 'control']);
    expect(again.code).toBe(0);
    expect(again.output).toContain('(inputs unchanged: reused)');
    expect(again.output).not.toContain('built ');
  }, 1_800_000);
});
