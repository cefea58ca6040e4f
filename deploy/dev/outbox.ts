// What the outbox relays set aside: rows they could not publish (over the bus's max_payload, a subject
// the bus refuses), moved out of the way with the reason so later events flow on (packages/db README).
//
//   node deploy/dev/outbox.ts list      every set-aside row of every service schema on DATABASE_URL
//                                       (default postgres://postgres@127.0.0.1:5432/stageline), oldest
//                                       first: schema, id, subject, size, attempts, when, why
//
// Exits 0 with "nothing set aside" when the tables are empty (or not created yet).
import pg from 'pg';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/stageline';
const command = process.argv[2] ?? 'list';
if (command !== 'list') {
  console.error('usage: node deploy/dev/outbox.ts list');
  process.exit(2);
}

const client = new pg.Client({ connectionString: url, application_name: 'stageline-outbox' });
await client.connect();
try {
  const tables = await client.query<{ schema: string }>(
    `select table_schema as schema from information_schema.tables where table_name = 'outbox_set_aside' order by 1`,
  );
  let total = 0;
  for (const { schema } of tables.rows) {
    // The schema name comes from the catalog, quoted as an identifier: never from user input.
    const rows = await client.query<{
      id: string;
      subject: string;
      bytes: number;
      attempts: number;
      set_aside_at: Date;
      reason: string;
    }>(
      `select id, subject, octet_length(payload) as bytes, attempts, set_aside_at, reason
         from ${client.escapeIdentifier(schema)}.outbox_set_aside order by set_aside_at, seq`,
    );
    for (const r of rows.rows) {
      total++;
      console.log(
        [
          schema,
          r.id,
          r.subject,
          `${r.bytes} bytes`,
          `${r.attempts} tries`,
          r.set_aside_at.toISOString(),
          r.reason,
        ].join('\t'),
      );
    }
  }
  if (total === 0) console.log('nothing set aside');
} finally {
  await client.end();
}
