// An environment's pipeline: stages as columns in order, a card per service, a Skipped column.
// Cards move by drag and drop or by keyboard (Space picks a card up, ←/→ choose the column, Space
// drops it, Escape puts it back); every change is an API call and shows the server's refusal.

import type { ServiceRuntime } from '@stageline/proto/deploy';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { call, can, control, env, pipeline, runs, type Session } from './api.ts';
import {
  actionName,
  envStatusName,
  instancesText,
  kindName,
  outcomeName,
  runStatusName,
  runtimeName,
  runtimeTone,
  stateName,
  stepName,
  tone,
} from './format.ts';
import { ErrorNote } from './ui.tsx';

const SKIPPED = 'skipped';

interface Loaded {
  environment: control.Environment;
  stages: control.Stage[];
  services: control.Service[];
  latest: control.Deployment[];
  /** What runs now, by service id (GetRuntimeStatus); empty when the deploy service cannot say. */
  running: Map<string, ServiceRuntime>;
}

/** Each service's state and version in the newest run that touched it (a run it was skipped in does not count). */
function lastKnown(latest: control.Deployment[], serviceId: string): control.ServiceRun | undefined {
  for (const run of latest) {
    const found = run.services.find(
      (s) => s.serviceId === serviceId && s.status !== control.ServiceState.SERVICE_STATE_SKIPPED,
    );
    if (found !== undefined) return found;
  }
  return undefined;
}

function configuredVersion(s: control.Service): string {
  const source = s.source;
  if (source?.$case === 'container') return source.value.tag;
  if (source?.$case === 'application') return source.value.commit || source.value.branch;
  if (source?.$case === 'database') return source.value.version;
  return '';
}

export function Pipeline({ session, environmentId }: { session: Session; environmentId: string }) {
  const [data, setData] = useState<Loaded>();
  const [error, setError] = useState<unknown>();
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [picked, setPicked] = useState<{ serviceId: string; target: string }>();
  const [dragOver, setDragOver] = useState<string>();
  const [announce, setAnnounce] = useState('');
  const [plan, setPlan] = useState<control.Deployment>();
  const [newStage, setNewStage] = useState('');

  const load = useCallback(async () => {
    const [e, p, s, d, r] = await Promise.all([
      call(env.getEnvironment, { environmentId }),
      call(pipeline.getPipeline, { environmentId }),
      call(env.listServices, { environmentId }),
      // The cards' states come from the runs; without them (the planner not answering) the pipeline still shows.
      call(runs.listDeployments, { environmentId, pageSize: 20, pageToken: '' }).catch(() => ({ deployments: [] })),
      call(runs.getRuntimeStatus, { environmentId }).catch(() => ({ services: [] as ServiceRuntime[] })),
    ]);
    setData({
      environment: e.environment!,
      stages: [...(p.pipeline?.stages ?? [])].sort((a, b) => a.order - b.order),
      services: s.services,
      latest: d.deployments,
      running: new Map(r.services.map((x) => [x.serviceId, x])),
    });
  }, [environmentId]);
  useEffect(() => {
    load().catch(setError);
    // The environment's status and the cards' states follow runs: refresh while the page is open.
    const timer = setInterval(() => load().catch(() => {}), 3000);
    return () => clearInterval(timer);
  }, [load]);

  /** Runs an API change, then reloads; a refusal stays on screen until the next change. */
  const change = async (what: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await what();
    } catch (e) {
      setError(e);
    }
    await load().catch(setError);
  };

  if (data === undefined) {
    return (
      <main>
        <ErrorNote error={error} />
        {error === undefined && <p>Loading…</p>}
      </main>
    );
  }
  const { environment, stages, services } = data;
  const admin = can(session, pipeline.moveService);
  const deployer = can(session, runs.deployEnvironment);
  const columns = [...stages.map((s) => s.id), SKIPPED];
  const columnName = (id: string) => (id === SKIPPED ? 'Skipped' : (stages.find((s) => s.id === id)?.name ?? id));

  const moveTo = (service: control.Service, target: string) =>
    change(async () => {
      if (target === SKIPPED) {
        if (!service.skipped)
          await call(pipeline.setServiceSkipped, { environmentId, serviceId: service.id, skipped: true });
        return;
      }
      if (service.stageId !== target)
        await call(pipeline.moveService, { environmentId, serviceId: service.id, stageId: target });
      if (service.skipped)
        await call(pipeline.setServiceSkipped, { environmentId, serviceId: service.id, skipped: false });
    });

  const columnOf = (s: control.Service) => (s.skipped ? SKIPPED : s.stageId);

  /** The handle's click (Space, Enter, a pointer): pick the card up, or drop it where the arrows pointed. */
  const pickOrDrop = (service: control.Service) => {
    if (picked?.serviceId !== service.id) {
      setPicked({ serviceId: service.id, target: columnOf(service) });
      setAnnounce(`${service.name} picked up in ${columnName(columnOf(service))}.`);
      return;
    }
    setPicked(undefined);
    setAnnounce(`${service.name} dropped in ${columnName(picked.target)}`);
    if (picked.target !== columnOf(service)) void moveTo(service, picked.target);
  };

  /** While a card is picked up: ←/→ choose its column, Escape puts it back. */
  const onHandleKey = (e: KeyboardEvent, service: control.Service) => {
    if (picked?.serviceId !== service.id) return;
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      e.preventDefault();
      const at = columns.indexOf(picked.target);
      const next = columns[Math.min(columns.length - 1, Math.max(0, at + (e.key === 'ArrowRight' ? 1 : -1)))]!;
      setPicked({ serviceId: service.id, target: next });
      setAnnounce(`${service.name} over ${columnName(next)}`);
    } else if (e.key === 'Escape') {
      setPicked(undefined);
      setAnnounce(`${service.name}: move canceled`);
    }
  };

  const act = (run: () => Promise<{ deployment?: control.Deployment | undefined }>) =>
    change(async () => {
      const r = await run();
      if (r.deployment !== undefined) window.location.hash = `#/run/${r.deployment.id}`;
    }).catch(setError);
  const base = { environmentId, version: '', requester: '', forceBuild: false, versions: {} };
  const chosen = [...selected].filter((id) => services.some((s) => s.id === id));
  const onSelected = (
    def: typeof runs.deployService | typeof runs.stopService | typeof runs.restartService | typeof runs.deleteService,
  ) =>
    // One run for every selected service, in stage order.
    act(() => call(def, { ...base, serviceId: '', serviceIds: chosen }));

  const card = (s: control.Service) => {
    const known = lastKnown(data.latest, s.id);
    const state = known === undefined ? 'NEVER DEPLOYED' : stateName(known.status);
    const isPicked = picked?.serviceId === s.id;
    const now = data.running.get(s.id);
    return (
      <li
        key={s.id}
        class={`card${isPicked ? ' picked' : ''}`}
        data-service={s.name}
        draggable={admin}
        onDragStart={(e) => {
          e.dataTransfer?.setData('text/plain', s.id);
          if (e.dataTransfer) e.dataTransfer.effectAllowed = 'move';
        }}
      >
        <div class="card-head">
          {admin && (
            <button
              type="button"
              class="handle"
              aria-label={`move ${s.name}`}
              aria-pressed={isPicked}
              aria-describedby="move-help"
              onKeyDown={(e) => onHandleKey(e, s)}
              onClick={() => pickOrDrop(s)}
            >
              ⠿
            </button>
          )}
          {deployer && (
            <input
              type="checkbox"
              aria-label={`select ${s.name}`}
              checked={selected.has(s.id)}
              onChange={(e) => {
                const next = new Set(selected);
                if (e.currentTarget.checked) next.add(s.id);
                else next.delete(s.id);
                setSelected(next);
              }}
            />
          )}
          <strong>{s.name}</strong>
        </div>
        <div class="muted">
          {kindName(s.kind)} · {known?.version || configuredVersion(s) || '—'}
        </div>
        <span class={`badge ${tone(state)}`} data-state={state}>
          {state}
        </span>{' '}
        {now !== undefined && (
          <span class={`badge ${runtimeTone(runtimeName(now))}`} data-running={runtimeName(now)} title={now.message}>
            {runtimeName(now)}
          </span>
        )}
        {now !== undefined && instancesText(now) !== '' && <div class="muted">{instancesText(now)}</div>}
      </li>
    );
  };

  const column = (id: string, title: string, members: control.Service[], stage?: control.Stage, index = 0) => (
    <section
      key={id}
      class={`column${dragOver === id || picked?.target === id ? ' over' : ''}${id === SKIPPED ? ' skipped' : ''}`}
      data-column={title}
      aria-label={`stage ${title}`}
      onDragOver={(e) => {
        if (!admin) return;
        e.preventDefault();
        setDragOver(id);
      }}
      onDragLeave={() => setDragOver(undefined)}
      onDrop={(e) => {
        e.preventDefault();
        setDragOver(undefined);
        const service = services.find((s) => s.id === e.dataTransfer?.getData('text/plain'));
        if (service !== undefined && columnOf(service) !== id) void moveTo(service, id);
      }}
    >
      <header>
        <h2>{title}</h2>
        {stage !== undefined && stage.description !== '' && <p class="muted">{stage.description}</p>}
        {admin && stage !== undefined && (
          <div class="stage-tools">
            <button
              type="button"
              aria-label={`move ${title} left`}
              disabled={index === 0}
              onClick={() =>
                change(() => call(pipeline.moveStage, { environmentId, stageId: stage.id, position: index - 1 }))
              }
            >
              ←
            </button>
            <button
              type="button"
              aria-label={`move ${title} right`}
              disabled={index === stages.length - 1}
              onClick={() =>
                change(() => call(pipeline.moveStage, { environmentId, stageId: stage.id, position: index + 1 }))
              }
            >
              →
            </button>
            <button
              type="button"
              aria-label={`rename ${title}`}
              onClick={() => {
                const name = window.prompt(`Rename stage ${title}`, title);
                if (name !== null && name !== title) {
                  void change(() => call(pipeline.updateStage, { environmentId, stageId: stage.id, name }));
                }
              }}
            >
              Rename
            </button>
            <button
              type="button"
              aria-label={`delete ${title}`}
              onClick={() => {
                if (window.confirm(`Delete stage ${title}?`)) {
                  void change(() =>
                    call(pipeline.deleteStage, { environmentId, stageId: stage.id, moveServicesToStageId: '' }),
                  );
                }
              }}
            >
              Delete
            </button>
          </div>
        )}
      </header>
      <ul class="cards">{members.map(card)}</ul>
    </section>
  );

  return (
    <main class="wide">
      <nav class="crumbs" aria-label="breadcrumbs">
        <a href="#/">Environments</a> / {environment.project}
      </nav>
      <h1>
        {environment.project}/{environment.name}{' '}
        <span class={`badge ${tone(envStatusName(environment.status))}`} data-testid="env-status">
          {envStatusName(environment.status)}
        </span>
      </h1>
      <p class="page-links">
        <a href={`#/env/${environmentId}/history`}>History</a>
        {data.latest[0] !== undefined && (
          <>
            {' · '}
            <a href={`#/run/${data.latest[0].id}`}>
              Latest run: {actionName(data.latest[0].action)} {runStatusName(data.latest[0].status)}
            </a>
          </>
        )}
      </p>
      {deployer && (
        <div class="actions" role="toolbar" aria-label="environment actions">
          <button type="button" onClick={() => act(() => call(runs.deployEnvironment, base))}>
            Deploy
          </button>
          <button type="button" onClick={() => act(() => call(runs.redeployEnvironment, base))}>
            Redeploy
          </button>
          <button type="button" onClick={() => act(() => call(runs.restartEnvironment, base))}>
            Restart
          </button>
          <button type="button" onClick={() => act(() => call(runs.stopEnvironment, base))}>
            Stop
          </button>
          <button
            type="button"
            class="danger"
            onClick={() => {
              if (window.confirm(`Delete ${environment.project}/${environment.name}: every service and its data?`)) {
                void act(() => call(runs.deleteEnvironment, base));
              }
            }}
          >
            Delete…
          </button>
          <button
            type="button"
            onClick={() =>
              change(async () => {
                const r = await call(runs.planDeployment, {
                  environmentId,
                  action: control.Action.ACTION_DEPLOY,
                  serviceIds: chosen,
                  version: '',
                  forceBuild: false,
                  toDeploymentId: '',
                  versions: {},
                });
                setPlan(r.deployment);
              })
            }
          >
            Plan{chosen.length > 0 ? ` (${chosen.length} selected)` : ''}
          </button>
          {chosen.length > 0 && (
            <fieldset class="selection">
              <legend class="sr-only">actions on selected services</legend>
              {chosen.length} selected:
              <button type="button" onClick={() => onSelected(runs.deployService)}>
                Deploy
              </button>
              <button type="button" onClick={() => onSelected(runs.restartService)}>
                Restart
              </button>
              <button type="button" onClick={() => onSelected(runs.stopService)}>
                Stop
              </button>
              <button
                type="button"
                class="danger"
                onClick={() => {
                  if (window.confirm(`Delete ${chosen.length} service(s) and their data?`)) {
                    void onSelected(runs.deleteService);
                  }
                }}
              >
                Delete…
              </button>
            </fieldset>
          )}
        </div>
      )}
      <ErrorNote error={error} />
      <p class="sr-only" aria-live="assertive">
        {announce}
      </p>
      <p id="move-help" class="sr-only">
        Space picks a service up; left and right arrows choose a column; Space drops it there; Escape cancels.
      </p>
      {plan !== undefined && <PlanView plan={plan} onClose={() => setPlan(undefined)} />}
      {admin && (
        <form
          class="add-stage"
          onSubmit={(e) => {
            e.preventDefault();
            void change(() => call(pipeline.createStage, { environmentId, name: newStage, description: '' })).then(() =>
              setNewStage(''),
            );
          }}
        >
          <label for="new-stage">New stage</label>
          <input id="new-stage" value={newStage} onInput={(e) => setNewStage(e.currentTarget.value)} />
          <button type="submit">Add stage</button>
        </form>
      )}
      <div class="board">
        {stages.map((stage, i) =>
          column(
            stage.id,
            stage.name,
            services.filter((s) => s.stageId === stage.id && !s.skipped),
            stage,
            i,
          ),
        )}
        {column(
          SKIPPED,
          'Skipped',
          services.filter((s) => s.skipped),
        )}
      </div>
    </main>
  );
}

/** The dry run: what a deploy would do, service by service, cache hits marked. */
function PlanView({ plan, onClose }: { plan: control.Deployment; onClose: () => void }) {
  return (
    <section class="plan" aria-label="plan">
      <header>
        <h2>Plan: {actionName(plan.action)}</h2>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </header>
      {[...plan.stages]
        .sort((a, b) => a.order - b.order)
        .map((stage) => (
          <div key={stage.stageId}>
            <h3>{stage.name}</h3>
            <ul>
              {plan.services
                .filter((s) => s.stageId === stage.stageId)
                .map((s) => (
                  <li key={s.serviceId}>
                    <strong>{s.name}</strong> {stateName(s.status)} {s.version}{' '}
                    {s.steps.map((st) => (
                      <span key={st.kind} class={`step ${tone(outcomeName(st.outcome))}`}>
                        {stepName(st.kind)}
                        {st.outcome === control.StepOutcome.STEP_OUTCOME_CACHE_HIT ? ' (cache hit)' : ''}
                      </span>
                    ))}
                    {s.message !== '' && <span class="muted"> {s.message}</span>}
                  </li>
                ))}
            </ul>
          </div>
        ))}
    </section>
  );
}
