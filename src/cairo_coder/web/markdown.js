// Markdown to HTML for answers: fenced code (highlighted, with a copy button), headings, lists, quotes, tables,
// paragraphs; inline code, bold, italic, links (http/https only) and [n] citations linked to their source's
// section. Everything is escaped first: an answer cannot inject markup.

import { escapeHtml, highlight, languageOf } from './highlight.js';

const FENCE = /^(\s{0,3})(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$/;

/** Render `text` (possibly incomplete, while it streams) with `sources` ({number,title,url,section}). */
export function renderMarkdown(text, sources = []) {
  const bySource = new Map(sources.map((s) => [s.number, s]));
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const [, , marker, info] = fence;
      const body = [];
      i += 1;
      while (i < lines.length && !(lines[i].trim().startsWith(marker) && lines[i].trim().replace(/[`~]/g, '') === '')) {
        body.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (absent while the answer streams: the block runs to the end)
      out.push(codeBlock(body.join('\n'), info));
      continue;
    }
    if (/^\s*$/.test(line)) {
      i += 1;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      const level = Math.min(6, heading[1].length + 2); // answers' headings sit under the page's own
      out.push(`<h${level}>${inline(heading[2], bySource)}</h${level}>`);
      i += 1;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ''));
      out.push(`<blockquote>${renderMarkdown(quoted.join('\n'), sources)}</blockquote>`);
      continue;
    }
    if (/^\s*\|.*\|\s*$/.test(line) && i + 1 < lines.length && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) {
      const rows = [];
      while (i < lines.length && /^\s*\|.*\|\s*$/.test(lines[i])) rows.push(lines[i++]);
      out.push(table(rows, bySource));
      continue;
    }
    const item = /^(\s*)([-*+]|\d{1,3}[.)])\s+(.*)$/.exec(line);
    if (item) {
      const ordered = /\d/.test(item[2]);
      const items = [];
      while (i < lines.length) {
        const m = /^(\s*)([-*+]|\d{1,3}[.)])\s+(.*)$/.exec(lines[i]);
        if (m && /\d/.test(m[2]) === ordered) {
          items.push(m[3]);
        } else if (items.length && /^\s{2,}\S/.test(lines[i]) && !FENCE.test(lines[i])) {
          items[items.length - 1] += ` ${lines[i].trim()}`;
        } else {
          break;
        }
        i += 1;
      }
      const tag = ordered ? 'ol' : 'ul';
      out.push(`<${tag}>${items.map((t) => `<li>${inline(t, bySource)}</li>`).join('')}</${tag}>`);
      continue;
    }
    const paragraph = [];
    while (
      i < lines.length &&
      !/^\s*$/.test(lines[i]) &&
      !FENCE.test(lines[i]) &&
      !/^(#{1,6})\s/.test(lines[i]) &&
      !/^\s*([-*+]|\d{1,3}[.)])\s+/.test(lines[i]) &&
      !/^\s*>/.test(lines[i])
    ) {
      paragraph.push(lines[i++]);
    }
    out.push(`<p>${inline(paragraph.join('\n'), bySource)}</p>`);
  }
  return out.join('\n');
}

function codeBlock(code, info) {
  const language = languageOf(info);
  const label = escapeHtml(info || 'text');
  return (
    `<div class="code"><div class="code-bar"><span>${label}</span>` +
    `<button type="button" class="copy" aria-label="Copy the ${label} code">Copy</button></div>` +
    `<pre><code class="language-${language || 'text'}">${highlight(code, info)}</code></pre></div>`
  );
}

function table(rows, bySource) {
  const cells = (row) => row.trim().replace(/^\||\|$/g, '').split('|').map((c) => c.trim());
  const [head, , ...body] = rows;
  const th = cells(head).map((c) => `<th>${inline(c, bySource)}</th>`).join('');
  const tr = body.map((r) => `<tr>${cells(r).map((c) => `<td>${inline(c, bySource)}</td>`).join('')}</tr>`).join('');
  return `<div class="table"><table><thead><tr>${th}</tr></thead><tbody>${tr}</tbody></table></div>`;
}

/** Inline Markdown of one block: code spans are kept verbatim, the rest is formatted. */
export function inline(text, bySource) {
  return text
    .split(/(`+[^`]*`+)/)
    .map((part) => (/^`+[^`]*`+$/.test(part) ? `<code>${escapeHtml(part.replace(/^`+|`+$/g, ''))}</code>` : prose(part, bySource)))
    .join('');
}

function prose(text, bySource) {
  let html = escapeHtml(text);
  // Links first (their [text] is not a citation), kept to http(s) targets.
  html = html.replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, (_, label, url) => link(url, label));
  html = html.replace(/(^|[\s(])(https?:\/\/[^\s<)]+)/g, (_, before, url) => before + link(url, url));
  html = html.replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
  html = html.replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, '$1<em>$2</em>');
  html = html.replace(/(^|[\s(])_([^_\s][^_]*)_(?=[\s.,;:!?)]|$)/g, '$1<em>$2</em>');
  // Citations: [1], [2][4], [1, 3], [1-3]; not after a word character (arr[1]) and not a link's text.
  // One pass: the anchors written here are not scanned again.
  html = html.replace(/(?<!\w)\[(\d{1,3}(?:\s*[-–,]\s*\d{1,3})*)\](?!\()/g, (_, list) => citations(list, bySource));
  return html.replace(/\n/g, '<br>');
}

function link(url, label) {
  return `<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;
}

function citations(list, bySource) {
  const numbers = [];
  for (const part of list.split(/\s*,\s*/)) {
    const [low, high] = part.split(/\s*[-–]\s*/).map(Number);
    if (high !== undefined && high >= low && high - low <= 50) for (let n = low; n <= high; n += 1) numbers.push(n);
    else numbers.push(low);
  }
  return numbers
    .map((n) => {
      const source = bySource.get(n);
      if (!source) return `<span class="cite unknown" title="No source has this number">[${n}]</span>`;
      const where = [source.title, ...(source.section || []).slice(1)].filter(Boolean).join(' › ');
      return `<a class="cite" href="${escapeHtml(source.url)}" title="${escapeHtml(where)}" target="_blank" rel="noopener noreferrer">[${n}]</a>`;
    })
    .join('');
}
