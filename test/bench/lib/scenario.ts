// The shape every scenario has: a name to select it by, and a run that returns its figures.
import type { Floor } from './floor.ts';
import type { ScenarioResult } from './report.ts';
import type { ServiceName } from './stack.ts';

export interface ScenarioContext {
  /** Where service logs (and CPU profiles) of this run go. */
  logDir: string;
  /** Repetitions of each measurement (--reps, default per scenario). */
  reps: number | undefined;
  /** Multiplies the sizes of a scenario (--scale, default 1): 4 on a bigger machine, 0.25 for a smoke run. */
  scale: number;
  /** Services started with --cpu-prof (--profile planner,control). */
  profile: ServiceName[];
  log(message: string): void;
  /** One commit and one publish on this machine, measured at the start of the run (undefined: it failed). */
  floor: Floor | undefined;
}

export interface Scenario {
  name: string;
  title: string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

export const scaled = (n: number, scale: number, min = 1): number => Math.max(min, Math.round(n * scale));
