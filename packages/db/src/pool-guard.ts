// A connection lost in the middle of a transaction must not be lost to the pool as well. Kysely (under
// MikroORM 7) releases a transaction's connection only after its COMMIT or ROLLBACK succeeds; on a
// connection the server dropped, the ROLLBACK fails, and the pg client stays checked out forever: every
// PostgreSQL restart took one slot of the pool until the service hung. The guard hands such a client
// back (as broken, so the pool discards it) once its connection has ended, and makes a later release of
// it by its holder a no-op.
import type { Pool, PoolClient } from 'pg';

interface PoolInternals {
  _releaseOnce(client: PoolClient, idleListener: unknown): (err?: Error | boolean) => void;
}

const checkedOut = new WeakMap<PoolClient, (err?: Error | boolean) => void>();

export function guardPool(pool: Pool): void {
  const internals = pool as unknown as PoolInternals;
  const releaseOnce = internals._releaseOnce.bind(pool);
  // pg-pool 3.x builds each checkout's release function here (a private method; pinned in package.json).
  internals._releaseOnce = (client, idleListener) => {
    const release = releaseOnce(client, idleListener);
    let done = false;
    const once = (err?: Error | boolean) => {
      if (done) return;
      done = true;
      checkedOut.delete(client);
      release(err);
    };
    checkedOut.set(client, once);
    return once;
  };
  pool.on('connect', (client) => {
    client.once('end', () => {
      // After the holder has seen its query fail: if it has not given the client back by then, it never will.
      setTimeout(() => checkedOut.get(client)?.(new Error('PostgreSQL connection ended')), 1_000).unref();
    });
  });
}
