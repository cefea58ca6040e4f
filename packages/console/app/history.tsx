// An environment's runs, newest first, with who ran them; rollback to a run that succeeded.
import { useEffect, useState } from 'preact/hooks';
import { call, can, type control, runs, type Session } from './api.ts';
import { actionName, duration, runStatusName, tone, when } from './format.ts';
import { ErrorNote } from './ui.tsx';

export function History({ session, environmentId }: { session: Session; environmentId: string }) {
  const [list, setList] = useState<control.Deployment[]>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    call(runs.listDeployments, { environmentId, pageSize: 50, pageToken: '' }).then(
      (r) => setList(r.deployments),
      setError,
    );
  }, [environmentId]);
  const rollback = can(session, runs.rollbackEnvironment);
  return (
    <main class="wide">
      <nav class="crumbs" aria-label="breadcrumbs">
        <a href="#/">Environments</a> / <a href={`#/env/${environmentId}`}>pipeline</a> / history
      </nav>
      <h1>History</h1>
      <ErrorNote error={error} />
      <table class="history">
        <thead>
          <tr>
            <th scope="col">run</th>
            <th scope="col">action</th>
            <th scope="col">status</th>
            <th scope="col">by</th>
            <th scope="col">created</th>
            <th scope="col">took</th>
            <th scope="col">
              <span class="sr-only">actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {list?.map((d) => (
            <tr key={d.id}>
              <td>
                <a href={`#/run/${d.id}`}>
                  <code>{d.id.slice(0, 8)}</code>
                </a>
              </td>
              <td>{actionName(d.action)}</td>
              <td>
                <span class={`badge ${tone(runStatusName(d.status))}`}>{runStatusName(d.status)}</span>
              </td>
              <td>{d.requester}</td>
              <td>{when(d.createdAt)}</td>
              <td>{duration(d.startedAt, d.finishedAt)}</td>
              <td>
                {rollback && runStatusName(d.status) === 'SUCCEEDED' && (
                  <button
                    type="button"
                    onClick={() => {
                      if (!window.confirm(`Roll every service back to its version after run ${d.id.slice(0, 8)}?`))
                        return;
                      call(runs.rollbackEnvironment, { environmentId, toDeploymentId: d.id, requester: '' }).then(
                        (r) => {
                          if (r.deployment !== undefined) window.location.hash = `#/run/${r.deployment.id}`;
                        },
                        setError,
                      );
                    }}
                  >
                    Roll back to this
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
