// What every command gets: where to write, how to print, the gRPC clients (TLS and a token), and how to find an
// environment, a stage, a service or a run by the names people type.
import { type ClientSecurity, callUnary, connect } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { stringify as toYaml } from 'yaml';
import { type ResolvedConfig, securityOf } from './config.ts';
import { UsageError } from './errors.ts';
import { type Paint, paint } from './view/format.ts';

export interface Output {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
  on?(event: 'resize', listener: () => void): unknown;
  off?(event: 'resize', listener: () => void): unknown;
}

export interface Io {
  stdout: Output;
  stderr: Output;
  env: NodeJS.ProcessEnv;
  /** Reacts to Ctrl-C while watching; returns a function that stops listening. */
  onInterrupt(listener: () => void): () => void;
}

export type Format = 'text' | 'json' | 'yaml';

/**
 * control's clients, made on first use: TLS verified against the CA, the token on every call. A
 * command that never calls control (config …) needs neither; one that does stops before its first
 * call when either is missing.
 */
export class Clients {
  readonly #address: string;
  readonly #security: () => ClientSecurity;
  #resolved?: ClientSecurity;
  #environments?: control.EnvironmentServiceClient;
  #pipelines?: control.PipelineServiceClient;
  #deployments?: control.DeploymentServiceClient;
  #access?: control.AccessServiceClient;

  constructor(address: string, security: () => ClientSecurity) {
    this.#address = address;
    this.#security = security;
  }
  #connect<C>(Client: Parameters<typeof connect<C>>[0]): C {
    this.#resolved ??= this.#security();
    return connect(Client, this.#address, this.#resolved);
  }
  get environments() {
    this.#environments ??= this.#connect(control.EnvironmentServiceClient);
    return this.#environments;
  }
  get pipelines() {
    this.#pipelines ??= this.#connect(control.PipelineServiceClient);
    return this.#pipelines;
  }
  get deployments() {
    this.#deployments ??= this.#connect(control.DeploymentServiceClient);
    return this.#deployments;
  }
  get access() {
    this.#access ??= this.#connect(control.AccessServiceClient);
    return this.#access;
  }
  close() {
    for (const c of [this.#environments, this.#pipelines, this.#deployments, this.#access]) c?.close();
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class Context {
  readonly io: Io;
  readonly config: ResolvedConfig;
  readonly clients: Clients;
  readonly format: Format;
  readonly paint: Paint;
  readonly requester: string;

  constructor(io: Io, config: ResolvedConfig, format: Format, requester: string) {
    this.io = io;
    this.config = config;
    this.format = format;
    this.clients = new Clients(config.address.value, () => securityOf(config));
    const color = io.stdout.isTTY === true && !io.env.NO_COLOR && io.env.TERM !== 'dumb';
    this.paint = paint(color);
    this.requester = requester;
  }

  get tty(): boolean {
    return this.io.stdout.isTTY === true && this.io.env.TERM !== 'dumb';
  }

  out(...lines: string[]): void {
    for (const l of lines) this.io.stdout.write(`${l}\n`);
  }
  err(...lines: string[]): void {
    for (const l of lines) this.io.stderr.write(`${l}\n`);
  }

  /** -o json / -o yaml: the data; otherwise the human view. */
  emit(data: unknown, human: () => void): void {
    if (this.format === 'json') this.io.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
    else if (this.format === 'yaml') this.io.stdout.write(toYaml(data));
    else human();
  }

  // --- finding things by the names people type ---

  /** `project/name`, `name` (with a default project, or unique across projects), or an environment id. */
  async environment(
    ref: string | undefined,
  ): Promise<{ environment: control.Environment; pipeline: control.Pipeline }> {
    const wanted = ref ?? this.config.environment;
    if (!wanted) {
      throw new UsageError(
        'name an environment: project/name, a name, or an id (or set a default: stageline config set environment project/name)',
      );
    }
    if (UUID.test(wanted)) {
      const got = await callUnary(this.clients.environments, 'getEnvironment', { environmentId: wanted });
      return { environment: got.environment!, pipeline: got.pipeline! };
    }
    const [project, name] = wanted.includes('/')
      ? (wanted.split('/', 2) as [string, string])
      : [this.config.project, wanted];
    const found = await this.findEnvironments(project, name);
    const live = found.filter((e) => e.status !== control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED);
    const candidates = live.length > 0 ? live : found;
    if (candidates.length === 0) {
      throw new UsageError(
        `no environment ${project ? `${project}/${name}` : name} at ${this.config.address.value} (stageline env list shows them)`,
      );
    }
    if (candidates.length > 1) {
      throw new UsageError(
        `several environments are named ${name}: ${candidates.map((e) => `${e.project}/${e.name}`).join(', ')} — say which with project/name`,
      );
    }
    const got = await callUnary(this.clients.environments, 'getEnvironment', { environmentId: candidates[0]!.id });
    return { environment: got.environment!, pipeline: got.pipeline! };
  }

  /** Every environment of a project (all projects when undefined), optionally only those with a name. */
  async findEnvironments(project: string | undefined, name?: string): Promise<control.Environment[]> {
    const out: control.Environment[] = [];
    let pageToken = '';
    do {
      const page = await callUnary(this.clients.environments, 'listEnvironments', {
        project: project ?? '',
        pageSize: 500,
        pageToken,
      });
      out.push(...page.environments.filter((e) => name === undefined || e.name === name));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    return out;
  }

  async services(environmentId: string): Promise<control.Service[]> {
    return (await callUnary(this.clients.environments, 'listServices', { environmentId })).services;
  }

  /** A service by name or id. */
  async service(environmentId: string, ref: string): Promise<control.Service> {
    const services = await this.services(environmentId);
    const found = services.find((s) => s.id === ref) ?? services.find((s) => s.name === ref);
    if (!found) {
      throw new UsageError(
        `no service ${ref} in this environment (it has: ${services.map((s) => s.name).join(', ') || 'none'})`,
      );
    }
    return found;
  }

  /** A stage by name, id or position. */
  stage(pipeline: control.Pipeline, ref: string): control.Stage {
    const found =
      pipeline.stages.find((s) => s.id === ref) ??
      pipeline.stages.find((s) => s.name === ref) ??
      (/^\d+$/.test(ref) ? pipeline.stages[Number(ref)] : undefined);
    if (!found) {
      throw new UsageError(
        `no stage ${JSON.stringify(ref)} (stages: ${pipeline.stages.map((s) => JSON.stringify(s.name)).join(', ')})`,
      );
    }
    return found;
  }

  /** A run by id, or by an id prefix among the environment's recent runs. */
  async run(ref: string, environmentId?: string): Promise<control.Deployment> {
    if (UUID.test(ref) || !environmentId) {
      return (await callUnary(this.clients.deployments, 'getDeployment', { deploymentId: ref })).deployment!;
    }
    const { deployments } = await callUnary(this.clients.deployments, 'listDeployments', {
      environmentId,
      pageSize: 500,
      pageToken: '',
    });
    const found = deployments.filter((d) => d.id.startsWith(ref));
    if (found.length !== 1) {
      throw new UsageError(found.length === 0 ? `no run ${ref} in this environment` : `run id ${ref} is ambiguous`);
    }
    return found[0]!;
  }

  /** The environment's newest run. */
  async latestRun(environmentId: string): Promise<control.Deployment | undefined> {
    const { deployments } = await callUnary(this.clients.deployments, 'listDeployments', {
      environmentId,
      pageSize: 1,
      pageToken: '',
    });
    return deployments[0];
  }
}
