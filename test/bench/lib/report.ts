import type { Floor } from './floor.ts';
// Output: one plain-text table per scenario on stdout, and the same figures in the run's JSON file.
import type { MachineFacts } from './machine.ts';
import type { Summary } from './stats.ts';
import type { TargetRow } from './targets.ts';

export type Cell = string | number;

export interface Table {
  title: string;
  columns: string[];
  rows: Cell[][];
  notes?: string[];
}

export interface ScenarioResult {
  scenario: string;
  title: string;
  /** What was run (sizes, repetitions, executor), so the figures can be reproduced. */
  parameters: Record<string, unknown>;
  /** Named figures, each summarized over the repetitions. */
  figures: Record<string, Summary | number | string | Record<string, unknown>>;
  /** Every repetition's raw values. */
  repetitions: unknown[];
  tables: Table[];
  /** Where the time goes, when a figure crosses its threshold. */
  diagnosis?: string[];
  /** The targets this scenario measured: figure, target, floor of the same run, met. */
  targets?: TargetRow[];
}

export interface BenchReport {
  machine: MachineFacts;
  options: Record<string, unknown>;
  scenarios: ScenarioResult[];
  errors: { scenario: string; error: string }[];
  totalSeconds: number;
  /** One commit and one publish on this machine, measured at the start of the run. */
  floor?: Floor | undefined;
  security: string;
  /** Every target row of the scenarios that ran, in their order (also printed at the end). */
  targets: TargetRow[];
}

function fmtCell(c: Cell): string {
  if (typeof c === 'string') return c;
  if (!Number.isFinite(c)) return '–';
  if (Number.isInteger(c)) return String(c);
  return Math.abs(c) >= 100 ? c.toFixed(0) : Math.abs(c) >= 10 ? c.toFixed(1) : c.toFixed(2);
}

export function renderTable(t: Table): string {
  const cells = t.rows.map((r) => r.map(fmtCell));
  const widths = t.columns.map((c, i) => Math.max(c.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [`== ${t.title}`, line(t.columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
  for (const n of t.notes ?? []) out.push(`   ${n}`);
  return out.join('\n');
}

/** "median (min–max)" of a summary, with a unit. */
export function fmtSummary(s: Summary, digits = 0, unit = ''): string {
  const f = (x: number) => x.toFixed(digits);
  return `${f(s.median)}${unit} (${f(s.min)}–${f(s.max)})`;
}
