// The Grafana dashboard under deploy/grafana/ is valid JSON, and every query of every panel names only
// metrics Stageline exports (a renamed metric fails here, not on an operator's wall screen).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { registry, startProcessMetrics } from '../src/index.ts';

interface Panel {
  title: string;
  targets: Array<{ expr: string }>;
}

const dashboard = JSON.parse(
  readFileSync(new URL('../../../deploy/grafana/stageline.json', import.meta.url), 'utf8'),
) as { uid: string; panels: Panel[] };

/** What a scrape of a service holds: each metric (Node's process metrics too), a histogram's series. */
async function exported(): Promise<Set<string>> {
  startProcessMetrics('dashboard-test');
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
  }
  return names;
}

describe('the Grafana dashboard', () => {
  it('queries only metrics the services export, in every panel', async () => {
    const names = await exported();
    expect(dashboard.uid).toBe('stageline');
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(10);
    const unknown: string[] = [];
    for (const panel of dashboard.panels) {
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      for (const { expr } of panel.targets) {
        const used = expr.match(/\bstageline_[a-z0-9_]+/g) ?? [];
        expect(used.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
        for (const name of used) if (!names.has(name)) unknown.push(`${panel.title}: ${name}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it('covers queue depth, run outcomes, step durations and worker slots', () => {
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n');
    for (const name of [
      'stageline_queue_depth',
      'stageline_runs_total',
      'stageline_step_duration_seconds_bucket',
      'stageline_worker_slots',
    ]) {
      expect(exprs).toContain(name);
    }
  });
});
