import { getViewer, type Viewer } from '../server/domain/viewer.js';
import { builder } from './builder.js';

const ViewerRef = builder.objectRef<Viewer>('Viewer').implement({
  description: 'The API key making the request.',
  fields: (t) => ({
    keyId: t.exposeID('keyId', { description: 'The <id> part of rt_<id>_<secret>.' }),
    name: t.exposeString('name'),
    permissions: t.stringList({ resolve: (v) => [...v.permissions] }),
  }),
});

builder.queryField('viewer', (t) =>
  t.field({ type: ViewerRef, resolve: (_root, _args, ctx) => getViewer(ctx) }),
);
