// Auto-deploy: auto-deploy show|secret|settings|service (README: "Auto-deploy and preview environments").
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { Command } from 'commander';
import type { Context } from '../context.ts';
import { UsageError } from '../errors.ts';
import { table } from '../view/format.ts';

function autoText(a: control.AutoDeploy | undefined): string[] {
  if (!a?.enabled) return ['off', '', '', ''];
  return ['on', a.includePaths.join(' ') || '(any)', a.excludePaths.join(' '), a.tagPattern];
}

/** The environment's triggers and each service's auto-deploy. */
export async function autoDeployShow(ctx: Context, ref: string | undefined): Promise<void> {
  const { environment } = await ctx.environment(ref);
  const services = await ctx.services(environment.id);
  const settings = environment.settings?.autoDeploy ?? { pollIntervalSeconds: 0, previewSource: false };
  ctx.emit(
    {
      environment: `${environment.project}/${environment.name}`,
      settings: control.AutoDeploySettings.toJSON(settings),
      services: services.map((s) => ({
        name: s.name,
        autoDeploy: s.autoDeploy ? control.AutoDeploy.toJSON(s.autoDeploy) : null,
      })),
    },
    () => {
      const poll = settings.pollIntervalSeconds ?? 0;
      ctx.out(
        `${environment.project}/${environment.name}: webhook POST /hooks/${environment.id} on control's HTTPS listener`,
        `polling: ${poll === 0 ? 'off' : `every ${poll} s`}; preview source: ${settings.previewSource ? 'yes' : 'no'}`,
        '',
        ...table([
          ['SERVICE', 'AUTO', 'INCLUDE', 'EXCLUDE', 'TAGS'],
          ...services.map((s) => [s.name, ...autoText(s.autoDeploy)]),
        ]),
      );
    },
  );
}

/** A new webhook secret, shown this once. */
export async function autoDeploySecret(ctx: Context, ref: string | undefined): Promise<void> {
  const { environment } = await ctx.environment(ref);
  const response = await callUnary(ctx.clients.environments, 'rotateWebhookSecret', { environmentId: environment.id });
  ctx.emit(control.RotateWebhookSecretResponse.toJSON(response), () =>
    ctx.out(
      `webhook secret of ${environment.project}/${environment.name} (shown once; the previous one no longer works):`,
      '',
      `  ${response.secret}`,
      '',
      `deliveries: POST https://<control's console address>${response.path}`,
      'GitHub: content type application/json, this secret; GitLab: this secret token;',
      'other senders: header X-Stageline-Signature: sha256=<hex HMAC-SHA256 of the body with this secret>',
    ),
  );
}

/** Polling and the preview-source mark. */
export async function autoDeploySettings(
  ctx: Context,
  ref: string | undefined,
  opts: { poll?: string; previewSource?: boolean },
): Promise<void> {
  const { environment } = await ctx.environment(ref);
  const autoDeploy: control.AutoDeploySettings = {};
  if (opts.poll !== undefined) {
    if (!/^\d+$/.test(opts.poll)) throw new UsageError('--poll: seconds (0 turns polling off)');
    autoDeploy.pollIntervalSeconds = Number(opts.poll);
  }
  if (opts.previewSource !== undefined) autoDeploy.previewSource = opts.previewSource;
  if (Object.keys(autoDeploy).length === 0)
    throw new UsageError('say what to change: --poll, --preview-source or --no-preview-source');
  await callUnary(
    ctx.clients.environments,
    'updateEnvironment',
    control.UpdateEnvironmentRequest.fromPartial({ environmentId: environment.id, settings: { autoDeploy } }),
  );
  await autoDeployShow(ctx, environment.id);
}

/** A service's auto-deploy: on or off, its path globs, its tag pattern. */
export async function autoDeployService(
  ctx: Context,
  ref: string | undefined,
  serviceRef: string,
  opts: { off?: boolean; include?: string[]; exclude?: string[]; tagPattern?: string },
): Promise<void> {
  const { environment } = await ctx.environment(ref);
  const service = await ctx.service(environment.id, serviceRef);
  const current = service.autoDeploy ?? { enabled: false, includePaths: [], excludePaths: [], tagPattern: '' };
  service.autoDeploy = {
    enabled: !opts.off,
    includePaths: opts.include ?? current.includePaths,
    excludePaths: opts.exclude ?? current.excludePaths,
    tagPattern: opts.tagPattern ?? current.tagPattern,
  };
  // Secret values come back empty from reads: sent empty, the stored ones are kept.
  await callUnary(ctx.clients.environments, 'updateService', { environmentId: environment.id, service });
  await autoDeployShow(ctx, environment.id);
}

type Act = <A extends unknown[]>(
  handler: (ctx: Context, ...args: A) => Promise<void>,
) => (...args: unknown[]) => Promise<void>;

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** `stageline auto-deploy …` (-e names the environment). */
export function autoDeployCommands(program: Command, act: Act): void {
  const auto = program
    .command('auto-deploy')
    .description('deploys on push, pull-request previews, git and registry polling (-e names the environment)');
  auto
    .command('show')
    .argument('[environment]')
    .description("the environment's triggers and each service's auto-deploy")
    .action(act((ctx, ref: string | undefined) => autoDeployShow(ctx, ref)));
  auto
    .command('secret')
    .argument('[environment]')
    .description('a new webhook secret (shown once; the previous one stops working); admin')
    .action(act((ctx, ref: string | undefined) => autoDeploySecret(ctx, ref)));
  auto
    .command('settings')
    .argument('[environment]')
    .option('--poll <seconds>', 'poll tracked branches and image tags every so many seconds (10..86400; 0: off)')
    .option('--preview-source', 'pull requests against its branches get a preview environment')
    .option('--no-preview-source', 'no previews')
    .description('polling and the preview-source mark')
    .action(
      act((ctx, ref: string | undefined, opts: { poll?: string; previewSource?: boolean }) =>
        autoDeploySettings(ctx, ref, opts),
      ),
    );
  auto
    .command('service')
    .argument('<service>')
    .option('--off', 'turn auto-deploy off for it', false)
    .option('--include <glob>', 'deploy when a changed path matches (repeatable; none: any path)', collect)
    .option('--exclude <glob>', 'but not when it only matches these (repeatable)', collect)
    .option('--tag-pattern <glob>', 'container services: deploy the newest tag matching it (e.g. "1.*")')
    .description("turn a service's auto-deploy on (or --off), with its path globs and tag pattern")
    .action(
      act((ctx, svc: string, opts: { off?: boolean; include?: string[]; exclude?: string[]; tagPattern?: string }) =>
        autoDeployService(ctx, undefined, svc, opts),
      ),
    );
}
