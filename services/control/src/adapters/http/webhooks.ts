// Webhook deliveries on control's HTTPS listener (the console's): `POST /hooks/<environment_id>`.
// They share its port and certificate because a git host must reach control from outside, and one
// public HTTPS port is what an operator exposes; they share nothing else (no session, no CSRF: the
// delivery's signature is its credential, checked by the app against the environment's secret).
import type http2 from 'node:http2';
import type { HookAnswer } from '../../app/auto-deploy-app.ts';
import { MAX_WEBHOOK_BODY } from '../../domain/auto-deploy.ts';

export const HOOKS_PREFIX = '/hooks/';

export type DeliveryHandler = (
  environmentId: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  body: Buffer,
) => Promise<HookAnswer>;

type Request = http2.Http2ServerRequest;
type Response = http2.Http2ServerResponse;

function answer(res: Response, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Reads the body up to the limit; undefined (and 413 answered) past it. */
async function readLimited(req: Request, res: Response): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > MAX_WEBHOOK_BODY) {
    answer(res, 413, { error: `the body is over ${MAX_WEBHOOK_BODY} bytes` });
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_WEBHOOK_BODY) {
      answer(res, 413, { error: `the body is over ${MAX_WEBHOOK_BODY} bytes` });
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function handleHook(req: Request, res: Response, path: string, deliver: DeliveryHandler): Promise<void> {
  if (req.method !== 'POST') return answer(res, 405, { error: 'POST a delivery' });
  const environmentId = path.slice(HOOKS_PREFIX.length);
  const body = await readLimited(req, res);
  if (body === undefined) return;
  const result = await deliver(environmentId, req.headers, body);
  return answer(res, result.status, result.body);
}
