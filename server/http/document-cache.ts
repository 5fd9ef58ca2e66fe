import type { DocumentNode, GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/**
 * Parsed and validated documents, kept per app instance: what Yoga's `parserAndValidationCache` does, for a fraction
 * of its cost per request (its LRU asks the clock on every read, and it names every rule; together about 15 µs of a
 * 60-80 µs refusal, docs/hot-path.md). Only the work is cached: every plugin's `onParse` and `onValidate` hooks still run
 * on every request (this plugin comes last, after they added their rules).
 *
 * Parse results (documents and syntax errors) are kept by query text, validation results by document and by the
 * names of the rules in force, as Yoga keys them.
 */
export function useDocumentCache(options: { max?: number } = {}): Plugin {
  const max = options.max ?? 1000;
  const parsed = new Map<string, DocumentNode | Error>();
  const validated = new WeakMap<DocumentNode, Map<string, readonly GraphQLError[]>>();
  const rulesKey = (rules: readonly { name?: string }[] | undefined) => {
    let key = '';
    if (rules) for (const rule of rules) key += `${rule.name ?? ''},`;
    return key;
  };
  const remember = (source: string, result: DocumentNode | Error) => {
    if (parsed.size >= max) parsed.delete(parsed.keys().next().value!);
    parsed.set(source, result);
  };

  return {
    onParse({ params, setParsedDocument }) {
      const source = typeof params.source === 'string' ? params.source : params.source.body;
      const hit = parsed.get(source);
      if (hit instanceof Error) throw hit;
      if (hit) {
        setParsedDocument(hit);
        return;
      }
      return ({ result }) => {
        if (result != null) remember(source, result as DocumentNode | Error);
      };
    },
    onValidate({ params: { documentAST, rules }, setResult }) {
      const key = rulesKey(rules as readonly { name?: string }[] | undefined);
      let byRules = validated.get(documentAST);
      const hit = byRules?.get(key);
      if (hit) {
        setResult(hit);
        return;
      }
      return ({ result }) => {
        if (!byRules) validated.set(documentAST, (byRules = new Map()));
        byRules.set(key, result as readonly GraphQLError[]);
      };
    },
  };
}
