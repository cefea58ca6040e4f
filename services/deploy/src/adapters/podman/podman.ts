// The podman commands the local runtime uses, each one argv array through a CommandRunner.
import { CommandFailed, type CommandResult, type CommandRunner } from '../process/command-runner.ts';

export interface ContainerState {
  id: string;
  /** created, running, paused, stopping, exited, stopped, … */
  status: string;
  exitCode: number;
  restartCount: number;
  /** The container's address on each network it is attached to. */
  addresses: Record<string, string>;
}

export interface PodmanOptions {
  runner: CommandRunner;
  /** The podman binary (default "podman"). */
  binary?: string;
  /** Environment podman runs with (CONTAINERS_CONF, CONTAINERS_REGISTRIES_CONF). */
  env?: NodeJS.ProcessEnv;
}

// Without syslog, podman prints this on stderr for every command; it is noise in error messages.
const NOISE = /^failed to connect to syslog/;

export function meaningfulLines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !NOISE.test(l));
}

const isMissing = (result: CommandResult): boolean =>
  /no such (pod|container|object|volume|network)|not found/i.test(result.stderr);

export class Podman {
  readonly #runner: CommandRunner;
  readonly #binary: string;
  readonly #env: NodeJS.ProcessEnv | undefined;

  constructor(options: PodmanOptions) {
    this.#runner = options.runner;
    this.#binary = options.binary ?? 'podman';
    this.#env = options.env;
  }

  /** Runs podman and returns its result whatever the exit code. */
  raw(
    args: readonly string[],
    options: {
      signal?: AbortSignal;
      onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
      stream?: boolean;
    } = {},
  ): Promise<CommandResult> {
    return this.#runner.run(this.#binary, args, {
      ...options,
      ...(this.#env !== undefined ? { env: this.#env } : {}),
    });
  }

  /** Runs podman; a non-zero exit throws CommandFailed with podman's own message. */
  async run(
    args: readonly string[],
    options: { signal?: AbortSignal; onLine?: (line: string, stream: 'stdout' | 'stderr') => void } = {},
  ): Promise<string> {
    const result = await this.raw(args, options);
    if (result.exitCode !== 0) {
      throw new CommandFailed('podman', args, result, meaningfulLines(result.stderr).slice(-5).join(' | '));
    }
    return result.stdout;
  }

  async networkExists(name: string): Promise<boolean> {
    return (await this.raw(['network', 'exists', name])).exitCode === 0;
  }

  /** Creates the network unless it exists (two services of one environment may race to create it). */
  async ensureNetwork(name: string, labels: Record<string, string>): Promise<void> {
    if (await this.networkExists(name)) return;
    const result = await this.raw(['network', 'create', ...labelArgs(labels), name]);
    if (result.exitCode !== 0 && !(await this.networkExists(name))) {
      throw new CommandFailed('podman', ['network', 'create'], result, meaningfulLines(result.stderr).join(' | '));
    }
  }

  /** Removes the network if nothing is attached to it any more; false when it is still in use or absent. */
  async removeNetworkIfUnused(name: string): Promise<boolean> {
    const users = await this.raw(['ps', '-a', '-q', '--filter', `network=${name}`]);
    if (users.exitCode !== 0 || users.stdout.trim() !== '') return false;
    return (await this.raw(['network', 'rm', name])).exitCode === 0;
  }

  async imageExists(reference: string): Promise<boolean> {
    return (await this.raw(['image', 'exists', reference])).exitCode === 0;
  }

  async pull(reference: string, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
    await this.run(['pull', reference], {
      ...(signal !== undefined ? { signal } : {}),
      onLine: (line) => {
        if (!NOISE.test(line) && line.trim() !== '') onLine(line);
      },
    });
  }

  /** The manifest digest of a local image ('' when podman does not know one). */
  async imageDigest(reference: string): Promise<string> {
    const result = await this.raw(['image', 'inspect', '--format', '{{.Digest}}', reference]);
    return result.exitCode === 0 ? result.stdout.trim() : '';
  }

  async ensureVolume(name: string, labels: Record<string, string>): Promise<void> {
    if ((await this.raw(['volume', 'exists', name])).exitCode === 0) return;
    const result = await this.raw(['volume', 'create', ...labelArgs(labels), name]);
    if (result.exitCode !== 0 && (await this.raw(['volume', 'exists', name])).exitCode !== 0) {
      throw new CommandFailed('podman', ['volume', 'create'], result, meaningfulLines(result.stderr).join(' | '));
    }
  }

  async volumesWithLabel(label: string, value: string): Promise<string[]> {
    const out = await this.run(['volume', 'ls', '-q', '--filter', `label=${label}=${value}`]);
    return out.split('\n').filter((l) => l.trim() !== '');
  }

  async removeVolumes(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    const result = await this.raw(['volume', 'rm', '--force', ...names]);
    if (result.exitCode !== 0 && !isMissing(result)) {
      throw new CommandFailed('podman', ['volume', 'rm'], result, meaningfulLines(result.stderr).join(' | '));
    }
  }

  async kubePlay(file: string, network: string, alias: string, signal?: AbortSignal): Promise<void> {
    // --replace: an update is a recreate on local (kube play has no rolling update); alias: other services
    // reach it by name.
    const argv = ['kube', 'play', '--replace', '--start=true', '--network', `${network}:alias=${alias}`, file];
    for (let attempt = 1; ; attempt++) {
      try {
        await this.run(argv, signal !== undefined ? { signal } : {});
        return;
      } catch (e) {
        // podman 4.3 sometimes fails to remove the old container's shm mount while it is being torn
        // down ("unlinkat …/userdata/shm: device or resource busy"); a moment later it succeeds.
        if (attempt >= 3 || signal?.aborted || !(e instanceof Error && /resource busy/.test(e.message))) throw e;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  /** Published ports of a pod: "<containerPort>/<protocol>" → "<hostIP>:<hostPort>" for each binding. */
  async podPorts(name: string): Promise<Record<string, string[]>> {
    const out = await this.run(['pod', 'inspect', '--format', '{{json .InfraConfig.PortBindings}}', name]);
    const bindings = JSON.parse(out.trim() || 'null') as Record<
      string,
      Array<{ HostIp: string; HostPort: string }>
    > | null;
    return Object.fromEntries(
      Object.entries(bindings ?? {}).map(([port, list]) => [port, list.map((b) => `${b.HostIp}:${b.HostPort}`)]),
    );
  }

  /** Names of the pods carrying label=value. */
  async podsWithLabel(label: string, value: string): Promise<string[]> {
    const out = await this.run(['pod', 'ps', '--filter', `label=${label}=${value}`, '--format', '{{.Name}}']);
    return out.split('\n').filter((l) => l.trim() !== '');
  }

  async podExists(name: string): Promise<boolean> {
    return (await this.raw(['pod', 'exists', name])).exitCode === 0;
  }

  async stopPod(name: string, timeoutSeconds: number): Promise<void> {
    const result = await this.raw(['pod', 'stop', '--time', String(timeoutSeconds), name]);
    if (result.exitCode !== 0 && !isMissing(result)) {
      throw new CommandFailed('podman', ['pod', 'stop'], result, meaningfulLines(result.stderr).join(' | '));
    }
  }

  async startPod(name: string): Promise<void> {
    await this.run(['pod', 'start', name]);
  }

  /**
   * Removes the pod and its containers. A crash-looping container can be mid-restart when asked and make
   * podman refuse ("container state improper"): a few attempts, and gone is gone however it happened.
   */
  async removePod(name: string, timeoutSeconds: number): Promise<void> {
    const args = ['pod', 'rm', '--force', '--ignore', '--time', String(timeoutSeconds), name];
    for (let attempt = 1; ; attempt++) {
      const result = await this.raw(args);
      if (result.exitCode === 0 || !(await this.podExists(name))) return;
      if (attempt >= 5) throw new CommandFailed('podman', args, result, meaningfulLines(result.stderr).join(' | '));
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }

  async inspectContainer(name: string): Promise<ContainerState | undefined> {
    const result = await this.raw(['container', 'inspect', '--format', 'json', name]);
    if (result.exitCode !== 0) {
      if (isMissing(result)) return undefined;
      throw new CommandFailed('podman', ['container', 'inspect'], result, meaningfulLines(result.stderr).join(' | '));
    }
    const [raw] = JSON.parse(result.stdout) as Array<{
      Id: string;
      State?: { Status?: string; ExitCode?: number };
      RestartCount?: number;
      NetworkSettings?: { Networks?: Record<string, { IPAddress?: string }> };
    }>;
    if (raw === undefined) return undefined;
    const addresses: Record<string, string> = {};
    for (const [network, settings] of Object.entries(raw.NetworkSettings?.Networks ?? {})) {
      if (settings.IPAddress) addresses[network] = settings.IPAddress;
    }
    return {
      id: raw.Id,
      status: raw.State?.Status ?? 'unknown',
      exitCode: raw.State?.ExitCode ?? 0,
      restartCount: raw.RestartCount ?? 0,
      addresses,
    };
  }

  /**
   * The exit code of the container's last death since `sinceEpochSeconds`, from podman's event log: with
   * restartPolicy Always the container is often running again by the time we look, exit code reset to 0.
   */
  async lastExitCode(containerId: string, sinceEpochSeconds: number): Promise<number | undefined> {
    const until = Math.ceil(Date.now() / 1000) + 1;
    const result = await this.raw([
      'events',
      '--since',
      String(Math.floor(sinceEpochSeconds)),
      '--until',
      String(until),
      '--filter',
      `container=${containerId}`,
      '--filter',
      'event=died',
      '--format',
      'json',
    ]);
    let code: number | undefined;
    for (const line of result.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const event = JSON.parse(line) as { ContainerExitCode?: number };
        if (typeof event.ContainerExitCode === 'number') code = event.ContainerExitCode;
      } catch {
        // A partial line: skip it.
      }
    }
    return code;
  }

  async logsTail(container: string, lines: number): Promise<string> {
    const result = await this.raw(['logs', '--tail', String(lines), container]);
    // The container's stdout and stderr come out on podman's stdout and stderr.
    return `${result.stdout}\n${meaningfulLines(result.stderr).join('\n')}`;
  }

  /** The container's whole log: its stdout and stderr lines ([] when it is gone). */
  async logs(container: string): Promise<{ stdout: string[]; stderr: string[] }> {
    const result = await this.raw(['logs', container]);
    if (result.exitCode !== 0) return { stdout: [], stderr: [] };
    const lines = (text: string) => {
      const all = text.split('\n');
      if (all.at(-1) === '') all.pop();
      return all;
    };
    return { stdout: lines(result.stdout), stderr: lines(result.stderr).filter((l) => !NOISE.test(l)) };
  }

  /** Streams the container's log lines until `signal` aborts or the container goes away. */
  async followLogs(
    container: string,
    onLine: (line: string, stream: 'stdout' | 'stderr') => void,
    signal: AbortSignal,
  ): Promise<void> {
    await this.raw(['logs', '--follow', container], {
      signal,
      onLine: (line, stream) => {
        if (!NOISE.test(line)) onLine(line, stream);
      },
    }).catch(() => undefined);
  }

  /** Runs argv inside the container; resolves with its exit code. */
  async exec(container: string, argv: readonly string[], signal?: AbortSignal): Promise<number> {
    const result = await this.raw(['exec', container, ...argv], signal !== undefined ? { signal } : {});
    return result.exitCode;
  }
}

function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
}
