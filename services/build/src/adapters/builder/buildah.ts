// The buildah adapter of the Builder port: `buildah bud` (daemonless), then `buildah push` to the mirror.
//
// - `--layers`: every step's result is kept in local storage, so the next build of the same repository
//   (or of another one sharing a base) reuses unchanged steps.
// - `--isolation oci --runtime runc --cgroup-manager cgroupfs` with `--cpu-period/--cpu-quota` and
//   `--memory/--memory-swap`: the limits become real cgroup limits (chroot isolation ignores them, and
//   crun fails on RUN with cgroup v1 hybrid, as on the development and CI machines).
// - Build args: `--build-arg NAME` without a value, the value in buildah's environment, so no value
//   (secret or not) ever shows in `ps`.
// - Built first, pushed after: a build interrupted before its push leaves nothing in the mirror, and a
//   push interrupted before its manifest leaves no tag — a cache check can only find complete images.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { minimalEnvironment, runProcess } from '@stageline/exec';
import { isLoopbackHost } from '../registry/reference.ts';
import { type Builder, BuildFailure, type BuildSpec, type BuiltImage } from './builder.ts';

export interface BuildahOptions {
  /** Default `buildah`. */
  command?: string;
  /** A containers auth.json for pulling bases and pushing to the mirror. */
  authFile?: string | undefined;
  /** Registries spoken to in plain HTTP besides loopback ones. */
  insecureRegistries?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
}

/** Names a build arg cannot take through the environment without changing how buildah itself runs. */
const RESERVED = /^(LD_|BUILDAH_|CONTAINERS_|STORAGE_|REGISTRY_|XDG_|GO)/;

export class BuildahBuilder implements Builder {
  readonly name = 'buildah';
  readonly #options: BuildahOptions;
  readonly #command: string;

  constructor(options: BuildahOptions = {}) {
    this.#options = options;
    this.#command = options.command ?? 'buildah';
  }

  #registryOf(image: string): string {
    return image.split('/')[0] ?? '';
  }

  async build(spec: BuildSpec): Promise<BuiltImage> {
    const base = minimalEnvironment(this.#options.env ?? process.env);
    const env: Record<string, string> = { ...base };
    const args = [
      'bud',
      '--layers',
      '--isolation',
      'oci',
      '--runtime',
      'runc',
      '--cgroup-manager',
      'cgroupfs',
      '--cpu-period',
      '100000',
      '--cpu-quota',
      String(Math.max(1000, Math.round(spec.resources.cpuMillis * 100))),
      '--memory',
      `${spec.resources.memoryMib}m`,
      // Equal to --memory: no swap on top of the limit.
      '--memory-swap',
      `${spec.resources.memoryMib}m`,
      '--file',
      spec.dockerfile,
      '--tag',
      spec.image,
    ];
    if (spec.target !== '') args.push('--target', spec.target);
    if (this.#options.authFile !== undefined) args.push('--authfile', this.#options.authFile);
    for (const arg of spec.args) {
      if (arg.name in base || RESERVED.test(arg.name) || arg.name === 'PATH' || arg.name === 'HOME') {
        // It would change buildah's own environment: only a value that may be seen goes on argv.
        if (arg.secret) {
          throw new BuildFailure(
            'failed',
            `secret ARG ${arg.name} has the name of a variable the builder itself uses: rename it`,
          );
        }
        args.push('--build-arg', `${arg.name}=${arg.value}`);
      } else {
        env[arg.name] = arg.value;
        args.push('--build-arg', arg.name);
      }
    }
    args.push('--', spec.contextDir);

    const built = await runProcess({
      command: this.#command,
      args,
      env,
      signal: spec.signal,
      onLine: (line) => spec.onLine(line),
    }).catch((e: unknown) => {
      throw new BuildFailure('unavailable', `cannot run ${this.#command}: ${(e as Error).message}`);
    });
    if (built.aborted) throw new BuildFailure('aborted', 'the build was stopped');
    if (built.code !== 0) {
      const error = built.tail.findLast((l) => l.startsWith('Error:'))?.replace(/^Error:\s*/, '');
      const reason = error ?? built.tail.at(-1) ?? `buildah exited with ${built.code ?? built.signal}`;
      if (/exit status 137\b|signal: killed/.test(reason)) {
        const step = /building at (STEP "[^"]*")/.exec(reason)?.[1];
        throw new BuildFailure(
          'memory',
          `the build exceeded its memory limit of ${spec.resources.memoryMib} MiB (build_resources.memory_mib): ` +
            `${step ?? 'a step'} was killed (exit status 137)`,
        );
      }
      throw new BuildFailure('failed', reason);
    }
    return this.#push(spec, base);
  }

  async #push(spec: BuildSpec, env: Record<string, string>): Promise<BuiltImage> {
    const scratch = await mkdtemp(join(tmpdir(), 'stageline-push-'));
    try {
      const digestFile = join(scratch, 'digest');
      const registry = this.#registryOf(spec.image);
      const args = ['push', '--digestfile', digestFile];
      // Plain HTTP for the mirror on loopback (or configured as insecure) only — never anything else.
      if (isLoopbackHost(registry) || this.#options.insecureRegistries?.includes(registry)) {
        args.push('--tls-verify=false');
      }
      if (this.#options.authFile !== undefined) args.push('--authfile', this.#options.authFile);
      args.push('--', spec.image, `docker://${spec.image}`);
      let last = '';
      for (let attempt = 1; attempt <= 2; attempt++) {
        const pushed = await runProcess({
          command: this.#command,
          args,
          env,
          signal: spec.signal,
          onLine: (line) => spec.onLine(line),
        });
        if (pushed.aborted) throw new BuildFailure('aborted', 'the push was stopped');
        if (pushed.code === 0) {
          const digest = (await readFile(digestFile, 'utf8')).trim();
          if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new BuildFailure('push', `push reported no digest`);
          return { image: spec.image, digest };
        }
        last = pushed.tail.findLast((l) => l.startsWith('Error:'))?.replace(/^Error:\s*/, '') ?? pushed.tail.join(' ');
        if (attempt === 1) spec.onLine(`push failed (${last}); trying once more`);
      }
      throw new BuildFailure('push', `pushing ${spec.image} failed: ${last}`);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
}
