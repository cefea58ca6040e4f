// The example stack of the real-stack scenarios: deploy/examples/demo-staging.json's APPLICATION built
// from a local git repository and its worker and public web containers, in their stages, with a
// git repository of its own per measurement so that "cold" really builds, and an equivalent compose file.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { BenchStack } from './stack.ts';
import { ROOT } from './stack.ts';

const run = promisify(execFile);

export const EXAMPLE_FILE = join(ROOT, 'deploy/examples/demo-staging.json');
export const EXAMPLE_REPO = process.env.STAGELINE_EXAMPLE_REPOS
  ? join(process.env.STAGELINE_EXAMPLE_REPOS, 'api.git')
  : '/var/lib/stageline/repos/api.git';

interface ExampleFile {
  settings?: unknown;
  stages: { name: string; description?: string }[];
  services: { stage: string; service: Record<string, unknown> }[];
}

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Stageline bench',
  GIT_AUTHOR_EMAIL: 'bench@stageline.invalid',
  GIT_COMMITTER_NAME: 'Stageline bench',
  GIT_COMMITTER_EMAIL: 'bench@stageline.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

async function git(args: string[], cwd?: string): Promise<string> {
  return (await run('git', args, { cwd, env: GIT_ENV })).stdout.trim();
}

export interface ExampleRepo {
  /** file:// URL of a bare repository whose `main` has a commit no build has seen. */
  gitUrl: string;
  /** A checkout of that commit: the compose build context. */
  checkout: string;
  commit: string;
}

/**
 * A copy of the example application's repository with one more commit (a file holding `nonce`), so
 * that its image has never been built: nothing in buildah's layer cache or the mirror matches it.
 */
export async function freshExampleRepo(dir: string, nonce: string): Promise<ExampleRepo> {
  mkdirSync(dir, { recursive: true });
  const bare = join(dir, 'api.git');
  const checkout = join(dir, 'api');
  await git(['clone', '--quiet', '--bare', EXAMPLE_REPO, bare]);
  await git(['clone', '--quiet', bare, checkout]);
  writeFileSync(join(checkout, 'www', 'bench-nonce.txt'), `${nonce}\n`);
  await git(['add', 'www/bench-nonce.txt'], checkout);
  await git(['commit', '--quiet', '-m', `bench ${nonce}`], checkout);
  await git(['push', '--quiet', 'origin', 'HEAD:main'], checkout);
  return { gitUrl: `file://${bare}`, checkout, commit: await git(['rev-parse', 'HEAD'], checkout) };
}

/**
 * The example's application and container services (the issue's "an application built from a local git
 * repo and two container services"); its managed database and lifecycle job are left out, since compose
 * has no equivalent of either.
 */
export function exampleFile(): ExampleFile {
  const file = JSON.parse(readFileSync(EXAMPLE_FILE, 'utf8')) as ExampleFile;
  const kept = ['SERVICE_KIND_APPLICATION', 'SERVICE_KIND_CONTAINER'];
  return { ...file, services: file.services.filter((s) => kept.includes(String(s.service.kind))) };
}

/** Creates the example environment as `project/name`, its application built from `gitUrl`. */
export async function createExampleEnvironment(
  stack: BenchStack,
  project: string,
  name: string,
  gitUrl: string,
): Promise<string> {
  const spec = exampleFile();
  const created = await callUnary(stack.environments, 'createEnvironment', {
    project,
    name,
    runtime: 'local',
    settings: control.EnvironmentSettings.fromJSON(spec.settings ?? {}),
  });
  const environmentId = created.environment!.id;
  let pipeline = created.pipeline!;
  for (const stage of spec.stages) {
    if (pipeline.stages.some((s) => s.name === stage.name)) continue;
    pipeline = (
      await callUnary(
        stack.pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({
          environmentId,
          name: stage.name,
          description: stage.description ?? '',
        }),
      )
    ).pipeline!;
  }
  for (const entry of spec.services) {
    const json = structuredClone(entry.service) as { application?: { gitUrl?: string } };
    if (json.application) json.application.gitUrl = gitUrl;
    const service = control.Service.fromJSON(json);
    const stageId = pipeline.stages.find((s) => s.name === entry.stage)?.id;
    if (!stageId) throw new Error(`${EXAMPLE_FILE}: no stage ${entry.stage}`);
    await callUnary(stack.environments, 'addService', { environmentId, service: { ...service, stageId } });
  }
  return environmentId;
}

interface ExampleService {
  name: string;
  kind: string;
  application?: { ports?: { port: number }[] };
  container?: { image: string; tag: string; ports?: { port: number; public?: boolean }[] };
  envVars?: { key: string; value: string; secret?: boolean }[];
}

/**
 * The same stack as a compose file: the application built from `context` (its Dockerfile, with the
 * ARGs the Dockerfile declares set from the service's variables as Stageline does), the containers from
 * the same images, every service's variables, and a published port per HTTP service so the benchmark can
 * tell when each answers (Stageline's deploys end when its own probes pass).
 */
export function composeFile(context: string, ports: Record<string, number>): string {
  const spec = exampleFile();
  const dockerfile = readFileSync(join(context, 'Dockerfile'), 'utf8');
  const declared = new Set([...dockerfile.matchAll(/^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)/gm)].map((m) => m[1]!));
  const order = spec.stages.map((s) => s.name);
  const services = [...spec.services].sort((a, b) => order.indexOf(a.stage) - order.indexOf(b.stage));
  const q = (s: string) => JSON.stringify(s);
  const lines = ['services:'];
  const earlier: string[] = [];
  for (const entry of services) {
    const s = entry.service as unknown as ExampleService;
    const env = s.envVars ?? [];
    lines.push(`  ${s.name}:`);
    if (s.application) {
      lines.push('    build:', `      context: ${q(context)}`, '      dockerfile: Dockerfile');
      const args = env.filter((e) => declared.has(e.key));
      if (args.length > 0) {
        lines.push('      args:');
        for (const a of args) lines.push(`        ${a.key}: ${q(a.value)}`);
      }
    } else if (s.container) {
      lines.push(`    image: ${q(`${s.container.image}:${s.container.tag}`)}`);
    }
    if (env.length > 0) {
      lines.push('    environment:');
      for (const e of env) lines.push(`      ${e.key}: ${q(e.value)}`);
    }
    const port = ports[s.name];
    if (port !== undefined) lines.push('    ports:', `      - ${q(`127.0.0.1:${port}:8080`)}`);
    // Stages in order: each service after the services of earlier stages, as Stageline deploys them.
    if (earlier.length > 0) {
      lines.push('    depends_on:');
      for (const d of earlier) lines.push(`      - ${d}`);
    }
    earlier.push(s.name);
  }
  return `${lines.join('\n')}\n`;
}

/** Names of the example's services that serve HTTP on 8080 (the compose side waits for each to answer). */
export function httpServices(): string[] {
  return exampleFile()
    .services.map((e) => e.service as unknown as ExampleService & { healthCheck?: { http?: unknown } })
    .filter((s) => s.healthCheck?.http !== undefined)
    .map((s) => s.name);
}
