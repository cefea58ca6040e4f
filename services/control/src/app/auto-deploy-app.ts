import { randomBytes } from 'node:crypto';
import { DomainError, failedPrecondition, invalidArgument } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { checkImageSource, checkSourceUrl, type SourcePolicy } from '@stageline/policy';
import { control } from '@stageline/proto';
import { SecretError, type Secrets } from '@stageline/secrets';
import {
  affectedServices,
  type Headers,
  type HookEvent,
  newestTag,
  type PullRequestEvent,
  type PushEvent,
  parseHookEvent,
  pathsMatch,
  previewName,
  previewWanted,
  repositoryKey,
  signatureValid,
  type TrackedService,
  tracks,
} from '../domain/auto-deploy.ts';
import { EnvStatus } from '../domain/kinds.ts';
import type { ControlApp } from './control-app.ts';
import type { Clock, EnvironmentAggregate, EnvironmentStore } from './model.ts';
import { servicesInOrder } from './views.ts';

// Auto-deploy: webhook deliveries and polls become runs. The decisions are domain/auto-deploy.ts's;
// this fetches the facts (the secret, the environment, git, the registry) and acts — a DEPLOY of the
// affected services, a preview clone, its deletion — as the environment's webhook identity.

export interface AutoDeployStore {
  setWebhookSecret(environmentId: string, sealed: string, at: Date): Promise<void>;
  webhookSecret(environmentId: string): Promise<string | undefined>;
  seen(serviceId: string): Promise<string | undefined>;
  setSeen(serviceId: string, seen: string, at: Date): Promise<void>;
  pollingEnvironments(): Promise<{ id: string; intervalSeconds: number }[]>;
}

export interface GitSource {
  /** The commit the branch names now; undefined when it does not exist. */
  head(url: string, branch: string): Promise<string | undefined>;
  /** Paths changed from `before` (empty: none known) to `after`; `unknown` when git cannot tell. */
  changedPaths(url: string, branch: string, before: string, after: string): Promise<string[] | 'unknown'>;
}

export interface RegistrySource {
  tags(image: string): Promise<string[]>;
}

/** What to ask of the planner (PlannerService/Submit); answers the run's id. */
export type Submit = (request: {
  environmentId: string;
  action: control.Action;
  serviceIds: string[];
  requester: string;
}) => Promise<string>;

export interface AutoDeployDeps {
  store: AutoDeployStore;
  environments: EnvironmentStore;
  control: ControlApp;
  secrets: Secrets;
  submit: Submit;
  git: GitSource;
  registry: RegistrySource;
  sources: SourcePolicy;
  clock: Clock;
  log: Logger;
}

/** An HTTP answer: status and JSON body. */
export interface HookAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** The identity auto-deploy acts as for an environment: the run's requester, the change's actor. */
export const webhookIdentity = (environmentId: string) => `webhook:${environmentId}`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const REFUSED: HookAnswer = { status: 401, body: { error: 'the delivery is not signed with a valid webhook secret' } };

/** What the decisions need of each service. */
export function trackedServices(aggregate: EnvironmentAggregate): TrackedService[] {
  return servicesInOrder(aggregate).map((s) => {
    const d = s.definition;
    const app =
      d.source.$case === 'application'
        ? d.source.value
        : d.source.$case === 'job' && d.source.value.from?.$case === 'application'
          ? d.source.value.from.value
          : undefined;
    return {
      id: s.id,
      name: d.name,
      ...(d.autoDeploy ? { auto: d.autoDeploy } : {}),
      ...(app ? { git: { url: app.gitUrl, branch: app.branch, commit: app.commit } } : {}),
    };
  });
}

export class AutoDeployApp {
  readonly #deps: AutoDeployDeps;

  constructor(deps: AutoDeployDeps) {
    this.#deps = deps;
  }

  /** RotateWebhookSecret: a new secret, sealed and stored; returned this once. */
  async rotateWebhookSecret(environmentId: string): Promise<control.RotateWebhookSecretResponse> {
    if (environmentId === '') throw invalidArgument('environment_id', 'is required');
    const aggregate = await this.#deps.environments.get(environmentId);
    if (aggregate.environment.status === EnvStatus.DELETED) throw failedPrecondition('the environment is deleted');
    const secret = randomBytes(32).toString('base64url');
    await this.#deps.store.setWebhookSecret(environmentId, this.#deps.secrets.seal(secret), this.#deps.clock.now());
    return { secret, path: `/hooks/${environmentId}` };
  }

  async #secretOf(environmentId: string): Promise<string> {
    const sealed = await this.#deps.store.webhookSecret(environmentId);
    if (sealed === undefined) return '';
    try {
      return this.#deps.secrets.open(sealed);
    } catch (e) {
      if (e instanceof SecretError) {
        this.#deps.log.error({ environmentId, err: e }, 'the webhook secret cannot be opened: rotate it');
        return '';
      }
      throw e;
    }
  }

  /**
   * One delivery to `/hooks/<environmentId>`. Unknown environment, no secret, missing or wrong
   * signature: the same 401. Then what it says happened is acted on (202) or ignored (202, with why).
   */
  async delivery(environmentId: string, headers: Headers, body: Buffer): Promise<HookAnswer> {
    if (!UUID.test(environmentId)) return REFUSED;
    const secret = await this.#secretOf(environmentId);
    if (!signatureValid(secret, headers, body)) return REFUSED;
    let payload: unknown;
    try {
      payload = JSON.parse(body.toString('utf8'));
    } catch {
      return { status: 400, body: { error: 'the body is not JSON' } };
    }
    const event = parseHookEvent(headers, payload);
    try {
      return { status: 202, body: await this.#act(environmentId, event) };
    } catch (e) {
      if (e instanceof DomainError) {
        this.#deps.log.warn({ environmentId, err: e }, 'webhook delivery refused');
        // The sender may deliver again later when Stageline could not answer; otherwise it is refused.
        const status = e.retryable ? 503 : e.code === 'ALREADY_EXISTS' ? 409 : 422;
        return { status, body: { error: e.message, code: e.code } };
      }
      throw e;
    }
  }

  async #act(environmentId: string, event: HookEvent): Promise<Record<string, unknown>> {
    if (event.kind === 'ignored') return { ignored: event.reason };
    const aggregate = await this.#deps.environments.get(environmentId);
    if (aggregate.environment.status === EnvStatus.DELETED) return { ignored: 'the environment is deleted' };
    if (event.kind === 'push') return this.#push(aggregate, event);
    return this.#pullRequest(aggregate, event);
  }

  async #push(aggregate: EnvironmentAggregate, event: PushEvent): Promise<Record<string, unknown>> {
    const environmentId = aggregate.environment.id;
    const tracking = trackedServices(aggregate).filter((s) => tracks(s, event.repositories, event.branch));
    // A commit the poller (or an earlier delivery of the same push) already handled is not deployed again.
    const candidates: TrackedService[] = [];
    for (const s of tracking) if ((await this.#deps.store.seen(s.id)) !== `commit:${event.after}`) candidates.push(s);
    if (tracking.length === 0) return { ignored: `no auto-deploy service tracks ${event.branch}`, services: [] };
    if (candidates.length === 0) return { ignored: `commit ${event.after} was already handled`, services: [] };
    const affected: string[] = [];
    // Changed paths: the payload's list, else git's diff of the service's repository.
    const byRepo = new Map<string, TrackedService[]>();
    for (const s of candidates) {
      const key = repositoryKey(s.git!.url);
      byRepo.set(key, [...(byRepo.get(key) ?? []), s]);
    }
    for (const group of byRepo.values()) {
      const paths =
        event.paths ?? (await this.#changedPaths(group[0]!.git!.url, event.branch, event.before, event.after));
      for (const s of affectedServices(group, event, paths)) affected.push(s.id);
    }
    // Seen once handled: a delivery the planner could not take (503) is taken again when redelivered.
    const seen = async () => {
      const now = this.#deps.clock.now();
      for (const s of candidates) await this.#deps.store.setSeen(s.id, `commit:${event.after}`, now);
    };
    const services = candidates.filter((s) => affected.includes(s.id));
    if (services.length === 0) {
      await seen();
      return { ignored: 'no changed path matches an auto-deploy service', services: [] };
    }
    const deploymentId = await this.#deploy(
      environmentId,
      services.map((s) => s.id),
    );
    await seen();
    this.#deps.log.info(
      { environmentId, deploymentId, services: services.map((s) => s.name), after: event.after },
      'auto-deploy: push',
    );
    return { deploymentId, services: services.map((s) => s.name) };
  }

  async #changedPaths(url: string, branch: string, before: string, after: string): Promise<string[] | 'unknown'> {
    if (checkSourceUrl(this.#deps.sources, url) !== undefined) return 'unknown';
    try {
      return await this.#deps.git.changedPaths(url, branch, before, after);
    } catch (e) {
      this.#deps.log.warn({ err: e, url }, 'auto-deploy: changed paths unknown');
      return 'unknown';
    }
  }

  /** A run requested as the webhook identity of `by` (the environment whose secret or settings caused it). */
  #deploy(
    environmentId: string,
    serviceIds: string[],
    action: control.Action = control.Action.ACTION_DEPLOY,
    by = environmentId,
  ): Promise<string> {
    return this.#deps.submit({ environmentId, action, serviceIds, requester: webhookIdentity(by) });
  }

  async #previewOf(aggregate: EnvironmentAggregate, number: number): Promise<control.Environment | undefined> {
    const name = previewName(aggregate.environment.name, number);
    let pageToken = '';
    do {
      const page = await this.#deps.control.listEnvironments({
        project: aggregate.environment.project,
        pageSize: 500,
        pageToken,
      });
      const found = page.environments.find(
        (e) =>
          e.name === name &&
          e.clonedFromId === aggregate.environment.id &&
          e.preview &&
          e.status !== control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED,
      );
      if (found) return found;
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    return undefined;
  }

  async #pullRequest(aggregate: EnvironmentAggregate, event: PullRequestEvent): Promise<Record<string, unknown>> {
    const env = aggregate.environment;
    if (!env.settings.autoDeploy?.previewSource) return { ignored: 'the environment is not a preview source' };
    const tracked = trackedServices(aggregate);
    if (!previewWanted(tracked, event)) return { ignored: `no auto-deploy service tracks ${event.base}` };
    const existing = await this.#previewOf(aggregate, event.number);
    const as = this.#deps.control.as(webhookIdentity(env.id));
    if (event.action === 'closed') {
      if (existing === undefined) return { ignored: 'no preview environment for this pull request' };
      const deploymentId = await this.#deploy(existing.id, [], control.Action.ACTION_DELETE, env.id);
      this.#deps.log.info({ environmentId: existing.id, deploymentId }, 'auto-deploy: preview deleted');
      return { previewEnvironmentId: existing.id, deploymentId };
    }
    let previewId = existing?.id;
    if (previewId === undefined) {
      if (event.action !== 'opened') return { ignored: 'no preview environment for this pull request' };
      const { environment } = await as.cloneEnvironment({
        sourceEnvironmentId: env.id,
        name: previewName(env.name, event.number),
        preview: true,
      });
      previewId = environment!.id;
      // The clone's services that follow the base branch follow the request's branch instead.
      const { services } = await as.listServices({ environmentId: previewId });
      for (const service of services) {
        const src = service.source;
        const app =
          src?.$case === 'application'
            ? src.value
            : src?.$case === 'job' && src.value.from?.$case === 'application'
              ? src.value.from.value
              : undefined;
        const mine = tracked.find((t) => t.name === service.name);
        if (app === undefined || mine === undefined || !tracks(mine, event.repositories, event.base)) continue;
        app.branch = event.branch;
        await as.updateService({ environmentId: previewId, service });
      }
    }
    const deploymentId = await this.#deploy(previewId, [], control.Action.ACTION_DEPLOY, env.id);
    this.#deps.log.info({ environmentId: previewId, deploymentId, branch: event.branch }, 'auto-deploy: preview');
    return { previewEnvironmentId: previewId, deploymentId };
  }

  /**
   * One poll of an environment: each auto-deploy service's branch head (a new commit deploys it when a
   * changed path matches; the first look only records the head) and, for a tag pattern, the newest
   * matching tag of its image (written to the service and deployed when it is not the current one).
   */
  async poll(environmentId: string): Promise<string | undefined> {
    const aggregate = await this.#deps.environments.get(environmentId);
    if (aggregate.environment.status === EnvStatus.DELETED) return undefined;
    const deploy: string[] = [];
    // What was seen is recorded once handled: when the run cannot be asked for, the next poll tries again.
    const seen: [serviceId: string, value: string][] = [];
    const failed = (serviceId: string, err: unknown) =>
      this.#deps.log.warn({ err, environmentId, serviceId }, 'auto-deploy: polling a service failed');
    for (const s of trackedServices(aggregate)) {
      if (!s.auto?.enabled || s.git === undefined || s.git.commit !== '') continue;
      if (checkSourceUrl(this.#deps.sources, s.git.url) !== undefined) continue;
      const branch = s.git.branch || 'main';
      try {
        const head = await this.#deps.git.head(s.git.url, branch);
        if (head === undefined) continue;
        const last = await this.#deps.store.seen(s.id);
        if (last === `commit:${head}`) continue;
        seen.push([s.id, `commit:${head}`]);
        if (last === undefined || !last.startsWith('commit:')) continue;
        const paths = await this.#changedPaths(s.git.url, branch, last.slice('commit:'.length), head);
        if (pathsMatch(s.auto, paths)) deploy.push(s.id);
      } catch (e) {
        failed(s.id, e);
      }
    }
    const as = this.#deps.control.as(webhookIdentity(environmentId));
    for (const record of servicesInOrder(aggregate)) {
      const auto = record.definition.autoDeploy;
      const src = record.definition.source;
      const container =
        src.$case === 'container'
          ? src.value
          : src.$case === 'job' && src.value.from?.$case === 'container'
            ? src.value.from.value
            : undefined;
      if (!auto?.enabled || auto.tagPattern === '' || container === undefined) continue;
      if (checkImageSource(this.#deps.sources, container.image) !== undefined) continue;
      try {
        const newest = newestTag(await this.#deps.registry.tags(container.image), auto.tagPattern);
        if (newest === undefined || newest === container.tag) continue;
        const { services } = await as.listServices({ environmentId });
        const view = services.find((v) => v.id === record.id);
        if (view === undefined) continue;
        const source = view.source;
        if (source?.$case === 'container') source.value.tag = newest;
        else if (source?.$case === 'job' && source.value.from?.$case === 'container')
          source.value.from.value.tag = newest;
        // Written first: the run deploys the service as configured (the tag stays if the run cannot be asked for).
        await as.updateService({ environmentId, service: view });
        seen.push([record.id, `tag:${newest}`]);
        deploy.push(record.id);
      } catch (e) {
        failed(record.id, e);
      }
    }
    const deploymentId = deploy.length === 0 ? undefined : await this.#deploy(environmentId, deploy);
    const now = this.#deps.clock.now();
    for (const [serviceId, value] of seen) await this.#deps.store.setSeen(serviceId, value, now);
    if (deploymentId !== undefined)
      this.#deps.log.info({ environmentId, deploymentId, services: deploy }, 'auto-deploy: poll');
    return deploymentId;
  }

  /** Polls every environment with a poll interval when it is due, until stopped. */
  startPolling(tickMs = 2_000): { stop(): Promise<void> } {
    const last = new Map<string, number>();
    let running: Promise<void> = Promise.resolve();
    let stopped = false;
    const tick = async () => {
      const now = this.#deps.clock.now().getTime();
      for (const { id, intervalSeconds } of await this.#deps.store.pollingEnvironments()) {
        if (stopped) return;
        if (now - (last.get(id) ?? 0) < intervalSeconds * 1000) continue;
        last.set(id, now);
        try {
          await this.poll(id);
        } catch (e) {
          this.#deps.log.warn({ err: e, environmentId: id }, 'auto-deploy: poll failed');
        }
      }
    };
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      running = tick()
        .catch((e: unknown) => this.#deps.log.warn({ err: e }, 'auto-deploy: polling failed'))
        .finally(() => {
          busy = false;
        });
    }, tickMs);
    return {
      async stop() {
        stopped = true;
        clearInterval(timer);
        await running;
      },
    };
  }
}
