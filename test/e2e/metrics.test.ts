// Operators can see inside (issue 28, metrics): after a run that builds an application from git and
// deploys it, a scrape of each service's HTTP port (/metrics, beside /livez and /readyz) holds the
// metrics of what it did, with non-zero values — gRPC calls by method and code, bus publishes and
// consumes, worker slots, jobs and step durations, build cache lookups — named stageline_*, each series
// labelled with its service, and no label carries an id.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, type ServiceName, useStack, watchToEnd } from './stack.ts';

const stack = useStack({ env: { HEALTH_LISTEN: '127.0.0.1:0' } });
const scratch = mkdtempSync(join(tmpdir(), 'stageline-metrics-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The HTTP port a service logged at start. */
function httpAddress(name: ServiceName): string {
  for (const line of stack.logs(name).split('\n')) {
    if (line.includes('health port listening')) return (JSON.parse(line) as { address: string }).address;
  }
  throw new Error(`${name} logged no HTTP port`);
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text exposition, sample by sample (enough of the format for our own output). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

async function scrape(name: ServiceName): Promise<Sample[]> {
  const response = await fetch(`http://${httpAddress(name)}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await response.text());
}

/** The sum of a metric's samples matching `labels` (a value, or a pattern). */
function total(samples: Sample[], name: string, labels: Record<string, string | RegExp> = {}): number {
  const matches = (v: string | undefined, want: string | RegExp) =>
    v !== undefined && (typeof want === 'string' ? v === want : want.test(v));
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, want]) => matches(s.labels[k], want)))
    .reduce((sum, s) => sum + s.value, 0);
}

describe('metrics', () => {
  it('each service serves what it did in a run, labelled by service, with no id in a label', async () => {
    const git = (args: string[], cwd?: string) =>
      execFileSync('git', args, {
        cwd,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 'm',
          GIT_AUTHOR_EMAIL: 'm@x.invalid',
          GIT_COMMITTER_NAME: 'm',
          GIT_COMMITTER_EMAIL: 'm@x.invalid',
          GIT_CONFIG_NOSYSTEM: '1',
        },
      });
    const bare = join(scratch, 'app.git');
    const work = join(scratch, 'work');
    git(['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    git(['init', '--quiet', '--initial-branch=main', work]);
    writeFileSync(join(work, 'Dockerfile'), `FROM ${EXAMPLE_IMAGE}\nLABEL stageline.metrics.run=${Date.now()}\n`);
    git(['add', '-A'], work);
    git(['commit', '--quiet', '-m', 'app'], work);
    git(['push', '--quiet', bare, 'HEAD:refs/heads/main'], work);

    const { environment, pipeline } = await createEnvironment(stack, 'metrics');
    const environmentId = environment!.id;
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId,
        service: {
          name: 'app',
          kind: control.ServiceKind.SERVICE_KIND_APPLICATION,
          stageId: pipeline!.stages[3]!.id,
          source: { $case: 'application', value: { gitUrl: `file://${bare}`, branch: 'main' } },
          envVars: [{ key: 'EXAMPLE_SCRIPT', value: 'sleep 3600' }],
        },
      }),
    );
    // Twice: the second run finds the image of the same cache key in the mirror (a hit).
    // The second is asked while the first builds: it waits in the queue (another requester: not merged).
    const runs: string[] = [];
    for (const requester of ['metrics', 'metrics-queued']) {
      const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
        versions: {},
        environmentId,
        requester,
        forceBuild: false,
      });
      runs.push(deployment!.id);
    }
    const queued = await scrape('planner');
    expect(total(queued, 'stageline_queue_depth', { environment: environmentId })).toBe(1);
    for (const id of runs) {
      const { final } = await watchToEnd(stack, id, 240_000);
      expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    }

    const [controlSamples, planner, build, deploy] = await Promise.all(
      (['control', 'planner', 'build', 'deploy'] as const).map((n) => scrape(n)),
    );
    if (planner === undefined || build === undefined || deploy === undefined || controlSamples === undefined) {
      throw new Error('a scrape is missing');
    }
    const all = { control: controlSamples, planner, build, deploy };
    for (const [name, samples] of Object.entries(all)) {
      expect(samples.length, name).toBeGreaterThan(0);
      for (const s of samples) {
        expect(s.name, `${name}: ${s.name}`).toMatch(/^stageline_/);
        expect(s.labels.service, `${name}: ${s.name}`).toBe(name);
        // Bounded cardinality: no run, service or job id in any label value (an environment id only in
        // stageline_queue_depth, and only while runs wait: none do now).
        for (const value of Object.values(s.labels)) {
          expect(value, `${name}: ${s.name}`).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-/);
        }
      }
      expect(total(samples, 'stageline_process_cpu_seconds_total'), name).toBeGreaterThan(0);
    }

    // gRPC: control answered the public calls of this test, by method and code.
    const deployCalls = '/stageline.control.v1.DeploymentService/DeployEnvironment';
    expect(total(controlSamples, 'stageline_grpc_server_calls_total', { method: deployCalls, code: 'OK' })).toBe(2);
    expect(total(controlSamples, 'stageline_grpc_server_call_duration_seconds_count', { method: deployCalls })).toBe(2);

    // The bus: the planner published jobs and consumed results; control consumed run events.
    expect(total(planner, 'stageline_bus_published_messages_total', { subject: 'jobs.build' })).toBeGreaterThan(0);
    expect(total(planner, 'stageline_bus_published_messages_total', { subject: 'jobs.deploy' })).toBeGreaterThan(0);
    expect(total(planner, 'stageline_bus_consumed_messages_total', { outcome: 'ack' })).toBeGreaterThan(0);
    expect(total(controlSamples, 'stageline_bus_consumed_messages_total', { outcome: 'ack' })).toBeGreaterThan(0);

    // The workers: jobs by kind and outcome, their steps timed, their slots (7 each, none busy now).
    expect(total(build, 'stageline_jobs_total', { kind: 'build', outcome: 'succeeded' })).toBe(2);
    expect(total(deploy, 'stageline_jobs_total', { kind: 'deploy', outcome: 'succeeded' })).toBe(2);
    expect(total(build, 'stageline_step_duration_seconds_count', { step: 'BUILD' })).toBe(2);
    expect(total(deploy, 'stageline_step_duration_seconds_count', { step: 'DEPLOYMENT' })).toBe(2);
    expect(total(build, 'stageline_worker_slots', { consumer: /build-workers$/, state: 'free' })).toBe(7);
    expect(total(deploy, 'stageline_worker_slots', { consumer: /deploy-workers$/, state: 'busy' })).toBe(0);

    // The outbox: each service's backlog read at the scrape (nothing waits once the runs are over).
    for (const samples of [controlSamples, planner]) {
      const pending = samples.filter((s) => s.name === 'stageline_outbox_pending_rows');
      expect(pending.length).toBeGreaterThan(0);
      expect(samples.some((s) => s.name === 'stageline_outbox_lag_seconds')).toBe(true);
    }

    // Runs: the planner counted both, by action and outcome, and timed them; and told each start, each
    // stage change and each end in one log line with the run's ids.
    expect(total(planner, 'stageline_runs_total', { action: 'DEPLOY', outcome: 'SUCCEEDED' })).toBe(2);
    expect(total(planner, 'stageline_run_duration_seconds_count', { action: 'DEPLOY' })).toBe(2);
    const runLines = stack
      .logs('planner')
      .split('\n')
      .filter((l) => l.includes('"component":"runs"'))
      .map((l) => JSON.parse(l) as { msg: string; deploymentId: string; environmentId: string; status?: string });
    for (const id of runs) {
      const mine = runLines.filter((l) => l.deploymentId === id);
      expect(mine.map((l) => l.msg).filter((m) => m.startsWith('run '))).toEqual([
        'run started: DEPLOY',
        'run finished: DEPLOY SUCCEEDED',
      ]);
      expect(mine.some((l) => /^stage 3 ".*" DONE$/.test(l.msg))).toBe(true);
      for (const l of mine) expect(l.environmentId).toBe(environmentId);
    }

    // The build cache: built once, then found.
    expect(total(build, 'stageline_build_cache_lookups_total', { result: 'miss' })).toBe(1);
    expect(total(build, 'stageline_build_cache_lookups_total', { result: 'hit' })).toBe(1);
  });
});
