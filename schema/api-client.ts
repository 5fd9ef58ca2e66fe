import { ValidationError } from '../server/domain/errors.js';
import { createClient, listClients, type ClientRecord } from '../server/domain/clients.js';
import { builder } from './builder.js';
import { DateTime } from './scalars.js';

export const ApiClientRef = builder.objectRef<ClientRecord>('ApiClient').implement({
  description: 'A tenant: an application that owns its tokens and holds API keys. Client 1, "default", exists from the start.',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    createdAt: t.expose('createdAt', { type: DateTime }),
  }),
});

const CreateApiClientInput = builder.inputType('CreateApiClientInput', {
  fields: (t) => ({ name: t.string({ required: true, description: 'Unique, 1–100 characters.' }) }),
});

const CreateApiClientSuccess = builder.objectRef<{ client: ClientRecord }>('CreateApiClientSuccess').implement({
  fields: (t) => ({ client: t.field({ type: ApiClientRef, resolve: (r) => r.client }) }),
});

builder.queryField('apiClients', (t) =>
  t.field({
    type: [ApiClientRef],
    description: 'Admin keys only.',
    resolve: (_root, _args, ctx) => listClients(ctx),
  }),
);

builder.mutationField('createApiClient', (t) =>
  t.field({
    type: CreateApiClientSuccess,
    description: 'Admin keys only.',
    errors: { types: [ValidationError], union: { name: 'CreateApiClientResult' } },
    args: { input: t.arg({ type: CreateApiClientInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({ client: await createClient(ctx, input) }),
  }),
);
