/** Runs work for one key at a time, in call order; different keys run concurrently. */
export function keyedSerializer(): <T>(key: string, work: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return <T>(key: string, work: () => Promise<T>): Promise<T> => {
    const previous = tails.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    tails.set(key, tail);
    void tail.then(() => {
      // Forget the key once nothing is queued behind this work.
      if (tails.get(key) === tail) tails.delete(key);
    });
    return next;
  };
}
