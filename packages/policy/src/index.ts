export * from './exposure.ts';
export * from './kube-contexts.ts';
export * from './namespaces.ts';
export * from './sources.ts';
