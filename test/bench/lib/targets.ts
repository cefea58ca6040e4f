// The targets, each next to the figure this run measured and the floor measured in the same run.
// Scenarios return the rows for the figures they measured; the run prints them together at its end (only
// for the scenarios that ran) and writes them into the results file.
import type { Table } from './report.ts';

export interface TargetRow {
  /** What is measured, and where: e.g. "CPU per service-deploy (Stageline + NATS + PostgreSQL)". */
  figure: string;
  /** The scenario that measured it. */
  scenario: string;
  /** The figure, in `unit`. */
  value: number;
  unit: string;
  /** The figure as printed (a projection may show what it was projected from). */
  shown: string;
  /** The target: at most (`max`) or at least (`min`) `limit`. */
  direction: 'max' | 'min';
  limit: number;
  target: string;
  /** The floor of the same run (or the bound the figure is judged against), as printed. */
  floor: string;
  met: boolean;
}

export interface TargetInput {
  figure: string;
  scenario: string;
  value: number;
  unit: string;
  direction: 'max' | 'min';
  limit: number;
  floor: string;
  /** Digits printed (default: 0 from 100 up, 1 from 10, else 2). */
  digits?: number;
  /** Overrides the printed figure. */
  shown?: string;
}

const space = (unit: string) => (unit === '' || unit === '%' ? unit : ` ${unit}`);

export function fmtNumber(x: number, digits?: number): string {
  if (!Number.isFinite(x)) return '–';
  const d = digits ?? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2);
  return x.toFixed(d);
}

/** A target row; not met when the figure is missing (NaN). */
export function target(input: TargetInput): TargetRow {
  const { value, limit, direction, unit } = input;
  const met = Number.isFinite(value) && (direction === 'max' ? value <= limit : value >= limit);
  return {
    figure: input.figure,
    scenario: input.scenario,
    value,
    unit,
    shown: input.shown ?? `${fmtNumber(value, input.digits)}${space(unit)}`,
    direction,
    limit,
    target: `${direction === 'max' ? '≤' : '≥'} ${Number.isInteger(limit) ? limit : limit.toFixed(2)}${space(unit)}`,
    floor: input.floor,
    met,
  };
}

/** The table printed at the end of a run: one row per target a scenario that ran measured. */
export function targetsTable(rows: readonly TargetRow[]): Table {
  const met = rows.filter((r) => r.met).length;
  return {
    title: `Targets (issue 24): ${met} of ${rows.length} met in this run`,
    columns: ['figure', 'scenario', 'this run', 'target', 'floor (same run)', 'met'],
    rows: rows.map((r) => [r.figure, r.scenario, r.shown, r.target, r.floor, r.met ? '✓' : '✗']),
    notes: [
      'floor: the least the figure can be on this machine, measured in the same run (one PostgreSQL commit and one',
      'JetStream publish, their CPU, the slots, podman itself): judge a figure by its distance to the floor, since the',
      'machine is shared and absolute figures move up to 2× between runs.',
      'Only the scenarios that ran have rows; figures are medians over the repetitions.',
    ],
  };
}
