// The console's client of control's JSON gateway, typed by the generated service definitions: a
// call's request and response types are the protos' own, and so are the JSON codecs (no copy).
import * as control from '@stageline/proto/control';

export { control };

/** A method of a generated service definition (`control.PipelineServiceService.moveService`). */
interface MethodDef {
  path: string;
  responseStream: boolean;
  // biome-ignore lint/suspicious/noExplicitAny: only the parameter's type is read (RequestOf)
  requestSerialize: (value: any) => unknown;
  // biome-ignore lint/suspicious/noExplicitAny: only the return type is read (ResponseOf)
  responseDeserialize: (value: any) => unknown;
}
export type RequestOf<D extends MethodDef> = Parameters<D['requestSerialize']>[0];
export type ResponseOf<D extends MethodDef> = ReturnType<D['responseDeserialize']>;

interface Codec {
  fromJSON(object: unknown): unknown;
  toJSON(message: unknown): unknown;
}
const codecs = control as unknown as Record<string, Codec>;
const rpcOf = (def: MethodDef) => def.path.slice(def.path.lastIndexOf('/') + 1);
const codec = (name: string): Codec => {
  const found = codecs[name];
  if (found === undefined) throw new Error(`no codec ${name}`);
  return found;
};

/** A refusal: the gRPC code, the server's message and the field at fault. */
export class ApiError extends Error {
  readonly code: string;
  readonly field: string | undefined;
  constructor(error: { code?: string; message?: string; field?: string }) {
    super(error.message ?? 'the request failed');
    this.code = error.code ?? 'UNKNOWN';
    this.field = error.field;
  }
}

export interface Session {
  tokenName: string;
  role: 'ROLE_VIEWER' | 'ROLE_DEPLOYER' | 'ROLE_ADMIN';
  projects: string[];
  csrf: string;
  /** `PipelineService/moveService`…: what the role may call (METHOD_ROLES). */
  allowed: string[];
}

let csrf = '';

/**
 * Calls that may be sent again when the network failed under them: reads, and changes whose second
 * application changes nothing. Chromium aborts every request in flight when the machine's network
 * interfaces change (a container starting, say): ERR_NETWORK_CHANGED, even on loopback.
 */
const REPEATABLE = /^(Get|List|Plan|Explain|MoveService|SetServiceSkipped|MoveStage|UpdateStage)/;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function send(url: string, init: RequestInit, repeatable: boolean): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url, { credentials: 'same-origin', ...init });
    } catch (e) {
      // fetch rejects only when no answer came: the server refused nothing.
      if (!repeatable || attempt >= 6) {
        throw new ApiError({
          code: 'UNAVAILABLE',
          message: repeatable
            ? `the console cannot be reached (${String(e)})`
            : `the connection failed before the server answered (${String(e)}); look at the history before trying again`,
        });
      }
      await pause(250 * attempt);
    }
  }
}

async function json(res: Response): Promise<unknown> {
  const body = (await res.json().catch(() => ({}))) as { error?: ConstructorParameters<typeof ApiError>[0] };
  if (!res.ok) throw new ApiError(body.error ?? { code: String(res.status), message: res.statusText });
  return body;
}

export async function currentSession(): Promise<Session | undefined> {
  const res = await send('/api/session', {}, true);
  if (res.status === 401) return undefined;
  const session = (await json(res)) as Session;
  csrf = session.csrf;
  return session;
}

export async function signIn(token: string): Promise<Session> {
  const res = await send(
    '/api/session',
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) },
    true, // a second session is harmless
  );
  const session = (await json(res)) as Session;
  csrf = session.csrf;
  return session;
}

export async function signOut(): Promise<void> {
  await send('/api/session', { method: 'DELETE', headers: { 'x-stageline-csrf': csrf } }, true);
  csrf = '';
}

/** May the session call this method? Only what the page shows: the server decides each call. */
export function can(session: Session, def: MethodDef): boolean {
  const [, service = '', rpc = ''] = /\.([A-Za-z]+)\/([A-Za-z]+)$/.exec(def.path) ?? [];
  return session.allowed.includes(`${service}/${rpc.charAt(0).toLowerCase()}${rpc.slice(1)}`);
}

/** One unary call through the gateway. */
export async function call<D extends MethodDef>(def: D, request: RequestOf<D>): Promise<ResponseOf<D>> {
  const rpc = rpcOf(def);
  const res = await send(
    `/api${def.path}`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-stageline-csrf': csrf },
      body: JSON.stringify(codec(`${rpc}Request`).toJSON(request)),
    },
    REPEATABLE.test(rpc),
  );
  return codec(`${rpc}Response`).fromJSON(await json(res)) as ResponseOf<D>;
}

/**
 * A server stream as server-sent events; returns a function that stops it. When the connection
 * breaks, the stream is opened again (`onRestart` first: it starts over, from the first message).
 */
export function stream<D extends MethodDef>(
  def: D,
  request: RequestOf<D>,
  onMessage: (message: ResponseOf<D>) => void,
  onEnd: (error?: ApiError) => void,
  onRestart: () => void = () => {},
): () => void {
  const rpc = rpcOf(def);
  const query = encodeURIComponent(JSON.stringify(codec(`${rpc}Request`).toJSON(request)));
  let source: EventSource | undefined;
  let done = false;
  let failures = 0;
  const finish = (error?: ApiError) => {
    if (done) return;
    done = true;
    source?.close();
    onEnd(error);
  };
  const open = () => {
    source = new EventSource(`/api${def.path}?request=${query}`);
    source.onmessage = (e) => {
      failures = 0;
      onMessage(codec(`${rpc}Response`).fromJSON(JSON.parse(e.data)) as ResponseOf<D>);
    };
    source.addEventListener('end', () => finish());
    source.addEventListener('failed', (e) => finish(new ApiError(JSON.parse((e as MessageEvent<string>).data))));
    // EventSource would reconnect by itself and replay the stream into what is shown: reopen it here instead.
    source.onerror = () => {
      source?.close();
      if (done) return;
      if (++failures > 5)
        return finish(new ApiError({ code: 'UNAVAILABLE', message: 'the live stream was interrupted' }));
      setTimeout(() => {
        if (done) return;
        onRestart();
        open();
      }, 300 * failures);
    };
  };
  open();
  return () => {
    done = true;
    source?.close();
  };
}

export const env = control.EnvironmentServiceService;
export const pipeline = control.PipelineServiceService;
export const runs = control.DeploymentServiceService;
