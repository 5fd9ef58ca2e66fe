import { lexicographicSortSchema, printSchema } from 'graphql';
import { builder } from './builder.js';
import './scalars.js';
import './errors.js';
import './request-token.js';
import './request-token-log.js';
import './redemption.js';
import './inspection.js';
import './request-token-bulk.js';
import './usage-stats.js';
import './token-lookup.js';
import './token-revocation.js';
import './log-retention.js';
import './viewer.js';
import './api-client.js';
import './api-key.js';
import './signing-key.js';
import './privacy.js';

export const schema = builder.toSchema();

/** The SDL committed as schema/schema.graphql, sorted so that diffs stay small. */
export const printedSchema = () => `${printSchema(lexicographicSortSchema(schema))}\n`;
