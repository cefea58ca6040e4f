// Small pieces every page uses.
import { ApiError } from './api.ts';

/** A refusal as the server gave it: code, message and the field at fault. */
export function ErrorNote({ error }: { error: unknown }) {
  if (error === undefined) return null;
  const e = error instanceof ApiError ? error : new ApiError({ message: String(error) });
  return (
    <p class="error" role="alert">
      <strong>{e.code}</strong> {e.message}
      {e.field !== undefined && (
        <>
          {' '}
          (field <code>{e.field}</code>)
        </>
      )}
    </p>
  );
}
