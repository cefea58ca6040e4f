/** PostgreSQL SQLSTATE for unique_violation. */
export const UNIQUE_VIOLATION = '23505';

interface PgErrorLike {
  code?: unknown;
  constraint?: unknown;
  cause?: unknown;
}

/**
 * True when `e` (or an error in its `cause` chain) is a PostgreSQL unique violation, optionally of the
 * named constraint. Works for raw `pg` errors and MikroORM's `UniqueConstraintViolationException`
 * (which copies `code` and `constraint` from the driver error).
 */
export function isUniqueViolation(e: unknown, constraint?: string): boolean {
  let current: unknown = e;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const err = current as PgErrorLike;
    if (err.code === UNIQUE_VIOLATION) {
      return constraint === undefined || err.constraint === constraint;
    }
    current = err.cause;
  }
  return false;
}
