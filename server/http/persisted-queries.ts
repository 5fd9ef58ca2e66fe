import { createHash } from 'node:crypto';
import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/**
 * Automatic persisted queries: Apollo's APQ protocol, as `@graphql-yoga/plugin-apq` serves it (same extension, error
 * messages, codes and statuses; that package itself wants @graphql-tools/utils 10 beside the 11 installed here).
 *
 * A client sends `extensions: { persistedQuery: { version: 1, sha256Hash } }` with its variables and no query text.
 * The service runs the document it knows by that hash, or answers 404 PERSISTED_QUERY_NOT_FOUND (nothing ran); the
 * client then sends the text with the hash once, the service checks that the text hashes to it (else 400
 * PERSISTED_QUERY_MISMATCH) and keeps it. The SDK does this by itself (sdk/persisted-queries.ts). Requests then carry
 * less than half the bytes (the SDK's redemption: 467 instead of 1,125), to send, read and parse.
 *
 * Documents are kept per instance, in memory: after a restart, or on another instance, the client's next request is
 * told PERSISTED_QUERY_NOT_FOUND and registers again. Only callers with a valid API key get this far (the API key hook
 * runs first), and the store is bounded in characters as well as in count, oldest unused first out, so registrations
 * cannot grow the heap without limit. A document is not secret: any caller may run one that another registered.
 */
export interface PersistedQueryStore {
  /** The text registered under this hash, or undefined. Marks it as used. */
  get(hash: string): string | undefined;
  /** Keeps `query` under `hash` (checked by the caller), unless the text alone is over the per-document bound. */
  set(hash: string, query: string): void;
  readonly size: number;
  /** Characters of all texts kept. */
  readonly characters: number;
}

export interface PersistedQueryStoreOptions {
  /** Texts kept at most. Default 1000 (what the document cache keeps). */
  max?: number;
  /** Characters of all texts kept at most. Default 4,000,000. */
  maxCharacters?: number;
  /** A longer text is run but not kept (the client keeps sending it). Default 64 KiB. */
  maxDocumentCharacters?: number;
}

export function createPersistedQueryStore(options: PersistedQueryStoreOptions = {}): PersistedQueryStore {
  const max = options.max ?? 1000;
  const maxCharacters = options.maxCharacters ?? 4_000_000;
  const maxDocument = Math.min(options.maxDocumentCharacters ?? 64 * 1024, maxCharacters);
  // In order of use, least recently used first.
  const texts = new Map<string, string>();
  // The most recently used (the Map's last key): using it again moves nothing.
  let newest: string | undefined;
  let characters = 0;
  const drop = (hash: string) => {
    characters -= texts.get(hash)!.length;
    texts.delete(hash);
  };
  return {
    get(hash) {
      const query = texts.get(hash);
      if (query === undefined) return undefined;
      // Marked as used: moved to the end. Not when it is already there (the usual case: one document, request after request).
      if (hash !== newest) {
        texts.delete(hash);
        texts.set(hash, query);
        newest = hash;
      }
      return query;
    },
    set(hash, query) {
      if (query.length > maxDocument) return;
      if (texts.has(hash)) drop(hash);
      while (texts.size > 0 && (texts.size >= max || characters + query.length > maxCharacters)) {
        drop(texts.keys().next().value!);
      }
      texts.set(hash, query);
      newest = hash;
      characters += query.length;
    },
    get size() {
      return texts.size;
    },
    get characters() {
      return characters;
    },
  };
}

/** The hex SHA-256 of a document's text (UTF-8), as APQ clients compute it. */
export const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** The hash of an APQ extension (`{ version: 1, sha256Hash }`), or null when `persistedQuery` is not one. */
export function persistedQueryHash(extensions: unknown): string | null {
  const persisted = (extensions as { persistedQuery?: unknown } | null | undefined)?.persistedQuery as
    | { version?: unknown; sha256Hash?: unknown }
    | null
    | undefined;
  return persisted != null && typeof persisted === 'object' && persisted.version === 1 && typeof persisted.sha256Hash === 'string'
    ? persisted.sha256Hash
    : null;
}

export const persistedQueryNotFound = () =>
  new GraphQLError('PersistedQueryNotFound', {
    extensions: { code: 'PERSISTED_QUERY_NOT_FOUND', http: { status: 404 } },
  });

const persistedQueryMismatch = () =>
  new GraphQLError('PersistedQueryMismatch', {
    extensions: { code: 'PERSISTED_QUERY_MISMATCH', http: { status: 400 } },
  });

/**
 * The protocol on Yoga's transport (and for whatever the lean path hands to Yoga: registrations, unknown hashes).
 * Placed after the API key hook. The lean path looks known hashes up in the same store (graphql-fast-path.ts).
 */
export function usePersistedQueries(store: PersistedQueryStore): Plugin {
  return {
    onParams({ params, setParams }) {
      const hash = persistedQueryHash(params.extensions);
      if (hash === null) return;
      if (params.query == null) {
        const query = store.get(hash);
        if (query === undefined) throw persistedQueryNotFound();
        setParams({ ...params, query });
        return;
      }
      if (sha256Hex(params.query) !== hash) throw persistedQueryMismatch();
      store.set(hash, params.query);
    },
  };
}
