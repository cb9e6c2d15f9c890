// The chat page: conversations (kept in localStorage), answers streamed from the OpenAI-compatible route (SSE)
// with their sources and [n] citations, documentation search when the server has no model, errors in words.

import { renderMarkdown } from './markdown.js';

const STORE_KEY = 'cairo-coder.conversations';
const KEY_KEY = 'cairo-coder.api-key';
const NOTICE_KEY = 'cairo-coder.no-model-notice';
const STAGES = {
  query_processing: 'Understanding the question…',
  retrieval: 'Searching the documentation…',
  generation: 'Writing the answer…',
};

const $ = (id) => document.getElementById(id);
const state = {
  conversations: load(),
  current: null,
  agents: [],
  defaultAgent: 'cairo-coder',
  llm: true,
  controller: null,
};
// Figures the browser test reads: when the first answer text arrived and when it was on screen.
window.cairoCoderMetrics = { firstChunkAt: null, firstTextShownAt: null };

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || '[]');
    return Array.isArray(saved) ? saved : [];
  } catch {
    return [];
  }
}

function save() {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(state.conversations.slice(0, 50)));
  } catch {
    setStatus('This browser refused to save the conversation (storage full or disabled).', 'warning');
  }
}

function headers(extra = {}) {
  const key = localStorage.getItem(KEY_KEY);
  return { ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra };
}

async function errorOf(response) {
  let detail = {};
  try {
    detail = (await response.json()).error || {};
  } catch {
    // not the envelope
  }
  const retry = response.headers.get('retry-after');
  return { status: response.status, code: detail.code || '', message: detail.message || response.statusText, retry };
}

/** A server error in words, with what to do about it. */
export function describeError(error) {
  const wait = error.retry ? ` Try again in ${error.retry} s.` : ' Try again in a moment.';
  if (error.network) return 'Lost the connection to the server. Check that `cairo-coder serve` is running, then retry.';
  if (error.status === 401) return 'The server needs a valid API key: set it with the “API key” button.';
  if (error.status === 429) return `The server is busy (${error.message}).${wait}`;
  if (error.code === 'llm_not_configured')
    return 'The server has no language model configured: only documentation search works (start it with CAIRO_CODER_MODEL).';
  if (error.code === 'llm_circuit_open' || (error.code || '').startsWith('llm_'))
    return `The language model is unavailable (${error.message}).${wait} Documentation search still works.`;
  if (error.status === 503) return `The server is unavailable (${error.message}).${wait}`;
  if (error.status === 422 || error.status === 400) return `The question was refused: ${error.message}`;
  return `Something went wrong (${error.status || 'error'}: ${error.message}).`;
}

function setStatus(text, kind = 'info') {
  const status = $('status');
  status.textContent = text;
  status.dataset.kind = kind;
}

function newConversation() {
  const conversation = {
    id: `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`,
    title: 'New conversation',
    agent: $('agent').value || state.defaultAgent,
    messages: [],
    updated: Date.now(),
  };
  state.conversations.unshift(conversation);
  state.current = conversation;
  save();
  render();
  $('question').focus();
}

function select(id) {
  state.current = state.conversations.find((c) => c.id === id) || null;
  if (state.current) $('agent').value = state.current.agent;
  render();
}

function render() {
  const list = $('conversations');
  list.replaceChildren(
    ...state.conversations.map((c) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = c.title;
      button.className = c === state.current ? 'current' : '';
      if (c === state.current) button.setAttribute('aria-current', 'true');
      button.addEventListener('click', () => select(c.id));
      li.append(button);
      return li;
    }),
  );
  const messages = $('messages');
  messages.replaceChildren(...(state.current ? state.current.messages.map(messageView) : [emptyView()]));
  messages.scrollTop = messages.scrollHeight;
}

function emptyView() {
  const div = document.createElement('div');
  div.className = 'empty';
  div.innerHTML = state.llm
    ? '<p>Ask a question about Cairo, Starknet contracts, Scarb, Starknet Foundry, OpenZeppelin, Dojo or Starknet.js. Answers cite the documentation: each <span class="cite">[n]</span> links to its section.</p>'
    : '<p>Search the Cairo and Starknet documentation: results list the matching sections with links.</p>';
  return div;
}

function messageView(message) {
  const article = document.createElement('article');
  article.className = `message ${message.role}`;
  article.setAttribute('aria-label', message.role === 'user' ? 'Question asked' : 'Answer');
  if (message.role === 'user') {
    const p = document.createElement('p');
    p.textContent = message.content;
    article.append(p);
    return article;
  }
  fillAnswer(article, message);
  return article;
}

function fillAnswer(article, message) {
  const body = document.createElement('div');
  body.className = 'answer';
  if (message.search) {
    body.append(searchResults(message.sources || []));
  } else {
    body.innerHTML = renderMarkdown(message.content || '', message.sources || []);
  }
  const parts = [body];
  if (message.stopped) parts.push(note('Stopped.', 'info'));
  if (message.error) parts.push(note(message.error, 'error'));
  if (!message.search && message.sources && message.sources.length) parts.push(sourcesList(message.sources));
  article.replaceChildren(...parts);
}

function note(text, kind) {
  const p = document.createElement('p');
  p.className = `note ${kind}`;
  p.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  p.textContent = text;
  return p;
}

function sourceLink(source) {
  const a = document.createElement('a');
  a.href = source.url;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  a.textContent = source.title || source.url;
  return a;
}

function sourcesList(sources) {
  const details = document.createElement('details');
  details.className = 'sources';
  details.open = true;
  const summary = document.createElement('summary');
  summary.textContent = `Sources (${sources.length})`;
  const ol = document.createElement('ol');
  for (const source of sources) {
    const li = document.createElement('li');
    li.value = source.number;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = ` — ${source.source}${source.version ? ` @ ${source.version.slice(0, 7)}` : ''}`;
    li.append(sourceLink(source), meta);
    ol.append(li);
  }
  details.append(summary, ol);
  return details;
}

function searchResults(sources) {
  const wrap = document.createElement('div');
  wrap.className = 'search-results';
  const heading = document.createElement('p');
  heading.textContent = sources.length ? `Documentation matching your search (${sources.length}):` : 'Nothing matched.';
  const ol = document.createElement('ol');
  for (const source of sources) {
    const li = document.createElement('li');
    const trail = (source.section || []).slice(1).join(' › ');
    const where = document.createElement('div');
    where.className = 'meta';
    where.textContent = `${trail ? `${trail} — ` : ''}${source.source}${source.version ? ` @ ${source.version.slice(0, 7)}` : ''}`;
    li.append(sourceLink(source), where);
    ol.append(li);
  }
  wrap.append(heading, ol);
  return wrap;
}

/** Server-Sent Events of a fetch response: yields {event, data} until the stream ends. */
async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}

async function ask(question) {
  if (!state.current) newConversation();
  const conversation = state.current;
  if (conversation.messages.length === 0) conversation.title = question.slice(0, 60);
  conversation.agent = $('agent').value || conversation.agent;
  const history = conversation.messages
    .filter((m) => !m.error && !m.search && m.content)
    .map((m) => ({ role: m.role, content: m.content }));
  conversation.messages.push({ role: 'user', content: question });
  const answer = { role: 'assistant', content: '', sources: [], search: !state.llm };
  conversation.messages.push(answer);
  conversation.updated = Date.now();
  save();
  render();
  const article = $('messages').lastElementChild;
  const controller = new AbortController();
  state.controller = controller;
  busy(true);
  setStatus(state.llm ? STAGES.query_processing : STAGES.retrieval);
  let finished = false;
  let painted = false;
  try {
    const response = await fetch(`/v1/agents/${encodeURIComponent(conversation.agent)}/chat/completions`, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/json', ...(state.llm ? {} : { 'x-mcp-mode': 'true' }) }),
      body: JSON.stringify({ model: conversation.agent, stream: true, messages: [...history, { role: 'user', content: question }] }),
      signal: controller.signal,
    });
    if (!response.ok) {
      const error = await errorOf(response);
      if (error.status === 401) askForKey();
      answer.error = describeError(error);
      return;
    }
    for await (const { event, data } of sse(response)) {
      if (data === '[DONE]') {
        finished = true;
        break;
      }
      const payload = JSON.parse(data);
      if (event === 'error') {
        const failure = payload.error || {};
        const status = { service_unavailable: 503, rate_limit_error: 429, server_error: 502 }[failure.type] || 0;
        answer.error = describeError({ status, code: failure.code || failure.type, message: failure.message || 'error' });
        finished = true;
        break;
      }
      const extension = payload.cairo_coder;
      if (extension?.type === 'processing') setStatus(STAGES[extension.data.stage] || extension.data.message || 'Working…');
      if (extension?.type === 'sources') {
        answer.sources = extension.data;
        if (!state.llm) fillAnswer(article, answer);
      }
      const text = payload.choices?.[0]?.delta?.content;
      if (text) {
        if (window.cairoCoderMetrics.firstChunkAt === null) window.cairoCoderMetrics.firstChunkAt = performance.now();
        answer.content += text;
        if (!answer.search) {
          if (answer.content === text) setStatus(STAGES.generation);
          fillAnswer(article, answer);
          if (!painted) {
            painted = true;
            requestAnimationFrame(() => {
              window.cairoCoderMetrics.firstTextShownAt ??= performance.now();
            });
          }
        }
      }
    }
    if (!finished) answer.error = 'The connection was lost before the answer finished. Retry the question.';
  } catch (error) {
    if (controller.signal.aborted) answer.stopped = true;
    else answer.error = describeError({ network: true });
  } finally {
    state.controller = null;
    busy(false);
    setStatus('');
    conversation.updated = Date.now();
    save();
    fillAnswer(article, answer);
    render();
  }
}

function busy(on) {
  $('send').hidden = on;
  $('stop').hidden = !on;
  $('question').setAttribute('aria-busy', String(on));
}

function askForKey() {
  $('api-key-button').hidden = false;
  const dialog = $('key-dialog');
  if (!dialog.open) dialog.showModal();
}

async function loadServer() {
  try {
    const ready = await fetch('/ready', { headers: headers() });
    const body = await ready.json();
    state.llm = body.llm_configured !== false;
  } catch {
    setStatus(describeError({ network: true }), 'error');
  }
  if (!state.llm && !localStorage.getItem(NOTICE_KEY)) {
    const banner = $('banner');
    banner.hidden = false;
    banner.textContent =
      'This server has no language model configured, so questions are answered with documentation search results. Start it with CAIRO_CODER_MODEL (and a key) for written answers.';
    localStorage.setItem(NOTICE_KEY, '1');
  }
  const response = await fetch('/v1/agents', { headers: headers() }).catch(() => null);
  if (response && response.status === 401) {
    askForKey();
  } else if (response && response.ok) {
    const { data } = await response.json();
    state.agents = data;
    state.defaultAgent = (data.find((a) => a.default) || data[0] || { id: 'cairo-coder' }).id;
  }
  const picker = $('agent');
  const agents = state.agents.length ? state.agents : [{ id: state.defaultAgent, name: state.defaultAgent }];
  picker.replaceChildren(
    ...agents.map((a) => {
      const option = document.createElement('option');
      option.value = a.id;
      option.textContent = a.name || a.id;
      option.title = a.description || '';
      return option;
    }),
  );
  picker.value = state.current?.agent || state.defaultAgent;
}

function wire() {
  $('ask').addEventListener('submit', (event) => {
    event.preventDefault();
    const question = $('question').value.trim();
    if (!question || state.controller) return;
    $('question').value = '';
    ask(question);
  });
  $('question').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $('ask').requestSubmit();
    }
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.controller) state.controller.abort();
  });
  $('stop').addEventListener('click', () => state.controller?.abort());
  $('new-conversation').addEventListener('click', newConversation);
  $('agent').addEventListener('change', () => {
    if (state.current && state.current.messages.length === 0) state.current.agent = $('agent').value;
  });
  $('toggle-sidebar').addEventListener('click', () => {
    const open = document.body.classList.toggle('sidebar-open');
    $('toggle-sidebar').setAttribute('aria-expanded', String(open));
  });
  $('api-key-button').addEventListener('click', askForKey);
  $('key-cancel').addEventListener('click', () => $('key-dialog').close());
  $('key-form').addEventListener('submit', () => {
    const key = $('key-input').value.trim();
    if (key) localStorage.setItem(KEY_KEY, key);
    $('key-input').value = '';
    loadServer();
  });
  $('messages').addEventListener('click', async (event) => {
    const button = event.target.closest('button.copy');
    if (!button) return;
    const code = button.closest('.code').querySelector('code').textContent;
    try {
      await navigator.clipboard.writeText(code);
      button.textContent = 'Copied';
    } catch {
      button.textContent = 'Copy failed';
    }
    setTimeout(() => (button.textContent = 'Copy'), 1500);
  });
  window.addEventListener('offline', () => setStatus('You are offline: answers will resume when the connection is back.', 'warning'));
  window.addEventListener('online', () => setStatus(''));
}

wire();
state.current = state.conversations[0] || null;
render();
loadServer().then(render);
