// Helpers for the deploy tests: a recording JobContext (the handler's own port), the test image, cleanup.
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '@stageline/log';
import type { control } from '@stageline/proto';
import { KeyRing } from '@stageline/secrets';
import { testSecurity } from '@stageline/testkit';
import type { CommandOptions, CommandResult, CommandRunner } from '../src/adapters/process/command-runner.ts';
import { ProcessRunner } from '../src/adapters/process/command-runner.ts';
import type { JobContext } from '../src/app/ports.ts';
import { localNetworkName } from '../src/domain/names.ts';

/** The installation's keys, as the deploy service loads them (the test kit's key directory). */
export const secrets = KeyRing.load({ dir: testSecurity().keyDir });

export const log = createLogger({ service: 'deploy-test', level: process.env.LOG_LEVEL ?? 'silent' });

/** podman and buildah with the project's containers.conf (env.sh exports it; a bare shell gets the repo's copy). */
export function containerEnv(): NodeJS.ProcessEnv {
  const root = path.resolve(import.meta.dirname, '../../..');
  return {
    ...process.env,
    CONTAINERS_CONF: process.env.CONTAINERS_CONF ?? path.join(root, 'deploy/dev/containers.conf'),
    CONTAINERS_REGISTRIES_CONF: process.env.CONTAINERS_REGISTRIES_CONF ?? path.join(root, 'deploy/dev/registries.conf'),
  };
}

export const runner = new ProcessRunner(containerEnv());

export async function sh(command: string, args: readonly string[], options: CommandOptions = {}): Promise<string> {
  const result = await runner.run(command, args, options);
  if (result.exitCode !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${result.exitCode}: ${result.stderr}`);
  return result.stdout;
}

export interface RecordedStep {
  kind: control.StepKind;
  startedMessage: string;
  finished?: control.Step;
}

export interface RecordingContext extends JobContext {
  readonly steps: RecordedStep[];
  readonly lines: string[];
  readonly controller: AbortController;
}

/** The handler's JobContext, recording what it reports; abort `controller` to cancel. */
export function recordingContext(ids: { jobId: string; deploymentId: string; serviceId: string }): RecordingContext {
  const steps: RecordedStep[] = [];
  const lines: string[] = [];
  const controller = new AbortController();
  return {
    ...ids,
    attempt: 1,
    signal: controller.signal,
    log,
    steps,
    lines,
    controller,
    output(message) {
      lines.push(message);
    },
    async stepStarted(kind, message) {
      steps.push({ kind, startedMessage: message ?? '' });
    },
    async stepFinished(step) {
      const open = steps.find((s) => s.kind === step.kind && s.finished === undefined);
      if (open === undefined) throw new Error(`step ${step.kind} finished without being started`);
      open.finished = step;
    },
    working() {},
  };
}

// The test image: busybox-static FROM scratch, with a start script whose behaviour the env chooses:
// EXIT_WITH=<n> exits at once with n; START_DELAY=<s> waits that long first; otherwise it serves $GREETING (and $DATA_DIR/log when set) over
// HTTP on $PORT with busybox httpd.
const START_SCRIPT = `#!/bin/sh
if [ -n "$EXIT_WITH" ]; then
  echo "starting, then exiting with $EXIT_WITH as asked"
  echo "fatal: told to exit" >&2
  exit "$EXIT_WITH"
fi
if [ -n "$START_DELAY" ]; then
  echo "starting in $START_DELAY s"
  sleep "$START_DELAY"
fi
mkdir -p /www
echo "\${GREETING:-hello}" > /www/index.html
if [ -n "$DATA_DIR" ]; then
  mkdir -p "$DATA_DIR"
  echo "started" >> "$DATA_DIR/log"
  cp "$DATA_DIR/log" /www/data.txt
fi
echo "serving on \${PORT:-8080}"
exec busybox httpd -f -v -p "\${PORT:-8080}" -h /www
`;

let image: Promise<string> | undefined;

/** `localhost/stageline-deploy-test/httpd:<hash of the recipe>`, built with buildah unless it exists. */
export function testImage(): Promise<string> {
  image ??= (async () => {
    const busybox = '/bin/busybox';
    const tag = createHash('sha256').update(START_SCRIPT).update('v1').digest('hex').slice(0, 12);
    const name = `localhost/stageline-deploy-test/httpd:${tag}`;
    if ((await runner.run('podman', ['image', 'exists', name])).exitCode === 0) return name;
    const stage = await mkdtemp(path.join(os.tmpdir(), 'deploy-test-image-'));
    try {
      const rootfs = path.join(stage, 'rootfs');
      await mkdir(path.join(rootfs, 'bin'), { recursive: true });
      await copyFile(busybox, path.join(rootfs, 'bin/busybox'));
      await symlink('busybox', path.join(rootfs, 'bin/sh'));
      await writeFile(path.join(rootfs, 'start'), START_SCRIPT);
      await chmod(path.join(rootfs, 'start'), 0o755);
      const container = (await sh('buildah', ['from', '--quiet', 'scratch'])).trim();
      try {
        await sh('buildah', ['copy', '--quiet', container, `${rootfs}/`, '/']);
        await sh('buildah', [
          'config',
          '--env',
          'PATH=/bin',
          '--entrypoint',
          '["/start"]',
          '--port',
          '8080',
          container,
        ]);
        await sh('buildah', ['commit', '--quiet', '--rm', container, name]);
      } catch (e) {
        await runner.run('buildah', ['rm', container]);
        throw e;
      }
    } finally {
      await rm(stage, { recursive: true, force: true });
    }
    return name;
  })();
  return image;
}

/** Removes every pod, volume and the network of a test environment (whatever the test left). */
export async function cleanEnvironment(environmentId: string): Promise<void> {
  const label = `label=stageline.io/environment-id=${environmentId}`;
  const pods = (await runner.run('podman', ['pod', 'ls', '-q', '--filter', label])).stdout.split('\n').filter(Boolean);
  const containers = (await runner.run('podman', ['ps', '-a', '-q', '--filter', label])).stdout
    .split('\n')
    .filter(Boolean);
  if (containers.length > 0) await runner.run('podman', ['rm', '-f', '-t', '0', ...containers]);
  if (pods.length > 0) await runner.run('podman', ['pod', 'rm', '-f', '-t', '0', ...pods]);
  const volumes = (await runner.run('podman', ['volume', 'ls', '-q', '--filter', label])).stdout
    .split('\n')
    .filter(Boolean);
  if (volumes.length > 0) await runner.run('podman', ['volume', 'rm', '-f', ...volumes]);
  await runner.run('podman', ['network', 'rm', '-f', localNetworkName(environmentId)]);
}

/** A CommandRunner that runs nothing: it records argv and answers from a script (Kubernetes/Helm only). */
export class RecordingRunner implements CommandRunner {
  readonly calls: Array<{ command: string; args: string[] }> = [];
  /** `helm version` (asked once per worker), kept out of `calls`: answered as `helmVersion` says. */
  readonly versionCalls: Array<{ command: string; args: string[] }> = [];
  readonly #answers: Array<(command: string, args: readonly string[]) => CommandResult | undefined> = [];
  readonly #helmVersion: CommandResult;

  /** `helmVersion`: what `helm version --template {{.Version}}` prints (default helm 3), or its whole result. */
  constructor(options: { helmVersion?: string | CommandResult } = {}) {
    const v = options.helmVersion ?? 'v3.15.4';
    this.#helmVersion = typeof v === 'string' ? { exitCode: 0, stdout: v, stderr: '' } : v;
  }

  /** The first answer returning a result wins; default: exit 0, no output. */
  answer(fn: (command: string, args: readonly string[]) => CommandResult | undefined): void {
    this.#answers.push(fn);
  }

  async run(command: string, args: readonly string[], _options?: CommandOptions): Promise<CommandResult> {
    if (command === 'helm' && args[0] === 'version') {
      this.versionCalls.push({ command, args: [...args] });
      return this.#helmVersion;
    }
    this.calls.push({ command, args: [...args] });
    for (const fn of this.#answers) {
      const result = fn(command, args);
      if (result !== undefined) return result;
    }
    return { exitCode: 0, stdout: '', stderr: '' };
  }
}
