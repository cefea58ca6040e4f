// Operators can see inside (issue 28, traces): with the standard OTEL_* variables pointing at a
// collector, one DeployEnvironment call is ONE trace — control's gRPC span, the planner's call and
// decisions, the build job and its steps, the deploy job, and back to control's handling of the run's
// events — linked across gRPC and the bus (outbox rows too) by W3C trace context, every parent link
// resolving to a span of the trace. Lines the services log inside those spans carry the trace id.
// The collector is the test's own: a tiny OTLP/HTTP (JSON) receiver on a free port.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

interface CollectedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}

/** OTLP JSON ids are hex; tolerate base64 (the protobuf JSON mapping) too. */
const hex = (id: unknown): string => {
  const s = typeof id === 'string' ? id : '';
  return s === '' || /^[0-9a-f]+$/.test(s) ? s : Buffer.from(s, 'base64').toString('hex');
};
const attributeValue = (v: Record<string, unknown> | undefined): unknown =>
  v === undefined ? undefined : (v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue);

const spans: CollectedSpan[] = [];
const requests: string[] = [];
const collector = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    requests.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
    try {
      const raw = Buffer.concat(chunks);
      const body = JSON.parse((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString());
      for (const rs of body.resourceSpans ?? []) {
        const attrs = (rs.resource?.attributes ?? []) as Array<{ key: string; value: Record<string, unknown> }>;
        const service = String(attributeValue(attrs.find((a) => a.key === 'service.name')?.value) ?? '');
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            const attributes: Record<string, unknown> = {};
            for (const a of s.attributes ?? []) attributes[a.key] = attributeValue(a.value);
            spans.push({
              service,
              traceId: hex(s.traceId),
              spanId: hex(s.spanId),
              parentSpanId: hex(s.parentSpanId),
              name: s.name,
              kind: s.kind,
              attributes,
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    } catch {
      res.writeHead(400).end();
    }
  });
});
await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
const { port } = collector.address() as { port: number };

const stack = useStack({
  env: {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_BSP_SCHEDULE_DELAY: '100',
  },
});
const scratch = mkdtempSync(join(tmpdir(), 'stageline-traces-'));
afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  await new Promise((resolve) => collector.close(resolve));
});

const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CONSUMER = 5;

/** `span` and its ancestors, up to the root; throws on a parent the trace does not hold. */
function chain(span: CollectedSpan, byId: Map<string, CollectedSpan>): CollectedSpan[] {
  const path = [span];
  let at = span;
  while (at.parentSpanId !== '') {
    const parent = byId.get(at.parentSpanId);
    if (parent === undefined)
      throw new Error(`${at.service} ${at.name}: parent ${at.parentSpanId} is not in the trace`);
    path.push(parent);
    at = parent;
  }
  return path;
}

const describePath = (path: CollectedSpan[]) => path.map((s) => `${s.service}:${s.name}`).join(' ← ');

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('traces', () => {
  it('one DeployEnvironment is one trace through planner, build and deploy and back to control', async () => {
    const git = (args: string[], cwd?: string) =>
      execFileSync('git', args, {
        cwd,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 't',
          GIT_AUTHOR_EMAIL: 't@x.invalid',
          GIT_COMMITTER_NAME: 't',
          GIT_COMMITTER_EMAIL: 't@x.invalid',
          GIT_CONFIG_NOSYSTEM: '1',
        },
      });
    const bare = join(scratch, 'app.git');
    const work = join(scratch, 'work');
    git(['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    git(['init', '--quiet', '--initial-branch=main', work]);
    writeFileSync(join(work, 'Dockerfile'), `FROM ${EXAMPLE_IMAGE}\nLABEL stageline.traces.run=${Date.now()}\n`);
    git(['add', '-A'], work);
    git(['commit', '--quiet', '-m', 'app'], work);
    git(['push', '--quiet', bare, 'HEAD:refs/heads/main'], work);

    const { environment, pipeline } = await createEnvironment(stack, 'traces');
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
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      environmentId,
      requester: 'traces',
      forceBuild: true,
      versions: {},
    });
    const { final } = await watchToEnd(stack, deployment!.id, 240_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');

    // The exporters send JSON over HTTP to <endpoint>/v1/traces.
    await until('a first export', () => (requests.length > 0 ? true : undefined));
    expect(requests[0]).toMatch(/^POST \/v1\/traces application\/json/);

    const root = await until('the DeployEnvironment span', () =>
      spans.find(
        (s) =>
          s.service === 'stageline-control' &&
          s.kind === SPAN_KIND_SERVER &&
          s.name === 'stageline.control.v1.DeploymentService/DeployEnvironment',
      ),
    );
    expect(root.parentSpanId).toBe('');
    const inTrace = () => spans.filter((s) => s.traceId === root.traceId);
    const isDeployJob = (s: CollectedSpan) =>
      s.name === 'deploy job' && s.attributes['stageline.deployment.id'] === deployment!.id;
    // Back at control: its handling of a run event the planner wrote after the deploy job ended.
    const back = await until('control consuming a run event that follows the deploy job', () => {
      const byId = new Map(inTrace().map((s) => [s.spanId, s]));
      return inTrace().find((s) => {
        if (s.service !== 'stageline-control' || s.kind !== SPAN_KIND_CONSUMER) return false;
        try {
          return chain(s, byId).some(isDeployJob) ? s : undefined;
        } catch {
          return undefined; // a parent not exported yet
        }
      });
    });

    const trace = inTrace();
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    // Every span of the trace hangs on the DeployEnvironment span: no parent is missing, one root.
    for (const s of trace) expect(chain(s, byId).at(-1), describePath(chain(s, byId))).toBe(root);

    const path = chain(back, byId);
    const steps = path.map((s) => `${s.service}:${s.name}`);
    // control → planner (gRPC) → decision → build job (bus, outbox) → results → decision → deploy job →
    // results → decision → run event (outbox) → control.
    const expected = [
      'stageline-control:process events.runs',
      'stageline-planner:planner decide',
      'stageline-planner:process results.deploy',
      'stageline-deploy:deploy job',
      'stageline-deploy:process jobs.deploy',
      'stageline-planner:planner decide',
      'stageline-planner:process results.build',
      'stageline-build:build job',
      'stageline-build:process jobs.build',
      'stageline-planner:planner decide',
      'stageline-planner:stageline.planner.v1.PlannerService/Submit',
      'stageline-control:stageline.control.v1.DeploymentService/DeployEnvironment',
    ];
    expect(steps, describePath(path)).toEqual(expected);

    // The steps of each job are its children: clone, build and mirror in build; the deploy in deploy.
    const buildJob = path.find((s) => s.name === 'build job')!;
    const deployJob = path.find((s) => s.name === 'deploy job')!;
    const stepsOf = (job: CollectedSpan) =>
      trace.filter((s) => s.parentSpanId === job.spanId && s.name.includes(' step ')).map((s) => s.name);
    expect(stepsOf(buildJob)).toEqual(expect.arrayContaining(['build step GIT_CLONE', 'build step BUILD']));
    expect(stepsOf(deployJob)).toEqual(expect.arrayContaining(['deploy step DEPLOYMENT']));
    expect(buildJob.attributes['stageline.job.outcome']).toBe('succeeded');

    // Log lines written inside those spans carry the trace id and their span's id: the planner's run
    // log (run start in the Submit call, run end while it handles the deploy job's result).
    const runLines = stack
      .logs('planner')
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes(deployment!.id))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => typeof l.msg === 'string' && /^run (started|finished)/.test(l.msg));
    expect(runLines.map((l) => l.msg)).toEqual([
      expect.stringMatching(/^run started/),
      expect.stringMatching(/^run finished.*SUCCEEDED$/),
    ]);
    for (const line of runLines) {
      expect(line.trace_id, String(line.msg)).toBe(root.traceId);
      expect(byId.get(String(line.span_id))?.service, String(line.msg)).toBe('stageline-planner');
    }
  });
});
