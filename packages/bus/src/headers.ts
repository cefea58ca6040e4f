// Header names on Stageline messages. `traceparent`/`tracestate` follow W3C trace context.
import { type MsgHdrs, headers as natsHeaders } from '@nats-io/transport-node';

export const HEADERS = {
  msgId: 'Nats-Msg-Id',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  dlqReason: 'Stageline-Dlq-Reason',
  dlqSubject: 'Stageline-Dlq-Subject',
  dlqStream: 'Stageline-Dlq-Stream',
  dlqStreamSeq: 'Stageline-Dlq-Stream-Seq',
  dlqDeliveryCount: 'Stageline-Dlq-Delivery-Count',
  dlqConsumer: 'Stageline-Dlq-Consumer',
  dlqMsgId: 'Stageline-Dlq-Msg-Id',
} as const;

const MAX_HEADER_VALUE = 4096;

/** Header values cannot hold CR/LF; long error texts are cut so one reason cannot bloat a message. */
export function headerValue(text: string): string {
  const flat = text.replace(/[\r\n]+/g, ' ').trim();
  return flat.length > MAX_HEADER_VALUE ? `${flat.slice(0, MAX_HEADER_VALUE - 1)}…` : flat;
}

export function toNatsHeaders(values: Readonly<Record<string, string>>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(values)) h.set(k, headerValue(v));
  return h;
}

/** Copy of `source` without JetStream's own `Nats-*` headers (msg id, expectations), which would misfire on republish. */
export function copyApplicationHeaders(source: MsgHdrs | undefined): MsgHdrs {
  const h = natsHeaders();
  if (source === undefined) return h;
  for (const [k, values] of source) {
    if (k.toLowerCase().startsWith('nats-')) continue;
    for (const v of values) h.append(k, v);
  }
  return h;
}
