// Where `npm run bench:scale` asks for the 1,000th page of a log listing: the ids at a page boundary of a filter,
// read in SQL as the service orders its pages (newest first, id descending, as numbers).
import type pg from 'pg';

/**
 * The id of the filter's `rowsBefore`-th row (newest first), whose cursor asks for the page after it, and the id of
 * the row that page must start with; null when the filter has no row after it. `where` is SQL on the log's columns
 * (unqualified names; `$1` is the tenant's client id).
 *
 * The id is read as text under a name of its own, and the order names the column with its table: PostgreSQL resolves
 * a bare name in ORDER BY to an output column first, so `select id::text … order by id desc` sorts the ids as text
 * ('9748' before '1974189'), which picked a cursor in the oldest month in the 2-million-row run.
 */
export async function pageBoundary(
  db: Pick<pg.ClientBase, 'query'>,
  clientId: string,
  where: string,
  rowsBefore: number,
): Promise<{ cursorId: string; nextId: string } | null> {
  if (!Number.isInteger(rowsBefore) || rowsBefore < 1) throw new Error(`rowsBefore must be a positive integer, not ${rowsBefore}`);
  const { rows } = await db.query<{ row_id: string }>(
    `select l.id::text as row_id from request_token_log l where l.client_id = $1 and (${where})
     order by l.id desc offset ${rowsBefore - 1} limit 2`,
    [clientId],
  );
  return rows.length < 2 ? null : { cursorId: rows[0].row_id, nextId: rows[1].row_id };
}
