// Standard 5-field cron schedules (minute resolution, as Kubernetes CronJob), read as UTC: which minutes a
// schedule fires at, and which tick is due now.

const MACROS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

const FIELDS = [
  { name: 'minute', min: 0, max: 59, names: [] as string[] },
  { name: 'hour', min: 0, max: 23, names: [] },
  { name: 'day of month', min: 1, max: 31, names: [] },
  {
    name: 'month',
    min: 1,
    max: 12,
    names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
  },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
] as const;

export interface CronSchedule {
  minutes: ReadonlySet<number>;
  hours: ReadonlySet<number>;
  days: ReadonlySet<number>;
  months: ReadonlySet<number>;
  weekdays: ReadonlySet<number>;
  /** Cron's rule: when both day fields are restricted, a day matching either one fires. */
  daysRestricted: boolean;
  weekdaysRestricted: boolean;
}

export class CronError extends Error {
  override name = 'CronError';
}

function parseField(text: string, index: number): { values: Set<number>; restricted: boolean } {
  const spec = FIELDS[index]!;
  const values = new Set<number>();
  let restricted = true;
  for (const item of text.split(',')) {
    const [range = '', stepText, extra] = item.split('/');
    if (extra !== undefined) throw new CronError(`${spec.name}: bad step in "${text}"`);
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) throw new CronError(`${spec.name}: bad step in "${text}"`);
    let lo: number;
    let hi: number;
    if (range === '*' || range === '?') {
      lo = spec.min;
      hi = spec.max;
      if (stepText === undefined) restricted = false;
    } else {
      const bounds = range.split('-').map((b) => {
        const named = (spec.names as readonly string[]).indexOf(b.toLowerCase());
        if (named >= 0) return named + (spec.name === 'month' ? 1 : 0);
        return /^[0-9]+$/.test(b) ? Number(b) : Number.NaN;
      });
      if (bounds.length > 2 || bounds.some((b) => Number.isNaN(b) || b < spec.min || b > spec.max)) {
        throw new CronError(`${spec.name}: "${text}" is out of ${spec.min}-${spec.max}`);
      }
      lo = bounds[0]!;
      // "5/15" means 5, 20, 35, 50: a start with a step runs to the end of the range.
      hi = bounds[1] ?? (stepText !== undefined ? spec.max : lo);
      if (lo > hi) throw new CronError(`${spec.name}: reversed range "${text}"`);
    }
    for (let v = lo; v <= hi; v += step) values.add(index === 4 && v === 7 ? 0 : v);
  }
  return { values, restricted };
}

export function parseCron(expression: string): CronSchedule {
  const expr = MACROS[expression.trim()] ?? expression.trim();
  const fields = expr.split(/\s+/);
  if (fields.length !== 5) throw new CronError(`a cron schedule has 5 fields, got ${fields.length}: "${expression}"`);
  const [minutes, hours, days, months, weekdays] = fields.map((f, i) => parseField(f, i));
  return {
    minutes: minutes!.values,
    hours: hours!.values,
    days: days!.values,
    months: months!.values,
    weekdays: weekdays!.values,
    daysRestricted: days!.restricted,
    weekdaysRestricted: weekdays!.restricted,
  };
}

/** Whether the schedule fires in the minute of `at` (UTC). */
export function firesAt(s: CronSchedule, at: Date): boolean {
  if (!s.minutes.has(at.getUTCMinutes()) || !s.hours.has(at.getUTCHours())) return false;
  if (!s.months.has(at.getUTCMonth() + 1)) return false;
  const day = s.days.has(at.getUTCDate());
  const weekday = s.weekdays.has(at.getUTCDay());
  if (s.daysRestricted && s.weekdaysRestricted) return day || weekday;
  return day && weekday;
}

const MINUTE = 60_000;

/**
 * The tick due at `now`: the latest minute at or before `now` the schedule fires at, no older than
 * `deadlineSeconds` (a tick missed for longer is not run late, as CronJob's startingDeadlineSeconds) and
 * not before `notBefore` (when the schedule was deployed). undefined: nothing is due.
 */
export function dueTick(s: CronSchedule, now: Date, deadlineSeconds: number, notBefore: Date): Date | undefined {
  const latest = Math.floor(now.getTime() / MINUTE) * MINUTE;
  const earliest = Math.max(now.getTime() - deadlineSeconds * 1000, notBefore.getTime());
  for (let t = latest; t >= earliest; t -= MINUTE) {
    const tick = new Date(t);
    if (firesAt(s, tick)) return tick;
  }
  return undefined;
}
