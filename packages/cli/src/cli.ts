// The command line: every command, its options and help, and the mapping from what went wrong to
// an exit code. `run(argv, io)` is the whole program; main.ts only plugs in the process.
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { fieldOf, isServiceError } from '@stageline/grpc';
import { Command, CommanderError, Option } from 'commander';
import { rotateKey } from './commands/admin.ts';
import { autoDeployCommands } from './commands/auto-deploy.ts';
import {
  envClone,
  envGet,
  envList,
  pipelineCommand,
  serviceList,
  serviceMove,
  serviceSkip,
  stageCreate,
  stageDelete,
  stageMove,
  stageRename,
  statusCommand,
} from './commands/environments.ts';
import { applyCommand, diffCommand } from './commands/files.ts';
import {
  type ActionVerb,
  actionCommand,
  cancelCommand,
  cronRunsCommand,
  explainBuildCommand,
  historyCommand,
  logsCommand,
  planCommand,
  releasesCommand,
  resumeCommand,
  rollbackCommand,
  showCommand,
  watchCommand,
} from './commands/runs.ts';
import { tokenCreate, tokenList, tokenRevoke } from './commands/tokens.ts';
import {
  CONFIG_KEYS,
  type ConfigFile,
  configValue,
  NO_TOKEN,
  RETIRED_KEYS,
  readConfig,
  resolveConfig,
  tokenStatus,
  writeConfigValue,
} from './config.ts';
import { Context, type Format, type Io } from './context.ts';
import { EnvironmentFileError, formatProblem } from './env-file/load.ts';
import { EXIT, ExitCode, UsageError } from './errors.ts';

export const VERSION = '0.1.0';

interface GlobalOptions {
  address?: string;
  ca?: string;
  token?: string;
  tokenFile?: string;
  /** Every --project given: the last is the default project; `token create` takes them all. */
  project?: string[];
  env?: string;
  output: Format;
}

/** A repeatable option's values, in order. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

function requester(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

export async function run(argv: string[], io: Io): Promise<number> {
  let exitCode: number = EXIT.OK;
  let context: Context | undefined;
  let globals: GlobalOptions | undefined;
  const program = new Command('stageline');

  const contextOf = (cmd: Command): Context => {
    const g = cmd.optsWithGlobals<GlobalOptions>();
    globals = g;
    const config = resolveConfig(
      { address: g.address, ca: g.ca, token: g.token, tokenFile: g.tokenFile, project: g.project?.at(-1) },
      io.env,
    );
    if (g.env) config.environment = g.env;
    context = new Context(io, config, g.output, requester());
    return context;
  };
  /** Wraps a handler: its last argument is the Command (commander's convention). */
  const act =
    <A extends unknown[]>(handler: (ctx: Context, ...args: A) => Promise<void>) =>
    async (...args: unknown[]) => {
      const cmd = args.at(-1) as Command;
      await handler(contextOf(cmd), ...(args.slice(0, -1) as A));
    };

  program
    .description('Drive Stageline from a terminal: environments as code, deploys with a live view, logs, history.')
    .option(
      '--address <host:port>',
      'control gRPC address (env STAGELINE_ADDRESS, config "address"; default 127.0.0.1:50051)',
    )
    .option('--ca <file>', 'CA certificate (PEM) to verify control with (env STAGELINE_CA, config "ca")')
    .option(
      '--token <token>',
      'API token sent with every call (env STAGELINE_TOKEN, config "token"; prefer a file: the command line is visible to others)',
    )
    .option(
      '--token-file <file>',
      'file holding the API token, used when no token is given directly (env STAGELINE_TOKEN_FILE, config "tokenFile")',
    )
    .option(
      '--project <project>',
      'default project for environment names without one (env STAGELINE_PROJECT); token create: a project the token is limited to (repeatable)',
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('-e, --env <environment>', 'the environment: project/name, a name, or an id (env STAGELINE_ENVIRONMENT)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json', 'yaml']).default('text'))
    .showHelpAfterError('(stageline --help lists the commands)')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .exitOverride();
  program.addHelpText(
    'after',
    `
stageline --version prints the version.
Environments are named project/name (or just name, with --project or a default project), or by id.
Every call to control is TLS (verified against --ca) and carries an API token (--token or --token-file);
stageline config view shows which are in force and where each came from.
Exit codes: 0 success; 1 a watched run did not succeed, or diff found changes; 2 usage or file errors
(a missing token or CA included); 3 the server refused (a token it does not accept, a role it lacks)
or could not be reached; 130 interrupted.
The environment file format: packages/cli/schema/environment.schema.json.`,
  );

  // --- environments as code ---
  program
    .command('apply')
    .description('create or update the environment a file describes (a second apply changes nothing)')
    .requiredOption('-f, --file <file>', 'environment file (YAML)')
    .option('--prune', 'also remove services and delete stages the file does not list', false)
    .action(act((ctx, opts: { file: string; prune: boolean }) => applyCommand(ctx, opts.file, opts)));
  program
    .command('diff')
    .description('show what apply would change (exit 1 when something would)')
    .requiredOption('-f, --file <file>', 'environment file (YAML)')
    .option('--prune', 'include what --prune would remove', false)
    .action(act((ctx, opts: { file: string; prune: boolean }) => diffCommand(ctx, opts.file, opts)));

  // --- reading and shaping ---
  const env = program.command('env').description('list, show and clone environments');
  env
    .command('list')
    .description('environments (of the default project, if one is set)')
    .option('-A, --all-projects', 'every project, even with a default project set', false)
    .action(act((ctx, opts: { allProjects: boolean }) => envList(ctx, opts)));
  env
    .command('get')
    .argument('[environment]')
    .description('one environment: settings, status and pipeline')
    .action(act((ctx, ref: string | undefined) => envGet(ctx, ref)));
  env
    .command('clone')
    .argument('<environment>', 'the source')
    .argument('<name>', 'the new environment, in the same project')
    .option('--preview', 'mark it as a preview environment', false)
    .description('copy services, stages and skipped flags into a new environment (not data, not runs)')
    .action(act((ctx, ref: string, name: string, opts: { preview: boolean }) => envClone(ctx, ref, name, opts)));

  program
    .command('pipeline')
    .argument('[environment]')
    .description('stages in order and their services')
    .action(act((ctx, ref: string | undefined) => pipelineCommand(ctx, ref)));

  const stage = program
    .command('stage')
    .description('create, move, rename and delete stages (-e names the environment)');
  stage
    .command('create')
    .argument('<name>')
    .option('--description <text>')
    .option('--position <n>', '0-based; default last')
    .description('add a stage')
    .action(
      act((ctx, name: string, opts: { description?: string; position?: string }) =>
        stageCreate(ctx, undefined, name, opts),
      ),
    );
  stage
    .command('move')
    .argument('<stage>', 'name, id or position')
    .argument('<position>', '0-based')
    .description('move a stage to a new position')
    .action(act((ctx, ref: string, position: string) => stageMove(ctx, undefined, ref, position)));
  stage
    .command('rename')
    .argument('<stage>', 'name, id or position')
    .argument('<new-name>')
    .option('--description <text>', 'also set its description')
    .description('rename a stage (and describe it)')
    .action(
      act((ctx, ref: string, name: string, opts: { description?: string }) =>
        stageRename(ctx, undefined, ref, name, opts),
      ),
    );
  stage
    .command('delete')
    .argument('<stage>', 'name, id or position')
    .option('--move-services-to <stage>', 'where its services go (required when it has any)')
    .description('delete a stage')
    .action(act((ctx, ref: string, opts: { moveServicesTo?: string }) => stageDelete(ctx, undefined, ref, opts)));

  const service = program
    .command('service')
    .description('list services, move them, skip and unskip them (-e names the environment)');
  service
    .command('list')
    .argument('[environment]')
    .description('services with kind, stage, source and endpoints')
    .action(act((ctx, ref: string | undefined) => serviceList(ctx, ref)));
  service
    .command('move')
    .argument('<service>')
    .argument('<stage>', 'name, id or position')
    .description('move a service to another stage')
    .action(act((ctx, svc: string, to: string) => serviceMove(ctx, undefined, svc, to)));
  service
    .command('skip')
    .argument('<service>')
    .description('leave a service out of environment-level deploy, redeploy, stop and restart')
    .action(act((ctx, svc: string) => serviceSkip(ctx, undefined, svc, true)));
  service
    .command('unskip')
    .argument('<service>')
    .description('include a skipped service again')
    .action(act((ctx, svc: string) => serviceSkip(ctx, undefined, svc, false)));

  program
    .command('status')
    .argument('[environment]')
    .description("the environment, each service's latest state and endpoints, the last run")
    .action(act((ctx, ref: string | undefined) => statusCommand(ctx, ref)));

  // --- actions ---
  const verbs: [ActionVerb, string][] = [
    ['deploy', 'build, mirror and deploy stage by stage (or one --service, optionally at --version)'],
    ['redeploy', 're-apply every service at the version it runs, with its current configuration'],
    ['stop', 'scale to zero, stages in reverse order (data kept)'],
    ['restart', 'rolling restart in stage order, no build'],
    ['delete', 'remove every service and its data, then the environment (or one --service)'],
  ];
  for (const [verb, description] of verbs) {
    const cmd = program
      .command(verb)
      .argument('[environment]')
      .description(description)
      .option('-w, --watch', 'follow the run live until it ends; exit 1 unless it succeeds', false);
    cmd.option('--service <service>', 'act on this service only; repeat it for several (one run)', collect);
    if (verb === 'deploy') {
      cmd.option('--version <version>', 'commit:<sha>, tag:<tag> or revision:<n> (needs exactly one --service)');
      cmd.option('--pin <service=version>', 'environment deploy: this service at this version (repeatable)', collect);
    }
    if (verb === 'deploy' || verb === 'redeploy')
      cmd.option('--force-build', 'rebuild even when the image is already in the mirror', false);
    if (verb === 'delete') cmd.option('-y, --yes', 'confirm deleting a whole environment', false);
    cmd.action(
      act((ctx, ref: string | undefined, opts: Record<string, unknown>) => actionCommand(ctx, verb, ref, opts)),
    );
  }
  program
    .command('rollback')
    .argument('[environment]')
    .requiredOption('--to <run>', 'a succeeded run: every service goes back to the version it had after it')
    .option('-w, --watch', 'follow the run live', false)
    .option('--run-lifecycle-jobs', 'run the lifecycle jobs configured for DEPLOY again (default: skipped)', false)
    .description(
      "back to a past successful run: each service's image and configuration as it deployed them (no rebuild)",
    )
    .action(
      act((ctx, ref: string | undefined, opts: { to: string; watch: boolean; runLifecycleJobs: boolean }) =>
        rollbackCommand(ctx, ref, opts),
      ),
    );
  program
    .command('resume')
    .argument('<run>', 'a FAILED or CANCELED run id')
    .option('-w, --watch', 'follow the run live until it ends; exit 1 unless it succeeds', false)
    .description('take a failed or canceled run up where it stopped: only the services that did not succeed run')
    .action(act((ctx, id: string, opts: { watch: boolean }) => resumeCommand(ctx, id, opts)));
  program
    .command('cancel')
    .argument('<run>', 'run id')
    .option('-w, --watch', 'follow the run until it has stopped; exit 0 once CANCELED', false)
    .description('cancel a queued or running run (deploys in flight roll back)')
    .action(act((ctx, id: string, opts: { watch: boolean }) => cancelCommand(ctx, id, opts)));
  program
    .command('watch')
    .argument('<run>', 'run id')
    .description('follow a run live until it ends; exit 1 unless it succeeds')
    .action(act((ctx, id: string) => watchCommand(ctx, id)));
  program
    .command('show')
    .argument('<run>', 'run id')
    .description('one run: stages, services, steps with durations, why it failed')
    .action(act((ctx, id: string) => showCommand(ctx, id)));

  // --- before and after ---
  program
    .command('plan')
    .argument('[environment]')
    .option('--action <action>', 'deploy, redeploy, stop, restart, delete or rollback', 'deploy')
    .option('--service <service...>', 'service-level: these services only')
    .option('--version <version>', 'with one --service')
    .option('--to <run>', 'rollback target')
    .option('--force-build', 'as deploy --force-build', false)
    .option('--run-lifecycle-jobs', 'as rollback --run-lifecycle-jobs', false)
    .description('dry run: what would be built or mirrored (cache hits marked), deployed or skipped')
    .action(
      act(
        (
          ctx,
          ref: string | undefined,
          opts: {
            action: string;
            service?: string[];
            version?: string;
            to?: string;
            forceBuild?: boolean;
            runLifecycleJobs?: boolean;
          },
        ) => planCommand(ctx, ref, opts),
      ),
    );
  program
    .command('history')
    .argument('[environment]')
    .option('--limit <n>', 'how many runs, newest first', '20')
    .description('past runs, newest first')
    .action(act((ctx, ref: string | undefined, opts: { limit: string }) => historyCommand(ctx, ref, opts)));
  program
    .command('releases')
    .argument('[environment]')
    .requiredOption('--service <service>', 'a service of the environment')
    .description("a service's release history, newest first: revision, status, version, image, the run")
    .action(act((ctx, ref: string | undefined, opts: { service: string }) => releasesCommand(ctx, ref, opts)));
  program
    .command('cron-runs')
    .argument('[environment]')
    .requiredOption('--service <service>', 'a CRON_JOB of the environment')
    .option('--limit <n>', 'how many runs, newest first', '20')
    .option('--log', "each run's log lines too", false)
    .description("a cron job's runs on the local runtime, newest first")
    .action(
      act((ctx, ref: string | undefined, opts: { service: string; limit: string; log?: boolean }) =>
        cronRunsCommand(ctx, ref, opts),
      ),
    );
  program
    .command('logs')
    .argument('[environment]')
    .option('--run <run>', "this run (default: the environment's latest)")
    .option('-f, --follow', 'keep following until the run ends (a service alone: the default)')
    .option('--no-follow', "a service's output so far, without following")
    .option('--service <service>', "one service; without --run and --step: the service's own output, live")
    .option('--step <step>', 'one step: git_clone, build, mirror_image, deployment, stop, restart, delete, executing')
    .option('--tail <n>', "a service's output: the last n lines of each instance first (default 100)")
    .option('--since <time>', "a service's output: only lines since 30s, 10m, 2h, 1d ago or a date")
    .description("log lines of a run, or a service's own output (-o json: one JSON object per line)")
    .action(
      act(
        (
          ctx,
          ref: string | undefined,
          opts: { run?: string; follow?: boolean; service?: string; step?: string; tail?: string; since?: string },
        ) => logsCommand(ctx, ref, opts),
      ),
    );
  program
    .command('explain-build')
    .argument('[environment]')
    .requiredOption('--service <service>', 'an APPLICATION service (or job built from git)')
    .option('--run <run>', 'the build of this run (default: the latest)')
    .description('why a build was a cache hit or was rebuilt: its cache key and inputs')
    .action(
      act((ctx, ref: string | undefined, opts: { service: string; run?: string }) =>
        explainBuildCommand(ctx, ref, opts),
      ),
    );

  // --- access ---
  const token = program.command('token').description('API tokens: create, list, revoke (each needs an admin token)');
  token
    .command('create')
    .argument('<name>', "letters, digits, '.', '_' and '-'; unique among tokens not revoked")
    .requiredOption('--role <role>', 'viewer (reads), deployer (reads and actions) or admin (everything)')
    .option('--ttl <duration>', 'how long it lives: 30d, 12h, 45m, 3600s; 0 never expires', '0')
    .description('make a token; it is printed once, never again (stdout: the token alone)')
    .addHelpText(
      'after',
      `
--project P (repeatable) limits the token to those projects; without it, the token sees every project.
  stageline token create ci --role deployer --project demo --ttl 30d > ci.token`,
    )
    .action(
      act((ctx, name: string, opts: { role: string; ttl: string }) =>
        tokenCreate(ctx, name, { ...opts, projects: globals?.project ?? [] }),
      ),
    );
  token
    .command('list')
    .description('every token, newest first, revoked and expired ones included (never their secrets)')
    .action(act((ctx) => tokenList(ctx)));
  token
    .command('revoke')
    .argument('<id>', "the token's id (or the name of a token that is not revoked)")
    .description('revoke a token: calls with it are refused from then on')
    .action(act((ctx, id: string) => tokenRevoke(ctx, id)));

  autoDeployCommands(program, act);

  const admin = program.command('admin').description('the installation (each needs an admin token)');
  admin
    .command('rotate-key')
    .description('make a new secret key the active one and seal every stored secret value again under it, online')
    .action(act((ctx) => rotateKey(ctx)));

  // --- configuration ---
  const config = program
    .command('config')
    .description('the config file (~/.config/stageline/config.yaml, or STAGELINE_CONFIG)');
  config
    .command('view')
    .description('the settings in force and where each comes from (never the token itself)')
    .action(
      act(async (ctx) => {
        const c = ctx.config;
        const token = tokenStatus(c.token);
        const tokenText =
          token.from === undefined
            ? `-  (none: ${NO_TOKEN.replace(/^no token: /, '')})`
            : token.set
              ? `(set)  (${token.file === undefined ? token.from : `read from ${token.file}, named by ${token.from}`})`
              : `(not usable: ${token.problem})  (${token.from})`;
        const caText =
          c.ca === undefined
            ? '-  (none: pass --ca <file>, set STAGELINE_CA, or stageline config set ca <file>)'
            : `${c.ca.value}  (${c.ca.from})${existsSync(c.ca.value) ? '' : '  — the file does not exist'}`;
        ctx.emit(
          {
            address: c.address,
            ca: c.ca ?? null,
            token,
            project: c.project ?? null,
            environment: c.environment ?? null,
            configPath: c.configPath,
          },
          () =>
            ctx.out(
              `config file   ${c.configPath}`,
              `address       ${c.address.value}  (${c.address.from})`,
              `ca            ${caText}`,
              `token         ${tokenText}`,
              `project       ${c.project ?? '-'}`,
              `environment   ${c.environment ?? '-'}`,
            ),
        );
      }),
    );
  config
    .command('set')
    .argument('<key>', CONFIG_KEYS.join(' | '))
    .argument('<value>')
    .description(
      'set a default (address, ca, token, tokenFile, project, environment); a file with a token is made 0600',
    )
    .action(
      act(async (ctx, key: string, value: string) => {
        if (!(CONFIG_KEYS as string[]).includes(key))
          throw new UsageError(`unknown key ${key}: one of ${CONFIG_KEYS.join(', ')}`);
        readConfig(ctx.config.configPath);
        const stored = configValue(key as keyof ConfigFile, value);
        writeConfigValue(ctx.config.configPath, key, stored);
        ctx.out(`${key} = ${key === 'token' ? '(set)' : stored}  (${ctx.config.configPath})`);
      }),
    );
  config
    .command('unset')
    .argument('<key>', CONFIG_KEYS.join(' | '))
    .description('remove a default')
    .action(
      act(async (ctx, key: string) => {
        if (!(CONFIG_KEYS as string[]).includes(key) && !(key in RETIRED_KEYS))
          throw new UsageError(`unknown key ${key}: one of ${CONFIG_KEYS.join(', ')}`);
        writeConfigValue(ctx.config.configPath, key, undefined);
        ctx.out(`${key} unset  (${ctx.config.configPath})`);
      }),
    );

  // Not commander's .version(): its --version would shadow `deploy --version <version>`.
  const withValue = new Set([
    '--address',
    '--ca',
    '--token',
    '--token-file',
    '--project',
    '-e',
    '--env',
    '-o',
    '--output',
  ]);
  const bare = argv.filter((a, i) => !withValue.has(a) && !withValue.has(argv[i - 1] ?? '') && !a.includes('='));
  if (bare.length === 1 && (bare[0] === '--version' || bare[0] === '-V')) {
    io.stdout.write(`${VERSION}\n`);
    return EXIT.OK;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    exitCode = report(e, io, context);
  } finally {
    context?.clients.close();
  }
  return exitCode;
}

/** What went wrong, said once on stderr, and the exit code for it. */
function report(e: unknown, io: Io, ctx: Context | undefined): number {
  const say = (s: string) => io.stderr.write(`${s}\n`);
  if (e instanceof ExitCode) {
    if (e.message) say(e.message);
    return e.code;
  }
  if (e instanceof CommanderError) {
    // Help and --version end through here too, with code 0.
    return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  }
  if (e instanceof EnvironmentFileError) {
    for (const p of e.problems) say(formatProblem(p));
    const count = `${e.problems.length} problem${e.problems.length === 1 ? '' : 's'} in the environment file`;
    say(
      e.during === 'check'
        ? `stageline: ${count}; nothing was changed.`
        : `stageline: ${count}; apply stopped there (what came before it was applied: diff -f shows what is left).`,
    );
    return EXIT.USAGE;
  }
  if (e instanceof UsageError) {
    say(`stageline: ${e.message}`);
    return EXIT.USAGE;
  }
  if (isServiceError(e)) {
    const address = ctx?.config.address;
    if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED) {
      const ca = ctx?.config.ca;
      // The server answered, but its certificate did not verify against our CA.
      const tls = ca !== undefined && /certificate|ssl|tls|handshake|altname/i.test(e.details);
      say(
        `stageline: ${tls ? 'no trusted TLS connection to' : 'cannot reach'} Stageline at ${address?.value ?? '?'} (${grpc.status[e.code]}: ${e.details})`,
      );
      if (tls) {
        say(
          `  the server's certificate is verified against the CA ${ca.value} (from ${ca.from}); name another with --ca, STAGELINE_CA or 'stageline config set ca FILE'.`,
        );
      }
      say(
        `  the address came from ${address?.from ?? '?'}; set it with --address, STAGELINE_ADDRESS or 'stageline config set address host:port'.`,
      );
      if (!tls) say('  on this machine, npm run stack:up starts Stageline.');
      return EXIT.SERVER;
    }
    if (e.code === grpc.status.UNAUTHENTICATED || e.code === grpc.status.PERMISSION_DENIED) {
      const denied = e.code === grpc.status.PERMISSION_DENIED;
      say(`stageline: ${denied ? 'permission denied' : 'not authenticated'}: ${e.details}`);
      const token = ctx?.config.token;
      const from =
        token === undefined ? '' : 'file' in token ? `${token.file} (named by ${token.from})` : `${token.from}`;
      say(
        denied
          ? `  the token came from ${from}; an admin can make one with the role or project needed (stageline token create NAME --role viewer|deployer|admin [--project P]).`
          : `  the token came from ${from}; pass another with --token or --token-file (an admin makes them: stageline token create).`,
      );
      return EXIT.SERVER;
    }
    const field = fieldOf(e);
    say(
      `stageline: ${grpc.status[e.code]}: ${e.details}${field && !e.details.startsWith(field) ? ` (field ${field})` : ''}`,
    );
    return EXIT.SERVER;
  }
  say(`stageline: ${e instanceof Error ? e.message : String(e)}`);
  return EXIT.SERVER;
}
