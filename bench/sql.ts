// The baseline runs the service's own SQL text and row mapping (imported, so the two cannot drift apart), except for the dashboard
// page, where it does what a hand-written endpoint would: one joined page query and one count. For usage statistics it
// runs the service's statement and answers its rows as they are.
export { LOG_UNOWNED_REFUSAL_SQL, REDEEM_SQL, REFUSE_SQL } from '../server/domain/redeem.js';
export { ISSUE_SQL, tokenFromRow } from '../server/domain/tokens.js';
export { signHs256 } from '../server/domain/jwt.js';
export { runStatsStatement, usageStatsQuery } from '../server/domain/usage-stats.js';

export const LOG_COLUMNS = 'l.id, l.token_id, l.error_code, l.user_id, l.client_ip, l.user_agent, l.status_code, l.timestamp';
export const LOG_PAGE_SQL = `select ${LOG_COLUMNS}, t.scope from request_token_log l
  left join request_token t on t.id = l.token_id where l.token_id = $1 order by l.id desc limit $2`;
export const LOG_COUNT_SQL = 'select count(*)::int as n from request_token_log l where l.token_id = $1';
