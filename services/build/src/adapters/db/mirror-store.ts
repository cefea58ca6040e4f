// The build schema's record of mirrored images (table mirror_entry).
import { type Database, newId } from '@stageline/db';

export interface MirrorEntry {
  /** `registry/repository:tag` (or `@digest`) as mirrored from. */
  sourceRef: string;
  /** `registry/repository` of the source. */
  sourceRepository: string;
  sourceDigest: string;
  /** `mirror/repository:tag`. */
  destinationRef: string;
  /** Repository path inside the mirror, e.g. `demo/staging/web`. */
  destinationRepository: string;
  digest: string;
}

export interface StoredMirrorEntry extends MirrorEntry {
  id: string;
  createdAt: Date;
}

export class MirrorStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** One statement under the database retry policy: every statement here is safe to run again. */
  #execute<T = Record<string, unknown>[]>(sql: string, params: unknown[] = []): Promise<T> {
    const what = `mirror store: ${sql.trim().split(/\s+/).slice(0, 3).join(' ')}`;
    return this.#db.retry(what, (em) => em.execute(sql, params) as Promise<T>);
  }

  /** Records that the mirror holds `destinationRef` at `digest`; recording it again changes nothing. */
  async record(entry: MirrorEntry): Promise<void> {
    await this.#execute(
      `insert into mirror_entry
           (id, source_ref, source_repository, source_digest, destination_ref, destination_repository, digest)
         values (?, ?, ?, ?, ?, ?, ?)
         on conflict (destination_ref, digest) do nothing`,
      [
        newId(),
        entry.sourceRef,
        entry.sourceRepository,
        entry.sourceDigest,
        entry.destinationRef,
        entry.destinationRepository,
        entry.digest,
      ],
    );
  }

  /**
   * Mirror repositories that earlier mirrors of the same source repository went to, newest first: the
   * places where its blobs (shared base layers included) can be mounted from instead of copied.
   */
  async repositoriesMirroredFrom(sourceRepository: string, limit = 5): Promise<string[]> {
    const rows = await this.#execute<Array<{ destination_repository: string }>>(
      `select destination_repository from mirror_entry
        where source_repository = ?
        group by destination_repository
        order by max(created_at) desc
        limit ?`,
      [sourceRepository, limit],
    );
    return rows.map((r) => r.destination_repository);
  }

  async findByDestination(destinationRef: string): Promise<StoredMirrorEntry[]> {
    const rows = await this.#execute<
      Array<{
        id: string;
        source_ref: string;
        source_repository: string;
        source_digest: string;
        destination_ref: string;
        destination_repository: string;
        digest: string;
        created_at: Date;
      }>
    >(`select * from mirror_entry where destination_ref = ? order by created_at desc`, [destinationRef]);
    return rows.map((r) => ({
      id: r.id,
      sourceRef: r.source_ref,
      sourceRepository: r.source_repository,
      sourceDigest: r.source_digest,
      destinationRef: r.destination_ref,
      destinationRepository: r.destination_repository,
      digest: r.digest,
      createdAt: new Date(r.created_at),
    }));
  }
}
