// The console's shell: sign-in, the navigation and the pages, routed by the URL's hash.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { call, type control, currentSession, env, type Session, signIn, signOut } from './api.ts';
import { envStatusName, tone } from './format.ts';
import { History } from './history.tsx';
import { Pipeline } from './pipeline.tsx';
import { Logs, Run } from './run.tsx';
import { ErrorNote } from './ui.tsx';
import './style.css';

/** `#/env/<id>` → ['env', '<id>'] */
function useRoute(): string[] {
  const read = () => window.location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<unknown>();
  return (
    <main class="signin">
      <h1>Stageline</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          signIn(token).then(onSignedIn, setError);
        }}
      >
        <label for="token">API token</label>
        <input
          id="token"
          type="password"
          autocomplete="off"
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          placeholder="stl_…"
          required
        />
        <button type="submit">Sign in</button>
        <p class="hint">
          A token from <code>stageline token create</code>; the dev stack's first admin token is in{' '}
          <code>.stageline/admin.token</code>.
        </p>
        <ErrorNote error={error} />
      </form>
    </main>
  );
}

function Environments() {
  const [list, setList] = useState<control.Environment[]>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    call(env.listEnvironments, { project: '', pageSize: 500, pageToken: '' }).then(
      (r) => setList(r.environments),
      setError,
    );
  }, []);
  const projects = [...new Set((list ?? []).map((e) => e.project))].sort();
  return (
    <main>
      <h1>Environments</h1>
      <ErrorNote error={error} />
      {list === undefined && error === undefined && <p>Loading…</p>}
      {list?.length === 0 && (
        <p>
          No environments yet: apply one with <code>stageline apply -f env.yaml</code>.
        </p>
      )}
      {projects.map((project) => (
        <section key={project} aria-labelledby={`project-${project}`}>
          <h2 id={`project-${project}`}>{project}</h2>
          <ul class="env-list">
            {(list ?? [])
              .filter((e) => e.project === project)
              .map((e) => (
                <li key={e.id}>
                  <a href={`#/env/${e.id}`}>
                    {e.project}/{e.name}
                  </a>
                  <span class={`badge ${tone(envStatusName(e.status))}`}>{envStatusName(e.status)}</span>
                  <span class="muted">{e.runtime}</span>
                  {e.preview && <span class="muted">preview</span>}
                </li>
              ))}
          </ul>
        </section>
      ))}
    </main>
  );
}

function App() {
  const [session, setSession] = useState<Session | null>();
  const route = useRoute();
  useEffect(() => {
    currentSession().then(
      (s) => setSession(s ?? null),
      () => setSession(null),
    );
  }, []);
  if (session === undefined) return <p>Loading…</p>;
  if (session === null) return <SignIn onSignedIn={setSession} />;
  const [page, id, sub] = route;
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">
          Stageline
        </a>
        <nav aria-label="main">
          <a href="#/">Environments</a>
        </nav>
        <span class="who" data-role={session.role}>
          {session.tokenName} · {session.role.replace('ROLE_', '').toLowerCase()}
        </span>
        <button type="button" class="link" onClick={() => signOut().then(() => setSession(null))}>
          Sign out
        </button>
      </header>
      {page === 'env' && id !== undefined && sub === 'history' ? (
        <History session={session} environmentId={id} />
      ) : page === 'env' && id !== undefined ? (
        <Pipeline session={session} environmentId={id} />
      ) : page === 'run' && id !== undefined ? (
        <Run session={session} deploymentId={id} />
      ) : page === 'logs' && id !== undefined ? (
        <Logs deploymentId={id} {...(sub === undefined ? {} : { serviceId: sub })} />
      ) : (
        <Environments />
      )}
    </>
  );
}

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
