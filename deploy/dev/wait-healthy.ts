// Used by stack.sh: waits until every named service reports SERVING on gRPC health (default),
// or prints each one's pid and health once (--status).
//
//   node deploy/dev/wait-healthy.ts [--status] [--timeout-ms=30000] control=127.0.0.1:50051 planner=…
//
// Pid files and logs are read from $STAGELINE_STATE/run/<name>.pid and $STAGELINE_STATE/logs/<name>.log.
// On failure it prints the last 30 lines of the failing service's log and exits 1.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { checkHealth, isServiceError, waitForServing } from '@stageline/grpc';

interface Target {
  name: string;
  address: string;
}

const LOG_TAIL_LINES = 30;

// Checked by name, not just the server's overall status, so that some other server answering on
// the address (e.g. two services given the same port) is never taken for the one we started.
const HEALTH_SERVICE: Readonly<Record<string, string>> = {
  control: 'stageline.control.v1.EnvironmentService',
  planner: 'stageline.planner.v1.PlannerService',
  build: 'stageline.build.v1.BuildService',
  deploy: 'stageline.deploy.v1.ReleaseService',
};
const healthServiceOf = (name: string): string => HEALTH_SERVICE[name] ?? '';

function parseArgs(argv: string[]): { status: boolean; timeoutMs: number; targets: Target[] } {
  let status = false;
  let timeoutMs = 30_000;
  const targets: Target[] = [];
  for (const arg of argv) {
    if (arg === '--status') status = true;
    else if (arg.startsWith('--timeout-ms=')) timeoutMs = Number(arg.slice('--timeout-ms='.length));
    else {
      const eq = arg.indexOf('=');
      if (eq <= 0) throw new Error(`expected name=host:port, got "${arg}"`);
      targets.push({ name: arg.slice(0, eq), address: arg.slice(eq + 1) });
    }
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new Error('--timeout-ms must be a positive number');
  if (targets.length === 0) throw new Error('no services given');
  return { status, timeoutMs, targets };
}

const stateDir = process.env.STAGELINE_STATE;
if (!stateDir) {
  console.error('wait-healthy: STAGELINE_STATE is not set (source deploy/dev/env.sh)');
  process.exit(2);
}
const logPath = (name: string): string => join(stateDir, 'logs', `${name}.log`);
// Health takes no token, but TLS: the servers' certificates chain to the stack's CA.
const security = { ca: join(process.env.STAGELINE_TLS_DIR ?? join(stateDir, 'tls'), 'ca.pem') };

function pidOf(name: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(stateDir as string, 'run', `${name}.pid`), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed process stays a zombie until reaped, and kill(pid, 0) still succeeds on it.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

function logTail(name: string): string {
  try {
    const lines = readFileSync(logPath(name), 'utf8').trimEnd().split('\n');
    return lines.slice(-LOG_TAIL_LINES).join('\n');
  } catch {
    return `(no log at ${logPath(name)})`;
  }
}

async function waitOne(target: Target, timeoutMs: number): Promise<string | undefined> {
  const pid = pidOf(target.name);
  // Poll health and the process together: a service that crashed at start fails at once, not after the timeout.
  const died = new Promise<string>((resolve) => {
    const timer = setInterval(() => {
      if (!alive(pid)) {
        clearInterval(timer);
        resolve(`process ${pid ?? '(no pid file)'} exited`);
      }
    }, 200);
    timer.unref();
  });
  const healthy = waitForServing(target.address, { security, timeoutMs, service: healthServiceOf(target.name) }).then(
    () => undefined,
    (e: unknown) => (e instanceof Error ? e.message : String(e)),
  );
  return Promise.race([healthy, died]);
}

// gRPC status codes (deploy/dev cannot resolve @grpc/grpc-js itself).
const DEADLINE_EXCEEDED = 4;
const NOT_FOUND = 5;
const UNAVAILABLE = 14;

function describeFailure(e: unknown): string {
  if (!isServiceError(e)) return e instanceof Error ? e.message : String(e);
  // NOT_FOUND: a server answers there, but not the service expected at that address.
  if (e.code === NOT_FOUND) return 'SERVICE_UNKNOWN (another server on this address?)';
  if (e.code === UNAVAILABLE || e.code === DEADLINE_EXCEEDED) return 'UNREACHABLE';
  return e.details;
}

async function main(): Promise<number> {
  const { status, timeoutMs, targets } = parseArgs(process.argv.slice(2));

  if (status) {
    let allServing = true;
    for (const target of targets) {
      const pid = pidOf(target.name);
      const health = await checkHealth(target.address, {
        security,
        service: healthServiceOf(target.name),
        deadlineMs: 1000,
      }).catch(describeFailure);
      if (health !== 'SERVING') allServing = false;
      const proc = pid === undefined ? 'not started' : alive(pid) ? `pid ${pid}` : `pid ${pid} (dead)`;
      console.log(`${target.name.padEnd(8)} ${proc.padEnd(18)} ${target.address.padEnd(21)} ${health}`);
    }
    return allServing ? 0 : 3;
  }

  const results = await Promise.all(targets.map(async (t) => ({ target: t, failure: await waitOne(t, timeoutMs) })));
  let failed = false;
  for (const { target, failure } of results) {
    if (failure === undefined) continue;
    failed = true;
    console.error(`\n${target.name} is not healthy on ${target.address}: ${failure}`);
    console.error(`--- last ${LOG_TAIL_LINES} lines of ${logPath(target.name)} ---\n${logTail(target.name)}\n---`);
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`wait-healthy: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(2);
  },
);
