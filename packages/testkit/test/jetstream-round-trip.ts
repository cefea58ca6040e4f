// Shared by the resolution tests: proves a server really does JetStream, not just accept TCP.
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

/** Creates a stream, publishes one message, reads it back through a durable pull consumer, deletes the stream. */
export async function jetStreamRoundTrip(natsUrl: string): Promise<{ received: string; sent: string; seq: number }> {
  const id = randomBytes(6).toString('hex');
  const stream = `RT_${id.toUpperCase()}`;
  const subject = `rt.${id}.ping`;
  const sent = `hello ${id}`;
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`rt.${id}.>`] });
    try {
      const ack = await jetstream(nc).publish(subject, sent);
      await jsm.consumers.add(stream, { durable_name: 'reader', ack_policy: 'explicit' });
      const consumer = await jetstream(nc).consumers.get(stream, 'reader');
      const message = await consumer.next({ expires: 5_000 });
      if (message === null) throw new Error('no message came back');
      message.ack();
      return { received: message.string(), sent, seq: ack.seq };
    } finally {
      await jsm.streams.delete(stream);
    }
  } finally {
    await nc.close();
  }
}

/** Resolves when a connection to `natsUrl` is refused (the server is gone). */
export async function natsUnreachable(natsUrl: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: natsUrl, reconnect: false, timeout: 2_000 });
    await nc.close();
    return false;
  } catch {
    return true;
  }
}
