// apply -f and diff -f: environments as code.
import { control } from '@stageline/proto';
import type { Context } from '../context.ts';
import { applyEnvironment, readCurrent } from '../env-file/apply.ts';
import { loadEnvironmentFile } from '../env-file/load.ts';
import { type DesiredEnvironment, desiredEnvironment } from '../env-file/model.ts';
import { type Change, describeChange, describeNote, type Note, planApply } from '../env-file/plan.ts';
import { ExitCode } from '../errors.ts';
import { printPipeline } from './environments.ts';

function load(ctx: Context, file: string): DesiredEnvironment {
  return desiredEnvironment(loadEnvironmentFile(file), ctx.io.env);
}

function changeLines(ctx: Context, changes: Change[], tense: 'future' | 'past'): string[] {
  const style = { '+': 'green', '~': 'yellow', '-': 'red' } as const;
  return changes.flatMap((c) => {
    const d = describeChange(c, tense);
    return [`  ${ctx.paint(style[d.mark], d.mark)} ${d.text}`, ...d.fields.map((f) => `      ${ctx.paint('dim', f)}`)];
  });
}

const noteLines = (ctx: Context, notes: Note[]) => notes.map((n) => `  ${ctx.paint('dim', `! ${describeNote(n)}`)}`);

const asJson = (c: Change) => ({ ...c, summary: describeChange(c, 'past').text });

export async function applyCommand(ctx: Context, file: string, opts: { prune: boolean }): Promise<void> {
  const desired = load(ctx, file);
  const { environment, plan, applied } = await applyEnvironment(ctx.clients, desired, opts);
  const name = `${desired.project}/${desired.name}`;
  ctx.emit(
    {
      environment: control.Environment.toJSON(environment),
      changes: applied.map(asJson),
      notes: plan.notes.map((n) => ({ ...n, summary: describeNote(n) })),
    },
    () => {
      if (applied.length === 0) {
        ctx.out(`${name} is up to date with ${file}: no changes.`);
        ctx.out(...noteLines(ctx, plan.notes));
        return;
      }
      ctx.out(`applied ${file} to ${name} (${environment.id}):`);
      ctx.out(...changeLines(ctx, applied, 'past'));
      ctx.out(...noteLines(ctx, plan.notes));
      ctx.out(`${applied.length} change${applied.length === 1 ? '' : 's'} applied.`);
    },
  );
  if (ctx.format === 'text' && applied.length > 0) {
    ctx.out('');
    await printPipeline(ctx, environment.id);
  }
}

export async function diffCommand(ctx: Context, file: string, opts: { prune: boolean }): Promise<void> {
  const desired = load(ctx, file);
  const current = await readCurrent(ctx.clients, desired);
  const plan = planApply(desired, current, opts);
  const name = `${desired.project}/${desired.name}`;
  const byName = new Map(current.services.map((s) => [s.name, s]));
  const uncomparable = desired.services.filter((s) => s.sendsSecretValues && byName.has(s.name)).map((s) => s.name);
  ctx.emit(
    {
      environment: current.environment ? control.Environment.toJSON(current.environment) : null,
      changes: plan.changes.map((c) => ({ ...c, summary: describeChange(c, 'future').text })),
      notes: plan.notes.map((n) => ({ ...n, summary: describeNote(n) })),
    },
    () => {
      if (plan.changes.length === 0) {
        ctx.out(`no changes: ${name} matches ${file}.`);
      } else {
        ctx.out(`${file} → ${name}${current.environment ? ` (${current.environment.id})` : ' (does not exist yet)'}:`);
        ctx.out(...changeLines(ctx, plan.changes, 'future'));
        ctx.out(
          plan.changes.length === 1
            ? `1 change: stageline apply -f ${file} makes it.`
            : `${plan.changes.length} changes: stageline apply -f ${file} makes them.`,
        );
      }
      ctx.out(...noteLines(ctx, plan.notes));
      if (uncomparable.length > 0) {
        ctx.out(
          ctx.paint(
            'dim',
            `  secret values cannot be read back, so diff cannot compare them (${uncomparable.join(', ')}); apply sends them and reports whether they changed.`,
          ),
        );
      }
    },
  );
  // Like diff(1) and kubectl diff: 1 when there are differences, so scripts can test for drift.
  if (plan.changes.length > 0) throw new ExitCode(1);
}
