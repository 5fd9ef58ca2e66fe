import SchemaBuilder from '@pothos/core';
import ComplexityPlugin from '@pothos/plugin-complexity';
import DataloaderPlugin from '@pothos/plugin-dataloader';
import ErrorsPlugin from '@pothos/plugin-errors';
import './input-screen.js';
import type { Context } from '../server/context.js';

/** The schema builder and its plugins; the types live one file each beside it. */
export const builder = new SchemaBuilder<{
  Context: Context;
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
    ID: { Input: string; Output: string };
  };
}>({
  // Order matters: input screening runs inside the errors plugin, so its ValidationError becomes a union member.
  // Dataloader: nested fields (a log's token, a token's logs) load in one batch per level of the query, not per row.
  plugins: [ErrorsPlugin, 'inputScreen', ComplexityPlugin, DataloaderPlugin],
  defaultFieldNullability: false,
  errors: { directResult: true },
  // Fields declare their cost (pages: their size); the edge enforces the limit before execution, with the request's
  // variables (server/http/query-cost.ts), so resolvers are not wrapped.
  complexity: { disabled: true },
});

builder.queryType({});
builder.mutationType({});
