// Kube contexts an environment may name: only those the operator registered, in configuration that
// control (refuses at input) and deploy (refuses at deploy time) both read: STAGELINE_KUBE_CONTEXTS,
// a comma-separated list of context names of the deploy workers' kubeconfig. Unset or empty: none;
// an environment that names no context uses the kubeconfig's current one.

export const KUBE_CONTEXTS_VARIABLE = 'STAGELINE_KUBE_CONTEXTS';

const CONTEXT = /^[^\s\p{Cc},-][^\s\p{Cc},]{0,252}$/u;

/** Parses the registered contexts; throws an Error naming the first bad entry. */
export function parseKubeContexts(value: string): string[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const name of names) {
    if (!CONTEXT.test(name)) {
      throw new Error(`${JSON.stringify(name)} is not a kubeconfig context name (no blanks, not starting with "-")`);
    }
  }
  return [...new Set(names)];
}

/** Why `context` may not be named, or undefined when it may ('' names none: the current context). */
export function checkKubeContext(registered: readonly string[], context: string): string | undefined {
  if (context === '' || registered.includes(context)) return undefined;
  const known = registered.length === 0 ? 'none is registered' : `registered: ${registered.join(', ')}`;
  return `kube context ${JSON.stringify(context)} is not registered by the operator (${KUBE_CONTEXTS_VARIABLE}; ${known})`;
}
