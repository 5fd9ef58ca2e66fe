import { describe, expect, it } from 'vitest';
import { createPersistedQueryStore, persistedQueryHash, sha256Hex } from '../server/http/persisted-queries.js';

describe('the persisted query store', () => {
  it('is bounded in count: the least recently used text goes first', () => {
    const store = createPersistedQueryStore({ max: 2 });
    store.set('a', '{ a }');
    store.set('b', '{ b }');
    expect(store.get('a')).toBe('{ a }');
    store.set('c', '{ c }');
    expect([store.get('a'), store.get('b'), store.get('c')]).toEqual(['{ a }', undefined, '{ c }']);
    expect(store.size).toBe(2);
  });

  it('is bounded in characters, and does not keep a text over the per-document bound', () => {
    const store = createPersistedQueryStore({ maxCharacters: 10, maxDocumentCharacters: 6 });
    store.set('long', '{ seven }');
    expect(store.get('long')).toBeUndefined();
    store.set('a', '{ aa }');
    store.set('b', '{ bb }');
    expect([store.get('a'), store.get('b')]).toEqual([undefined, '{ bb }']);
    expect(store.characters).toBe(6);
    // The same hash again replaces its text, counted once.
    store.set('b', '{ b }');
    expect([store.size, store.characters]).toEqual([1, 5]);
  });

  it('reads the APQ extension of version 1 only', () => {
    expect(persistedQueryHash({ persistedQuery: { version: 1, sha256Hash: 'h' } })).toBe('h');
    expect(persistedQueryHash({ persistedQuery: { version: 2, sha256Hash: 'h' } })).toBeNull();
    expect(persistedQueryHash({ persistedQuery: { version: 1, sha256Hash: 1 } })).toBeNull();
    expect(persistedQueryHash({ persistedQuery: null })).toBeNull();
    expect(persistedQueryHash(undefined)).toBeNull();
    expect(sha256Hex('{__typename}')).toBe('ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38');
  });
});
