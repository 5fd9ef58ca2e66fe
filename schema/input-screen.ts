import { wrapErrorIfMatches } from '@pothos/plugin-errors';
import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from '@pothos/core';
import {
  GraphQLError,
  isInputObjectType,
  isListType,
  isNonNullType,
  isScalarType,
  getNullableType,
  type GraphQLFieldResolver,
  type GraphQLInputType,
} from 'graphql';
import { Issues, ValidationError } from '../server/domain/errors.js';
import { checkJsonValue } from '../server/domain/validation.js';

/** No plain string argument is longer than this; the longest legitimate ones (URLs, JWTs) are far shorter. */
export const MAX_STRING_INPUT = 8 * 1024;
// Control characters (CR and LF included) have no place in scopes, ids, URLs, JWTs or user agents.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/** Checks a string at `path` (followed by `key`, when given: that path is only built for an issue). */
function screenString(issues: Issues, path: string[], value: string, key?: string): void {
  let problem: string | null = null;
  if (value.length > MAX_STRING_INPUT) problem = `must be at most ${MAX_STRING_INPUT} characters long`;
  else if (value.includes('\u0000')) problem = 'must not contain NUL characters';
  else if (CONTROL.test(value)) problem = 'must not contain control characters (such as CR or LF)';
  if (problem) issues.add(key === undefined ? path : [...path, key], problem);
}

function screen(issues: Issues, path: string[], type: GraphQLInputType, value: unknown): void {
  if (value === null || value === undefined) return;
  if (isNonNullType(type)) {
    screen(issues, path, type.ofType, value);
    return;
  }
  if (isListType(type)) {
    if (Array.isArray(value)) value.forEach((item, i) => screen(issues, [...path, String(i)], type.ofType, item));
    else screen(issues, path, type.ofType, value);
    return;
  }
  if (isInputObjectType(type)) {
    const fields = type.getFields();
    // The keys given (coerced input holds only those), and a field's path only made for an issue or a nested value:
    // this runs for every argument of every request.
    for (const name in value as Record<string, unknown>) {
      const field = fields[name];
      const item = (value as Record<string, unknown>)[name];
      if (!field) continue;
      if (typeof item === 'string' && isScalarType(getNullableType(field.type)) && !isJson(field.type)) {
        screenString(issues, path, item, name);
      } else {
        screen(issues, [...path, name], field.type, item);
      }
    }
    return;
  }
  if (isJson(type)) {
    checkJsonValue(issues, path, value);
    return;
  }
  if (typeof value === 'string') screenString(issues, path, value);
}

const isJson = (type: GraphQLInputType) => {
  const nullable = getNullableType(type);
  return isScalarType(nullable) && nullable.name === 'JSON';
};

/**
 * A Pothos plugin that screens every argument of every field before its resolver runs, so that no string reaches a
 * service (or PostgreSQL) with a NUL byte, a control character or an absurd length, whatever field it belongs to
 * (fields added later included). Registered after the errors plugin, so it runs inside it: a field whose result union
 * has ValidationError (through the errors plugin, or built by hand and marked `extensions: { answersValidation: true }`)
 * answers with that member; any other field with a BAD_USER_INPUT error.
 */
export class InputScreenPlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override wrapResolve(
    resolver: GraphQLFieldResolver<unknown, Types['Context'], object>,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types['Context'], object> {
    if (Object.keys(fieldConfig.args).length === 0) return resolver;
    const errors = (fieldConfig.pothosOptions as { errors?: { types?: unknown[] } }).errors;
    const answersValidation =
      (errors?.types?.includes(ValidationError) ?? false) || fieldConfig.extensions?.answersValidation === true;
    return (source, args, context, info) => {
      const issues = new Issues();
      const field = info.parentType.getFields()[info.fieldName];
      for (const arg of field.args) screen(issues, [arg.name], arg.type, (args as Record<string, unknown>)[arg.name]);
      if (issues.list.length > 0) {
        // Handed over as the errors plugin hands over a thrown one (the plugin lets it pass as it is).
        if (answersValidation) return wrapErrorIfMatches(new ValidationError(issues.list), [ValidationError]);
        throw new GraphQLError(new ValidationError(issues.list).message, {
          extensions: { code: 'BAD_USER_INPUT', issues: issues.list },
        });
      }
      return resolver(source, args, context, info);
    };
  }
}

SchemaBuilder.registerPlugin('inputScreen', InputScreenPlugin);

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      inputScreen: InputScreenPlugin<Types>;
    }
  }
}
