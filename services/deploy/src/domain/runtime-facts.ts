// What the runtimes answer, read into instance facts and log lines (pure): `podman container inspect`,
// `kubectl get pods --output json`, and the timestamped lines of `podman logs` and `kubectl logs`.

import { exitReason, type InstanceFacts } from './runtime-status.ts';

/** The part of `podman container inspect --format json` the status reads. */
export interface PodmanInspected {
  Name?: string;
  Pod?: string;
  State?: {
    Status?: string;
    ExitCode?: number;
    StartedAt?: string;
    FinishedAt?: string;
    OOMKilled?: boolean;
  };
  RestartCount?: number;
}

function date(text: string | undefined): Date | undefined {
  if (text === undefined || text === '') return undefined;
  const d = new Date(text);
  // podman's zero time (0001-01-01…) means "never".
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1971 ? undefined : d;
}

/**
 * A local service's instance from its container. `lastDeath` is the exit code of the container's last
 * death that podman's event log told (running again under restartPolicy Always, inspect shows 0).
 */
export function instanceFromPodman(
  instanceName: string,
  c: PodmanInspected,
  lastDeath?: { code: number },
): InstanceFacts {
  const status = c.State?.Status ?? 'unknown';
  const startedAt = date(c.State?.StartedAt);
  const finishedAt = date(c.State?.FinishedAt);
  const running = status === 'running';
  let lastExit: InstanceFacts['lastExit'];
  if (!running && finishedAt !== undefined) {
    const code = c.State?.ExitCode ?? 0;
    lastExit = { code, reason: exitReason(code, '', c.State?.OOMKilled === true) };
  } else if (lastDeath !== undefined && (c.RestartCount ?? 0) > 0) {
    lastExit = { code: lastDeath.code, reason: exitReason(lastDeath.code) };
  }
  return {
    name: instanceName,
    state: status,
    ready: running,
    restarts: c.RestartCount ?? 0,
    ...(startedAt !== undefined ? { startedAt } : {}),
    ...(lastExit !== undefined ? { lastExit } : {}),
  };
}

interface KubeContainerState {
  running?: { startedAt?: string };
  waiting?: { reason?: string };
  terminated?: { exitCode?: number; reason?: string; finishedAt?: string };
}

export interface KubePod {
  metadata?: { name?: string; labels?: Record<string, string> };
  status?: {
    phase?: string;
    startTime?: string;
    containerStatuses?: Array<{
      ready?: boolean;
      restartCount?: number;
      state?: KubeContainerState;
      lastState?: KubeContainerState;
    }>;
  };
}

/** One pod as an instance: ready when every container is; its waiting/terminated reason as its state. */
export function instanceFromKubePod(pod: KubePod): InstanceFacts {
  const statuses = pod.status?.containerStatuses ?? [];
  const phase = (pod.status?.phase ?? 'Unknown').toLowerCase();
  let state = phase;
  for (const s of statuses) {
    if (s.state?.waiting) {
      state = `waiting: ${s.state.waiting.reason ?? 'unknown'}`;
      break;
    }
    if (s.state?.terminated) state = `terminated: ${s.state.terminated.reason ?? 'unknown'}`;
  }
  let lastExit: InstanceFacts['lastExit'];
  for (const s of statuses) {
    const t = s.state?.terminated ?? s.lastState?.terminated;
    if (t !== undefined) {
      const code = t.exitCode ?? 0;
      lastExit = { code, reason: exitReason(code, t.reason ?? '') };
      break;
    }
  }
  const startedAt = date(pod.status?.startTime);
  return {
    name: pod.metadata?.name ?? '',
    state,
    ready: statuses.length > 0 && statuses.every((s) => s.ready === true) && phase === 'running',
    restarts: statuses.reduce((n, s) => n + (s.restartCount ?? 0), 0),
    ...(startedAt !== undefined ? { startedAt } : {}),
    ...(lastExit !== undefined ? { lastExit } : {}),
  };
}

export const INSTANCE_LABEL = 'app.kubernetes.io/instance';

/** `kubectl get pods --output json` of a namespace, grouped by Helm release (the instance label). */
export function kubePodsByRelease(json: string): Map<string, InstanceFacts[]> {
  const parsed = JSON.parse(json) as { items?: KubePod[] };
  const byRelease = new Map<string, InstanceFacts[]>();
  for (const pod of parsed.items ?? []) {
    const release = pod.metadata?.labels?.[INSTANCE_LABEL];
    if (release === undefined) continue;
    // A finished Job's pods are history, not instances of what runs.
    if (pod.status?.phase === 'Succeeded') continue;
    const list = byRelease.get(release) ?? [];
    list.push(instanceFromKubePod(pod));
    byRelease.set(release, list);
  }
  return byRelease;
}

export interface TimestampedLine {
  timestamp: Date | undefined;
  message: string;
}

/** `<RFC 3339 time> <message>`, as `podman logs --timestamps` and `kubectl logs --timestamps` print. */
export function parseTimestamped(line: string): TimestampedLine {
  const space = line.indexOf(' ');
  const head = space < 0 ? line : line.slice(0, space);
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/.test(head)) {
    const at = new Date(head.replace(/(\.\d{3})\d+/, '$1'));
    if (!Number.isNaN(at.getTime())) return { timestamp: at, message: space < 0 ? '' : line.slice(space + 1) };
  }
  return { timestamp: undefined, message: line };
}

/** `[pod/<pod>/<container>] <time> <message>`, as `kubectl logs --prefix --timestamps` prints. */
export function parseKubectlPrefixed(line: string): TimestampedLine & { instance: string } {
  const match = /^\[pod\/([^/\]]+)\/[^\]]*\] (.*)$/.exec(line);
  if (match === null) return { instance: '', ...parseTimestamped(line) };
  return { instance: match[1] ?? '', ...parseTimestamped(match[2] ?? '') };
}
