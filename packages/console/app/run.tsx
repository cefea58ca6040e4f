// A run, live (WatchDeployment), and a run's logs, followed live (StreamLogs).
import { useEffect, useState } from 'preact/hooks';
import { type ApiError, call, can, control, runs, type Session, stream } from './api.ts';
import {
  actionName,
  duration,
  outcomeName,
  runStatusName,
  stageStatusName,
  stateName,
  stepName,
  TERMINAL_RUN,
  tone,
  when,
} from './format.ts';
import { ErrorNote } from './ui.tsx';

const FAILED_STATES = /ERROR/;
/** Runs ResumeDeployment takes: the services that did not succeed run again, the rest is kept. */
const RESUMABLE: readonly control.DeploymentStatus[] = [
  control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_CANCELED,
];

export function Run({ session, deploymentId }: { session: Session; deploymentId: string }) {
  const [run, setRun] = useState<control.Deployment>();
  const [error, setError] = useState<unknown>();
  const [live, setLive] = useState(true);
  const [, tick] = useState(0);
  useEffect(() => {
    setLive(true);
    const stop = stream(
      runs.watchDeployment,
      { deploymentId },
      (m) => m.deployment !== undefined && setRun(m.deployment),
      (e?: ApiError) => {
        setLive(false);
        if (e !== undefined) setError(e);
      },
    );
    // Durations of steps still running grow by themselves.
    const timer = setInterval(() => tick((n) => n + 1), 1000);
    return () => {
      stop();
      clearInterval(timer);
    };
  }, [deploymentId]);
  if (run === undefined) {
    return (
      <main>
        <ErrorNote error={error} />
        {error === undefined && <p>Loading run…</p>}
      </main>
    );
  }
  const status = runStatusName(run.status);
  const finished = TERMINAL_RUN.includes(run.status);
  // Progress over the services this run acts on (a skipped one has nothing to do).
  const acting = run.services.filter((s) => s.status !== control.ServiceState.SERVICE_STATE_SKIPPED);
  const done = acting.filter((s) => s.steps.length > 0 && s.steps.every((st) => st.finishedAt !== undefined));
  const failed = run.services.filter((s) => FAILED_STATES.test(stateName(s.status)));
  return (
    <main class="wide">
      <nav class="crumbs" aria-label="breadcrumbs">
        <a href="#/">Environments</a> / <a href={`#/env/${run.environmentId}`}>environment</a> /{' '}
        <a href={`#/env/${run.environmentId}/history`}>history</a>
      </nav>
      <h1>
        {actionName(run.action)} run{' '}
        <span class={`badge ${tone(status)}`} data-testid="run-status">
          {status}
        </span>
        {live && !finished && <span class="live">● live</span>}
      </h1>
      <p class="muted">
        <code>{run.id}</code> · by {run.requester} · created {when(run.createdAt)}
        {run.startedAt !== undefined && ` · ${duration(run.startedAt, run.finishedAt)}`}
      </p>
      {run.status === control.DeploymentStatus.DEPLOYMENT_STATUS_QUEUED && (
        <p class="queue" data-testid="queue">
          Queued: position {run.queuePosition} in this environment's queue (one run at a time per environment)
          {run.waitsFor !== '' && (
            <>
              ; waits for run{' '}
              <a href={`#/run/${run.waitsFor}`} data-testid="waits-for">
                {run.waitsFor}
              </a>
            </>
          )}
          .
        </p>
      )}
      {run.resumedFrom !== '' && (
        <p data-testid="resumed-from">
          Resumes run <a href={`#/run/${run.resumedFrom}`}>{run.resumedFrom}</a>: only what did not succeed there runs;
          the rest is kept.
        </p>
      )}
      {run.message !== '' && <p>{run.message}</p>}
      <progress max={Math.max(1, acting.length)} value={done.length} aria-label="services done">
        {done.length}/{acting.length}
      </progress>
      <p class="page-links">
        <a href={`#/logs/${run.id}`}>Logs</a>
        {RESUMABLE.includes(run.status) && can(session, runs.resumeDeployment) && (
          <>
            {' · '}
            <button
              type="button"
              title="A new run of the same action and version, for the services that did not succeed"
              onClick={() =>
                call(runs.resumeDeployment, { deploymentId: run.id, requester: '' })
                  .then((r) => {
                    if (r.deployment !== undefined) window.location.hash = `#/run/${r.deployment.id}`;
                  })
                  .catch(setError)
              }
            >
              Resume
            </button>
          </>
        )}
        {!finished && can(session, runs.cancelDeployment) && (
          <>
            {' · '}
            <button
              type="button"
              class="danger"
              onClick={() => call(runs.cancelDeployment, { deploymentId: run.id }).catch(setError)}
            >
              Cancel run
            </button>
          </>
        )}
      </p>
      <ErrorNote error={error} />
      {[...run.stages]
        .sort((a, b) => a.order - b.order)
        .map((stage) => (
          <section key={stage.stageId} class="run-stage" aria-label={`stage ${stage.name}`}>
            <h2>
              {stage.name}{' '}
              <span class={`badge ${tone(stageStatusName(stage.status))}`}>{stageStatusName(stage.status)}</span>
            </h2>
            <table>
              <thead>
                <tr>
                  <th scope="col">service</th>
                  <th scope="col">state</th>
                  <th scope="col">version</th>
                  <th scope="col">steps</th>
                </tr>
              </thead>
              <tbody>
                {run.services
                  .filter((s) => s.stageId === stage.stageId)
                  .map((s) => (
                    <tr key={s.serviceId} data-service={s.name}>
                      <th scope="row">
                        <a href={`#/logs/${run.id}/${s.serviceId}`}>{s.name}</a>
                      </th>
                      <td>
                        <span class={`badge ${tone(stateName(s.status))}`} data-state={stateName(s.status)}>
                          {stateName(s.status)}
                        </span>
                      </td>
                      <td>{s.version}</td>
                      <td>
                        {s.steps.map((st, i) => (
                          <span
                            key={i}
                            class={`step ${st.finishedAt === undefined ? 'busy' : tone(outcomeName(st.outcome))}`}
                            data-step={stepName(st.kind)}
                          >
                            {stepName(st.kind)} {duration(st.startedAt, st.finishedAt)}
                            {st.outcome === control.StepOutcome.STEP_OUTCOME_CACHE_HIT && ' (cache hit)'}
                          </span>
                        ))}
                        {s.endpoints.map((e) => (
                          <a key={e.url} class="endpoint" href={e.url} rel="noreferrer">
                            {e.url}
                          </a>
                        ))}
                        {s.message !== '' && <div class="muted">{s.message}</div>}
                      </td>
                    </tr>
                  ))}
              </tbody>
            </table>
          </section>
        ))}
      {failed.map((s) => (
        <section key={s.serviceId} class="failure" aria-label={`failure of ${s.name}`}>
          <h2>{s.name} failed</h2>
          <p>{s.steps.find((st) => st.outcome === control.StepOutcome.STEP_OUTCOME_ERROR)?.message ?? s.message}</p>
          <LogLines deploymentId={run.id} serviceId={s.serviceId} follow={false} last={20} />
        </section>
      ))}
    </main>
  );
}

function LogLines(props: { deploymentId: string; serviceId: string; follow: boolean; last?: number }) {
  const [lines, setLines] = useState<control.LogLine[]>([]);
  const [error, setError] = useState<unknown>();
  const [live, setLive] = useState(true);
  useEffect(() => {
    setLines([]);
    setLive(true);
    return stream(
      runs.streamLogs,
      { deploymentId: props.deploymentId, serviceId: props.serviceId, follow: props.follow },
      (m) => {
        const line = m.line;
        if (line !== undefined) setLines((all) => [...all, line]);
      },
      (e) => {
        setLive(false);
        if (e !== undefined) setError(e);
      },
      () => setLines([]),
    );
  }, [props.deploymentId, props.serviceId, props.follow]);
  const shown = props.last === undefined ? lines : lines.slice(-props.last);
  return (
    <>
      <ErrorNote error={error} />
      <pre class="logs" aria-live="polite" data-testid="log-lines">
        {shown.map((l) => `${l.timestamp?.toISOString() ?? ''} ${stepName(l.step)} ${l.message}\n`).join('')}
      </pre>
      <p class="muted">
        {lines.length} lines{props.follow && live ? ' · following' : ''}
      </p>
    </>
  );
}

/** `#/logs/<run>[/<service>]`: a run's logs by service, followed live. */
export function Logs({ deploymentId, serviceId = '' }: { deploymentId: string; serviceId?: string }) {
  const [run, setRun] = useState<control.Deployment>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    call(runs.getDeployment, { deploymentId }).then((r) => setRun(r.deployment), setError);
  }, [deploymentId]);
  return (
    <main class="wide">
      <nav class="crumbs" aria-label="breadcrumbs">
        <a href="#/">Environments</a> / <a href={`#/run/${deploymentId}`}>run</a> / logs
      </nav>
      <h1>Logs</h1>
      <ErrorNote error={error} />
      <label for="log-service">Service</label>{' '}
      <select
        id="log-service"
        value={serviceId}
        onChange={(e) => {
          const id = e.currentTarget.value;
          window.location.hash = `#/logs/${deploymentId}${id === '' ? '' : `/${id}`}`;
        }}
      >
        <option value="">every service</option>
        {run?.services.map((s) => (
          <option key={s.serviceId} value={s.serviceId}>
            {s.name}
          </option>
        ))}
      </select>
      <LogLines deploymentId={deploymentId} serviceId={serviceId} follow={true} />
    </main>
  );
}
