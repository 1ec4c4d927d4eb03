import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labPackageDir } from '../paths.js';

/**
 * A structural check of a value against the subset of JSON Schema that schema/results.schema.json
 * uses: type, const, enum, properties, required, additionalProperties, items, anyOf, $ref into $defs,
 * minimum, maximum, minLength and format date-time. Returns every problem found ([] when valid).
 * Anything else in a schema is a mistake in the schema, reported as such rather than ignored.
 */
export type JsonSchema = { readonly [keyword: string]: unknown };

const KNOWN_KEYWORDS = new Set([
  '$schema',
  '$id',
  '$defs',
  '$ref',
  'title',
  'description',
  'type',
  'const',
  'enum',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'anyOf',
  'minimum',
  'maximum',
  'minLength',
  'format',
]);

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function matchesType(value: unknown, type: string): boolean {
  const actual = typeOf(value);
  return actual === type || (type === 'number' && actual === 'integer');
}

export function validateAgainstSchema(value: unknown, root: JsonSchema): string[] {
  const problems: string[] = [];
  const check = (node: unknown, schema: JsonSchema, path: string): void => {
    for (const keyword of Object.keys(schema)) {
      if (!KNOWN_KEYWORDS.has(keyword)) problems.push(`${path}: schema keyword "${keyword}" is not supported`);
    }
    if (typeof schema.$ref === 'string') {
      const name = /^#\/\$defs\/(.+)$/.exec(schema.$ref)?.[1];
      const target = name ? (root.$defs as Record<string, JsonSchema> | undefined)?.[name] : undefined;
      if (!target) problems.push(`${path}: unresolvable $ref ${schema.$ref}`);
      else check(node, target, path);
    }
    if (Array.isArray(schema.anyOf)) {
      const branches = schema.anyOf as JsonSchema[];
      const matched = branches.some((branch) => {
        const before = problems.length;
        check(node, branch, path);
        const failed = problems.length > before;
        problems.length = before;
        return !failed;
      });
      if (!matched) problems.push(`${path}: matches none of the allowed shapes`);
    }
    if (schema.type !== undefined) {
      const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
      if (!types.some((type) => matchesType(node, type))) {
        problems.push(`${path}: expected ${types.join(' or ')}, got ${typeOf(node)}`);
        return;
      }
    }
    if ('const' in schema && node !== schema.const) {
      problems.push(`${path}: expected ${JSON.stringify(schema.const)}, got ${JSON.stringify(node)}`);
    }
    if (Array.isArray(schema.enum) && !schema.enum.includes(node)) {
      problems.push(`${path}: ${JSON.stringify(node)} is not one of ${JSON.stringify(schema.enum)}`);
    }
    if (typeof node === 'number') {
      if (typeof schema.minimum === 'number' && node < schema.minimum) problems.push(`${path}: ${node} < ${schema.minimum}`);
      if (typeof schema.maximum === 'number' && node > schema.maximum) problems.push(`${path}: ${node} > ${schema.maximum}`);
    }
    if (typeof node === 'string') {
      if (typeof schema.minLength === 'number' && node.length < schema.minLength) problems.push(`${path}: shorter than ${schema.minLength}`);
      if (schema.format === 'date-time' && Number.isNaN(Date.parse(node))) problems.push(`${path}: not a date-time`);
    }
    if (Array.isArray(node) && schema.items) {
      node.forEach((item, index) => check(item, schema.items as JsonSchema, `${path}[${index}]`));
    }
    if (typeOf(node) === 'object') {
      const record = node as Record<string, unknown>;
      const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
      for (const name of (schema.required ?? []) as string[]) {
        if (!(name in record)) problems.push(`${path}: missing "${name}"`);
      }
      for (const [name, child] of Object.entries(record)) {
        const propertySchema = properties[name];
        if (propertySchema) check(child, propertySchema, `${path}.${name}`);
        else if (schema.additionalProperties === false) problems.push(`${path}: unexpected "${name}"`);
        else if (typeof schema.additionalProperties === 'object' && schema.additionalProperties !== null) {
          check(child, schema.additionalProperties as JsonSchema, `${path}.${name}`);
        }
      }
    }
  };
  check(value, root, '$');
  return problems;
}

export function loadResultsSchema(): JsonSchema {
  return JSON.parse(readFileSync(join(labPackageDir, 'schema', 'results.schema.json'), 'utf8')) as JsonSchema;
}
