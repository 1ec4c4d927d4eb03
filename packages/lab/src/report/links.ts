/** `[text](#anchor)`: the one link form findings and explanations use, in both reports. */
const LINK = /\[([^\]]+)\]\(#([\w-]+)\)/g;

/** Every anchor `text` links to. */
export function linkTargets(text: string): string[] {
  return [...text.matchAll(LINK)].map((match) => match[2] as string);
}

export const escapeHtml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * Text with its links as HTML; a link whose anchor is not in this report (a scenario that did not
 * run) becomes plain text rather than a dead link.
 */
export function htmlWithLinks(text: string, anchors: ReadonlySet<string>): string {
  let out = '';
  let last = 0;
  for (const match of text.matchAll(LINK)) {
    const [whole, label, anchor] = match as unknown as [string, string, string];
    out += escapeHtml(text.slice(last, match.index));
    out += anchors.has(anchor) ? `<a href="#${anchor}">${escapeHtml(label)}</a>` : escapeHtml(label);
    last = (match.index ?? 0) + whole.length;
  }
  return out + escapeHtml(text.slice(last));
}

/** The same for markdown: links stay links when their anchor exists, plain text otherwise. */
export function markdownWithLinks(text: string, anchors: ReadonlySet<string>): string {
  return text.replace(LINK, (whole, label: string, anchor: string) => (anchors.has(anchor) ? whole : label));
}
