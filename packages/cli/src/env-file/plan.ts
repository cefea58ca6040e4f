// What applying a file would change: the desired state against what the server reads back. Pure, so
// that `diff` and `apply` show the same list and tests can check it without a server.
import { control } from '@stageline/proto';
import { EnvironmentFileError, type FileProblem } from './load.ts';
import { type DesiredEnvironment, flattenDefinition, kindLabel, type ResolvedSettings } from './model.ts';

export interface FieldChange {
  field: string;
  /** Absent: the field was not set. */
  from?: string;
  to?: string;
}

export type Change =
  | { op: 'create-environment'; environment: string; runtime: string }
  | { op: 'update-settings'; fields: FieldChange[] }
  | { op: 'create-stage'; stage: string; description: string }
  | { op: 'describe-stage'; stage: string; from: string; to: string }
  | { op: 'delete-stage'; stage: string }
  | { op: 'move-stage'; stage: string; from: number; to: number }
  | { op: 'add-service'; service: string; kind: string; stage: string | undefined; skipped: boolean }
  | { op: 'replace-service'; service: string; from: string; to: string }
  | { op: 'update-service'; service: string; fields: FieldChange[] }
  | { op: 'move-service'; service: string; from: string; to: string }
  | { op: 'skip-service'; service: string }
  | { op: 'unskip-service'; service: string }
  | { op: 'remove-service'; service: string };

/** Things the file does not mention and that apply leaves alone (without --prune). */
export type Note = { op: 'keep-service'; service: string } | { op: 'keep-stage'; stage: string };

export interface CurrentState {
  environment: control.Environment | undefined;
  pipeline: control.Pipeline | undefined;
  services: control.Service[];
}

export interface Plan {
  changes: Change[];
  notes: Note[];
  /** Stage names in their final order (what MoveStage calls produce). */
  stageOrder: string[];
}

/** The four stages a new environment starts with (EnvironmentService/CreateEnvironment). */
export const DEFAULT_STAGES = ['DEFAULT DATABASE', 'DEFAULT JOB', 'DEFAULT CONTAINER', 'DEFAULT APPLICATION'];

const settingLabels: Record<keyof ResolvedSettings, (v: never) => string> = {
  maxParallelBuilds: (v: number) => String(v),
  maxParallelDeploys: (v: number) => String(v),
  schedulingMode: (v: control.SchedulingMode) => control.schedulingModeToJSON(v).replace('SCHEDULING_MODE_', ''),
  mirrorMode: (v: control.MirrorMode) => control.mirrorModeToJSON(v).replace('MIRROR_MODE_', ''),
  kubernetesContext: (v: string) => JSON.stringify(v),
  namespace: (v: string) => v,
};

export function resolvedSettings(s: control.EnvironmentSettings | undefined): ResolvedSettings {
  return {
    maxParallelBuilds: s?.maxParallelBuilds ?? 7,
    maxParallelDeploys: s?.maxParallelDeploys ?? 7,
    schedulingMode: s?.schedulingMode || control.SchedulingMode.SCHEDULING_MODE_PIPELINED,
    mirrorMode: s?.mirrorMode || control.MirrorMode.MIRROR_MODE_SERVICE,
    kubernetesContext: s?.kubernetesContext ?? '',
    namespace: s?.namespace ?? '',
  };
}

function diffFields(before: Map<string, string>, after: Map<string, string>): FieldChange[] {
  const fields: FieldChange[] = [];
  for (const key of new Set([...before.keys(), ...after.keys()])) {
    const from = before.get(key);
    const to = after.get(key);
    if (from === to) continue;
    fields.push({ field: key, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) });
  }
  return fields;
}

/** Simulates MoveStage calls from `current` to `target` (both lists of the same names). */
function stageMoves(current: string[], target: string[]): { stage: string; from: number; to: number }[] {
  const list = [...current];
  const moves: { stage: string; from: number; to: number }[] = [];
  target.forEach((name, i) => {
    if (list[i] === name) return;
    const from = list.indexOf(name);
    list.splice(from, 1);
    list.splice(i, 0, name);
    moves.push({ stage: name, from, to: i });
  });
  return moves;
}

export function planApply(desired: DesiredEnvironment, current: CurrentState, options: { prune: boolean }): Plan {
  const changes: Change[] = [];
  const notes: Note[] = [];
  const problems: FileProblem[] = [];
  const file = desired.source;

  if (!current.environment) {
    changes.push({
      op: 'create-environment',
      environment: `${desired.project}/${desired.name}`,
      runtime: desired.runtime,
    });
  } else if (current.environment.runtime !== desired.runtime) {
    problems.push(
      file.problem(
        ['runtime'],
        `the environment runs on ${JSON.stringify(current.environment.runtime)}: the runtime cannot change (delete the environment and apply again)`,
      ),
    );
  }
  if (current.environment) {
    const have = resolvedSettings(current.environment.settings);
    const fields: FieldChange[] = [];
    for (const key of Object.keys(settingLabels) as (keyof ResolvedSettings)[]) {
      if (have[key] !== desired.settings[key]) {
        const label = settingLabels[key] as (v: unknown) => string;
        fields.push({ field: key, from: label(have[key]), to: label(desired.settings[key]) });
      }
    }
    if (fields.length > 0) changes.push({ op: 'update-settings', fields });
  }

  // --- stages ---
  const currentStages =
    current.pipeline?.stages ??
    DEFAULT_STAGES.map((name, order) => ({ name, description: '', order, id: '', serviceIds: [] }));
  const stageNameOf = new Map(currentStages.map((s) => [s.id, s.name]));
  let stageOrder = currentStages.map((s) => s.name);
  const wantedStages = desired.stages;
  if (wantedStages) {
    const listed = new Set(wantedStages.map((s) => s.name));
    const existing = new Map(currentStages.map((s) => [s.name, s]));
    for (const s of wantedStages) {
      const have = existing.get(s.name);
      if (!have) changes.push({ op: 'create-stage', stage: s.name, description: s.description });
      else if (have.description !== s.description)
        changes.push({ op: 'describe-stage', stage: s.name, from: have.description, to: s.description });
    }
    const unlisted = currentStages.filter((s) => !listed.has(s.name)).map((s) => s.name);
    const kept = options.prune ? [] : unlisted;
    for (const name of unlisted) {
      if (options.prune) changes.push({ op: 'delete-stage', stage: name });
      else notes.push({ op: 'keep-stage', stage: name });
    }
    // Creation appends; pruning removes; then moves bring the listed ones into the file's order, the kept ones after.
    const before = [
      ...currentStages.map((s) => s.name).filter((n) => listed.has(n) || !options.prune),
      ...wantedStages.filter((s) => !existing.has(s.name)).map((s) => s.name),
    ];
    stageOrder = [...wantedStages.map((s) => s.name), ...kept];
    for (const m of stageMoves(before, stageOrder)) changes.push({ op: 'move-stage', ...m });
  }

  // --- services ---
  const byName = new Map(current.services.map((s) => [s.name, s]));
  for (const want of desired.services) {
    const have = byName.get(want.name);
    const stageExists = want.stage === undefined || stageOrder.includes(want.stage);
    if (!stageExists) {
      problems.push(
        file.problem([...want.path, 'stage'], `${JSON.stringify(want.stage)} is not a stage of the environment`),
      );
      continue;
    }
    if (!have || have.kind !== want.kind) {
      if (have)
        changes.push({
          op: 'replace-service',
          service: want.name,
          from: kindLabel(have.kind),
          to: kindLabel(want.kind),
        });
      else
        changes.push({
          op: 'add-service',
          service: want.name,
          kind: kindLabel(want.kind),
          stage: want.stage,
          skipped: want.skipped,
        });
      continue;
    }
    const fields = diffFields(flattenDefinition(have), flattenDefinition(want.definition));
    if (fields.length > 0) changes.push({ op: 'update-service', service: want.name, fields });
    const from = stageNameOf.get(have.stageId) ?? have.stageId;
    // A service whose stage --prune deletes, and that the file does not place, goes to the last stage.
    const to = want.stage ?? (stageOrder.includes(from) ? from : stageOrder.at(-1));
    if (to !== undefined && to !== from) changes.push({ op: 'move-service', service: want.name, from, to });
    if (have.skipped !== want.skipped)
      changes.push({ op: want.skipped ? 'skip-service' : 'unskip-service', service: want.name });
  }
  const listedServices = new Set(desired.services.map((s) => s.name));
  for (const s of current.services) {
    if (listedServices.has(s.name)) continue;
    if (options.prune) changes.push({ op: 'remove-service', service: s.name });
    else notes.push({ op: 'keep-service', service: s.name });
  }
  if (problems.length > 0) throw new EnvironmentFileError(problems);
  return { changes, notes, stageOrder };
}

const q = JSON.stringify;

function fieldText(f: FieldChange): string {
  if (f.from === undefined) return `${f.field}: (unset) → ${f.to}`;
  if (f.to === undefined) return `${f.field}: ${f.from} → (unset)`;
  return `${f.field}: ${f.from} → ${f.to}`;
}

/** One line per change (and field), marked + ~ - like a diff; apply prints the same lines in past tense. */
export function describeChange(
  c: Change,
  tense: 'future' | 'past',
): { mark: '+' | '~' | '-'; text: string; fields: string[] } {
  const past = tense === 'past';
  switch (c.op) {
    case 'create-environment':
      return {
        mark: '+',
        text: `${past ? 'created' : 'create'} environment ${c.environment} (runtime ${c.runtime})`,
        fields: [],
      };
    case 'update-settings':
      return { mark: '~', text: `${past ? 'updated' : 'update'} settings`, fields: c.fields.map(fieldText) };
    case 'create-stage':
      return {
        mark: '+',
        text: `${past ? 'created' : 'create'} stage ${q(c.stage)}`,
        fields: c.description ? [`description: ${q(c.description)}`] : [],
      };
    case 'describe-stage':
      return {
        mark: '~',
        text: `${past ? 'updated' : 'update'} stage ${q(c.stage)}`,
        fields: [`description: ${q(c.from)} → ${q(c.to)}`],
      };
    case 'delete-stage':
      return { mark: '-', text: `${past ? 'deleted' : 'delete'} stage ${q(c.stage)}`, fields: [] };
    case 'move-stage':
      return {
        mark: '~',
        text: `${past ? 'moved' : 'move'} stage ${q(c.stage)} from position ${c.from} to ${c.to}`,
        fields: [],
      };
    case 'add-service':
      return {
        mark: '+',
        text: `${past ? 'added' : 'add'} ${c.kind} service ${c.service}${c.stage === undefined ? '' : ` to stage ${q(c.stage)}`}${c.skipped ? ' (skipped)' : ''}`,
        fields: [],
      };
    case 'replace-service':
      return {
        mark: '~',
        text: `${past ? 'replaced' : 'replace'} service ${c.service}: its kind changes from ${c.from} to ${c.to}`,
        fields: [],
      };
    case 'update-service':
      return {
        mark: '~',
        text: `${past ? 'updated' : 'update'} service ${c.service}`,
        fields: c.fields.map(fieldText),
      };
    case 'move-service':
      return {
        mark: '~',
        text: `${past ? 'moved' : 'move'} service ${c.service} from stage ${q(c.from)} to ${q(c.to)}`,
        fields: [],
      };
    case 'skip-service':
      return { mark: '~', text: `${past ? 'skipped' : 'skip'} service ${c.service}`, fields: [] };
    case 'unskip-service':
      return { mark: '~', text: `${past ? 'unskipped' : 'unskip'} service ${c.service}`, fields: [] };
    case 'remove-service':
      return { mark: '-', text: `${past ? 'removed' : 'remove'} service ${c.service}`, fields: [] };
  }
}

export function describeNote(n: Note): string {
  return n.op === 'keep-service'
    ? `service ${n.service} is not in the file: kept (--prune removes it)`
    : `stage ${q(n.stage)} is not in the file: kept after the listed stages (--prune deletes it)`;
}
