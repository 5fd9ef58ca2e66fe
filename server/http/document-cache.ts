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
export function useDocumentCache(options: { max?: number } = {}): Plugin & { validDocument(source: string): DocumentNode | null } {
  const max = options.max ?? 1000;
  const parsed = new Map<string, DocumentNode | Error>();
  const validated = new WeakMap<DocumentNode, Map<string, readonly GraphQLError[]>>();
  // The rules array is new on every request, and the rules plugins add are new closures on every request too; the
  // specified rules are the same functions every time. So the last list is kept: a rule that is the same function, or
  // has the same name, as the one at its place in it leaves the key as it was (no name getter for the ~30 stable
  // rules, no string built), and only a list that differs builds its key again.
  type Rule = { name?: string };
  let lastRules: readonly Rule[] = [];
  let lastNames: string[] = [];
  let lastKey = '';
  const rulesKey = (rules: readonly Rule[] | undefined) => {
    if (!rules) return '';
    if (rules.length === lastRules.length) {
      let same = true;
      for (let i = 0; i < rules.length; i++) {
        if (rules[i] !== lastRules[i] && (rules[i].name ?? '') !== lastNames[i]) {
          same = false;
          break;
        }
      }
      if (same) {
        lastRules = rules;
        return lastKey;
      }
    }
    const names = rules.map((rule) => rule.name ?? '');
    lastRules = rules;
    lastNames = names;
    lastKey = names.join(',');
    return lastKey;
  };
  const remember = (source: string, result: DocumentNode | Error) => {
    if (parsed.size >= max) parsed.delete(parsed.keys().next().value!);
    parsed.set(source, result);
  };

  return {
    /**
     * The document of this query text if it was parsed and passed validation under the rules of the latest request
     * (every plugin's, as Yoga ran them), else null: what a request for it would find at once.
     */
    validDocument(source) {
      const document = parsed.get(source);
      if (!document || document instanceof Error) return null;
      return validated.get(document)?.get(lastKey)?.length === 0 ? document : null;
    },
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
