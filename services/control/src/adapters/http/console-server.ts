// The web console over HTTPS: the browser app's static files and the JSON gateway to the public
// API (gateway.ts), behind a session cookie. HTTP/2 (HTTP/1.1 too): a run page holds several
// server-sent event streams, more than HTTP/1.1's six connections per origin would allow for long.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { extname, join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { TlsFiles, TokenVerifier } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import type { Role } from '../../domain/access.ts';
import {
  allowedMethods,
  CSRF_HEADER,
  csrfRefusal,
  SESSION_TTL_MS,
  sessionCookie,
  sessionIdOf,
} from '../../domain/console.ts';
import { type ApiError, apiErrorOf, BadRequest, Gateway, httpStatusOf } from './gateway.ts';
import { type DeliveryHandler, HOOKS_PREFIX, handleHook } from './webhooks.ts';

export interface ConsoleOptions {
  listen: string;
  tls: TlsFiles;
  /** control's own gRPC server (host:port), which every API call goes through. */
  grpcAddress: string;
  verifyToken: TokenVerifier;
  /** The built browser app (index.html, assets/): `@stageline/console`'s consoleAssetsDir. */
  assetsDir: string;
  log: Logger;
  /** Webhook deliveries (`POST /hooks/<environment_id>`); absent: none are taken. */
  hooks?: DeliveryHandler;
}

export interface RunningConsole {
  /** `https://127.0.0.1:8443` */
  url: string;
  close(): Promise<void>;
}

interface Session {
  token: string;
  csrf: string;
  expiresAt: number;
}

type Request = http2.Http2ServerRequest;
type Response = http2.Http2ServerResponse;

const MAX_BODY = 4 * 1024 * 1024;
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};
// Everything is bundled: the page may load nothing from anywhere else.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000',
};

const newSecret = () => randomBytes(32).toString('base64url');

export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const { log } = options;
  const [cert, key] = await Promise.all([readFile(options.tls.cert), readFile(options.tls.key)]);
  const gateway = new Gateway(options.grpcAddress, options.tls.ca);
  const sessions = new Map<string, Session>();
  const streams = new Set<{ cancel(): void }>();

  const sessionOf = (req: Request): [string, Session] | undefined => {
    const id = sessionIdOf(req.headers.cookie);
    const session = id === undefined ? undefined : sessions.get(id);
    if (id === undefined || session === undefined) return undefined;
    if (session.expiresAt <= Date.now()) {
      sessions.delete(id);
      return undefined;
    }
    return [id, session];
  };

  const send = (res: Response, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      ...headers,
    });
    res.end(JSON.stringify(body));
  };
  const refuse = (res: Response, status: number, error: ApiError) => send(res, status, { error });

  const readBody = async (req: Request): Promise<unknown> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY) throw new BadRequest(`the body is over ${MAX_BODY} bytes`);
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      return text === '' ? {} : JSON.parse(text);
    } catch {
      throw new BadRequest('the body is not JSON');
    }
  };

  const describe = async (session: Session) => {
    const principal = await options.verifyToken(session.token);
    if (principal === undefined) return undefined;
    return {
      tokenName: principal.tokenName,
      role: principal.role,
      projects: principal.projects,
      csrf: session.csrf,
      allowed: allowedMethods(principal.role as Role),
    };
  };

  async function handleSession(req: Request, res: Response): Promise<void> {
    const found = sessionOf(req);
    const host = req.headers[':authority'] ?? req.headers.host;
    if (req.method === 'POST') {
      const refusal = csrfRefusal({ method: 'GET', origin: req.headers.origin, host, csrf: undefined }, '');
      if (refusal !== undefined) return refuse(res, 403, { code: 'PERMISSION_DENIED', message: refusal });
      const body = (await readBody(req)) as { token?: unknown };
      const token = typeof body.token === 'string' ? body.token.trim() : '';
      if (token === '')
        return refuse(res, 400, { code: 'INVALID_ARGUMENT', message: 'token: required', field: 'token' });
      const session: Session = { token, csrf: newSecret(), expiresAt: Date.now() + SESSION_TTL_MS };
      const described = await describe(session);
      if (described === undefined) {
        return refuse(res, 401, { code: 'UNAUTHENTICATED', message: 'the token is unknown, revoked or expired' });
      }
      const id = newSecret();
      // Sessions nobody came back to go when someone signs in: the map holds only live ones.
      const now = Date.now();
      for (const [other, s] of sessions) if (s.expiresAt <= now) sessions.delete(other);
      sessions.set(id, session);
      log.info({ token: described.tokenName, role: described.role }, 'console sign-in');
      return send(res, 200, described, { 'set-cookie': sessionCookie(id, SESSION_TTL_MS) });
    }
    if (found === undefined) return refuse(res, 401, { code: 'UNAUTHENTICATED', message: 'not signed in' });
    const [id, session] = found;
    if (req.method === 'DELETE') {
      const refusal = csrfRefusal(
        { method: 'DELETE', origin: req.headers.origin, host, csrf: header(req, CSRF_HEADER) },
        session.csrf,
      );
      if (refusal !== undefined) return refuse(res, 403, { code: 'PERMISSION_DENIED', message: refusal });
      sessions.delete(id);
      return send(res, 200, {}, { 'set-cookie': sessionCookie('', 0) });
    }
    const described = await describe(session);
    if (described === undefined) {
      sessions.delete(id);
      return refuse(res, 401, { code: 'UNAUTHENTICATED', message: 'the token is unknown, revoked or expired' });
    }
    return send(res, 200, described);
  }

  async function handleCall(req: Request, res: Response, path: string): Promise<void> {
    const method = gateway.methods.get(path);
    if (method === undefined) return refuse(res, 404, { code: 'NOT_FOUND', message: `no public method ${path}` });
    const found = sessionOf(req);
    if (found === undefined) return refuse(res, 401, { code: 'UNAUTHENTICATED', message: 'not signed in' });
    const [, session] = found;
    const host = req.headers[':authority'] ?? req.headers.host;
    const refusal = csrfRefusal(
      { method: req.method, origin: req.headers.origin, host, csrf: header(req, CSRF_HEADER) },
      session.csrf,
    );
    if (refusal !== undefined) return refuse(res, 403, { code: 'PERMISSION_DENIED', message: refusal });
    if (method.serverStreaming) {
      // Server-sent events: the request is the `request` query parameter (EventSource sends GETs).
      if (req.method !== 'GET')
        return refuse(res, 405, { code: 'INVALID_ARGUMENT', message: `${path} streams: GET it` });
      const query = new URL(req.url, 'https://console').searchParams.get('request') ?? '{}';
      let body: unknown;
      try {
        body = JSON.parse(query);
      } catch {
        throw new BadRequest('request: not JSON');
      }
      let stream: { cancel(): void } | undefined;
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      const finish = () => {
        clearInterval(heartbeat);
        if (stream !== undefined) streams.delete(stream);
      };
      stream = gateway.stream(method, session.token, body, {
        onMessage: (json) => res.write(`data: ${JSON.stringify(json)}\n\n`),
        onEnd: (error) => {
          finish();
          if (error !== undefined) res.write(`event: failed\ndata: ${JSON.stringify(apiErrorOf(error))}\n\n`);
          else res.write('event: end\ndata: {}\n\n');
          res.end();
        },
      });
      streams.add(stream);
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write(': open\n\n');
      req.on('close', () => {
        finish();
        stream?.cancel();
      });
      return;
    }
    if (req.method !== 'POST') return refuse(res, 405, { code: 'INVALID_ARGUMENT', message: `${path}: POST it` });
    const body = await readBody(req);
    try {
      return send(res, 200, await gateway.unary(method, session.token, body));
    } catch (e) {
      if (e instanceof BadRequest) throw e;
      const error = apiErrorOf(e);
      return refuse(res, httpStatusOf(error.code), error);
    }
  }

  async function handleStatic(req: Request, res: Response, path: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return refuse(res, 405, { code: 'INVALID_ARGUMENT', message: 'GET' });
    // Only file names the build writes: no path ever reaches the file system from the request.
    const asset = /^\/assets\/([A-Za-z0-9_-][A-Za-z0-9._-]*)$/.exec(path)?.[1];
    if (asset === undefined && path.startsWith('/assets/')) {
      return refuse(res, 404, { code: 'NOT_FOUND', message: 'no such asset' });
    }
    const file = asset === undefined ? 'index.html' : join('assets', asset);
    let content: Buffer;
    try {
      content = await readFile(join(options.assetsDir, file));
    } catch {
      if (asset !== undefined) return refuse(res, 404, { code: 'NOT_FOUND', message: `no asset ${asset}` });
      res.writeHead(503, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      res.end('the console is not built: run deploy/dev/setup.sh (node packages/console/src/build.ts)\n');
      return;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'cache-control': asset === undefined ? 'no-cache' : 'public, max-age=3600',
    });
    if (req.method === 'HEAD') res.end();
    else res.end(content);
  }

  const server = http2.createSecureServer({ cert, key, allowHTTP1: true }, (req, res) => {
    const path = new URL(req.url, 'https://console').pathname;
    const handled =
      path === '/api/session'
        ? handleSession(req, res)
        : path.startsWith(HOOKS_PREFIX) && options.hooks !== undefined
          ? handleHook(req, res, path, options.hooks)
          : path.startsWith('/api/')
            ? handleCall(req, res, path.slice('/api'.length))
            : handleStatic(req, res, path);
    handled.catch((e: unknown) => {
      if (e instanceof BadRequest) {
        const field = e.field === undefined ? {} : { field: e.field };
        return refuse(res, 400, { code: 'INVALID_ARGUMENT', message: e.message, ...field });
      }
      log.error({ err: e, path }, 'console request failed');
      if (!res.headersSent) refuse(res, 500, { code: 'INTERNAL', message: 'the console could not answer' });
      else res.end();
    });
  });

  // Closing must not wait for browsers' open streams and idle connections.
  const sockets = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  const [host, port] = splitHostPort(options.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${bound.port}`;
  log.info({ url }, 'console serving');
  return {
    url,
    async close() {
      for (const s of streams) s.cancel();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
      gateway.close();
    },
  };
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function splitHostPort(address: string): [string, string] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), address.slice(colon + 1)];
}
