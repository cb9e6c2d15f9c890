// Syntax highlighting for the languages answers use: Cairo (and Rust), TOML, shell. A small tokenizer per
// language; the output is escaped HTML with <span class="tok-…"> around tokens (no library, nothing fetched).

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const CAIRO_KEYWORDS = new Set(
  ('as break const continue else enum extern false fn if impl implicits let loop match mod mut nopanic of pub ref ' +
    'return self Self struct super trait true type use while for in crate macro').split(' '),
);
const CAIRO_TYPES = new Set(
  ('felt252 u8 u16 u32 u64 u128 u256 u512 usize i8 i16 i32 i64 i128 bool ByteArray Array Span Option Result ' +
    'ContractAddress ClassHash Map Vec Felt252Dict Box Nullable String Vec u96 bytes31').split(' '),
);

const RULES = {
  cairo: [
    ['comment', /\/\/[^\n]*/y],
    ['string', /"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/y],
    ['attribute', /#!?\[[^\]\n]*\]/y],
    ['number', /\b(?:0x[0-9a-fA-F_]+|0b[01_]+|\d[\d_]*)(?:_?[ui](?:8|16|32|64|128|256|size)|_felt252)?\b/y],
    ['macro', /\b[a-z_][a-zA-Z0-9_]*!/y],
    ['word', /\b[A-Za-z_][A-Za-z0-9_]*\b/y],
  ],
  toml: [
    ['comment', /#[^\n]*/y],
    ['section', /^\s*\[\[?[^\]\n]+\]\]?/my],
    ['key', /^\s*[A-Za-z0-9_.\-"]+(?=\s*=)/my],
    ['string', /"""[\s\S]*?"""|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'/y],
    ['number', /\b\d[\d_.]*\b/y],
    ['keyword', /\b(?:true|false)\b/y],
  ],
  shell: [
    ['comment', /(^|\s)#[^\n]*/y],
    ['string', /"(?:[^"\\]|\\.)*"|'[^']*'/y],
    ['variable', /\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/y],
    ['flag', /(?<=\s)--?[A-Za-z0-9][\w-]*/y],
    ['command', /(?<=^|[|;&]\s*|\$\s)(?:scarb|snforge|sncast|starkli|katana|sozo|torii|npm|npx|cargo|curl|git|asdf|uv|pip|cairo-coder|cd|export)\b/my],
  ],
};
const ALIASES = { rust: 'cairo', rs: 'cairo', cairo: 'cairo', toml: 'toml', sh: 'shell', bash: 'shell', shell: 'shell', console: 'shell', zsh: 'shell' };

export function languageOf(info) {
  return ALIASES[(info || '').trim().split(/\s+/)[0].toLowerCase()] || null;
}

/** The code as escaped HTML with token spans (plain escaped text for unknown languages). */
export function highlight(code, info) {
  const language = languageOf(info);
  const rules = language && RULES[language];
  if (!rules) return escapeHtml(code);
  let out = '';
  let plain = '';
  let at = 0;
  while (at < code.length) {
    let matched = null;
    for (const [kind, pattern] of rules) {
      pattern.lastIndex = at;
      const m = pattern.exec(code);
      if (m && m[0].length > 0) {
        matched = [kind, m[0]];
        break;
      }
    }
    if (!matched) {
      plain += code[at];
      at += 1;
      continue;
    }
    let [kind, text] = matched;
    if (kind === 'word') {
      kind = CAIRO_KEYWORDS.has(text) ? 'keyword' : CAIRO_TYPES.has(text) ? 'type' : /^[A-Z]/.test(text) ? 'type' : null;
    }
    if (kind === null) {
      plain += text;
    } else {
      out += escapeHtml(plain) + `<span class="tok-${kind}">${escapeHtml(text)}</span>`;
      plain = '';
    }
    at += text.length;
  }
  return out + escapeHtml(plain);
}
