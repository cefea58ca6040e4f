// Dead letters: the original payload and headers, republished on `<prefix>.dlq.<subject>` with why.
import type { JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/transport-node';
import { copyApplicationHeaders, HEADERS, headerValue } from './headers.ts';

export interface DeadLetter {
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs;
  /** Stable per original message, so a dead letter re-sent after a crash is deduplicated. */
  msgId: string;
}

export function deadLetterFor(
  msg: JsMsg,
  reason: string,
  context: { dlqSubject: string; stream: string; consumer: string },
): DeadLetter {
  const h = copyApplicationHeaders(msg.headers);
  h.set(HEADERS.dlqReason, headerValue(reason) || 'rejected');
  h.set(HEADERS.dlqSubject, msg.subject);
  h.set(HEADERS.dlqStream, context.stream);
  h.set(HEADERS.dlqStreamSeq, String(msg.info.streamSequence));
  h.set(HEADERS.dlqDeliveryCount, String(msg.info.deliveryCount));
  h.set(HEADERS.dlqConsumer, context.consumer);
  const originalId = msg.headers?.get(HEADERS.msgId);
  if (originalId) h.set(HEADERS.dlqMsgId, originalId);
  return {
    subject: context.dlqSubject,
    data: msg.data,
    headers: h,
    msgId: `dlq:${context.stream}:${msg.info.streamSequence}`,
  };
}
