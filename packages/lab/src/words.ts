/** "1 overlapping hold", "3 overlapping holds", "1 contender", "32 contenders". */
export function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

/** "8 contenders on 1 key", "32 contenders on 32 keys": a contention level, everywhere it is named. */
export function contentionLevel(contenders: number, keys: number): string {
  return `${plural(contenders, 'contender')} on ${plural(keys, 'key')}`;
}

/** "redis", "5× redis": the servers a backend or a peer ran on. */
export function serversLabel(kind: string, count: number): string {
  return count === 1 ? kind : `${count}× ${kind}`;
}
