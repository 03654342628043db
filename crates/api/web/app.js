// Entry point: log-in and registration, the shell, the user stream and the
// conversation list with search. The chat view lives in chat.js and the
// contacts view in contacts.js; both read and change the shared store.

import * as api from './api.js';
import { UserStream } from './stream.js';
import { Store } from './store.js';
import { h, reconcile, highlight, shortTime, announce } from './dom.js';
import { ChatView } from './chat.js';
import { ContactsView } from './contacts.js';

const $ = (id) => document.getElementById(id);
const store = new Store();
let stream = null;
let chat = null;
let contacts = null;
let buffering = null; // events that arrive while a REST reload runs

// Log-in and registration

function showAuth() {
  $('shell').hidden = true;
  $('auth').hidden = false;
  $('login-username').focus();
}

function selectAuthTab(register) {
  $('tab-login').setAttribute('aria-selected', String(!register));
  $('tab-register').setAttribute('aria-selected', String(register));
  $('login-form').hidden = register;
  $('register-form').hidden = !register;
}

function formErrors(form, err) {
  for (const el of form.querySelectorAll('[data-field]')) {
    el.textContent = (err?.fields?.[el.dataset.field] || []).join(' ');
  }
  form.querySelector('[data-error]').textContent = err ? err.message : '';
}

async function submitAuth(form, register) {
  const data = Object.fromEntries(new FormData(form));
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  formErrors(form, null);
  try {
    if (register) {
      const body = { username: data.username, password: data.password };
      if (data.first_name) body.first_name = data.first_name;
      if (data.last_name) body.last_name = data.last_name;
      await api.register(body);
    }
    await api.login(data.username, data.password);
    form.reset();
    await startSession();
  } catch (err) {
    formErrors(form, err);
  } finally {
    button.disabled = false;
  }
}

// The session

async function startSession() {
  store.reset();
  try {
    store.me = await api.me();
  } catch (err) {
    if (err.status === 401) api.logout();
    else setTimeout(startSession, 2000);
    return;
  }
  $('auth').hidden = true;
  $('shell').hidden = false;
  $('me-name').textContent = store.me.name;
  $('me-id').textContent = String(store.me.id);
  chat ||= new ChatView(store, { send: (frame) => stream?.send(frame) ?? false });
  contacts ||= new ContactsView(store, { openConversation: (id) => openConversation(id) });
  stream = new UserStream(api.accessToken);
  stream.addEventListener('state', (e) => showState(e.detail));
  stream.addEventListener('established', (e) => established(e.detail));
  stream.addEventListener('event', (e) => (buffering ? buffering.push(e.detail) : apply(e.detail)));
  stream.addEventListener('unauthorized', () =>
    api.refresh().then(() => stream?.connect(), () => stream?.retry()),
  );
  stream.start();
  showState(stream.state);
  renderConversations();
  routeFromHash();
}

function endSession() {
  stream?.stop();
  stream = null;
  chat?.close();
  store.reset();
  showAuth();
}

function showState(state) {
  // Offline and reconnecting both mean: what you see may be behind.
  const down = state === 'offline' || state === 'reconnecting';
  $('offline').hidden = !down;
  $('offline').textContent =
    state === 'offline' ? 'You are offline. Messages you send wait until the network is back.'
      : 'Connection lost. Reconnecting…';
  document.body.classList.toggle('is-offline', down);
  chat?.streamState(state);
}

/** After (re)connecting: reload through REST unless the server replayed what was missed. */
async function established(info) {
  if (info.reload) {
    buffering = [];
    try {
      await reload();
    } catch {
      // The list stays as it was; the next reconnect reloads again.
    }
    const events = buffering;
    buffering = null;
    events.forEach(apply);
  }
  chat?.resend();
  // What the last connection may have lost to the drop: acks and reads are idempotent.
  ackAll();
  chat?.markRead();
}

/** Acknowledges each conversation's last message from the other user. */
function ackAll() {
  for (const c of store.conversations.values()) {
    const last = c.last_message;
    if (last && last.sender_id !== store.me.id) ack(c.id, last.id);
  }
}

async function reload() {
  const [conversations, connections] = await Promise.all([api.conversations(), api.connections()]);
  for (const c of conversations) store.setConversation(c);
  for (const c of connections) store.setConnection(c);
  await chat?.catchUp();
}

const acks = new Map();
let ackTimer = 0;

/**
 * Acknowledges delivery of the other user's messages up to `messageId`:
 * the highest id per conversation, at most every 100 ms (a throttle, not a
 * debounce, so a steady stream of messages is still acknowledged).
 */
function ack(conversationId, messageId) {
  acks.set(conversationId, Math.max(acks.get(conversationId) || 0, messageId));
  if (ackTimer) return;
  ackTimer = setTimeout(() => {
    ackTimer = 0;
    for (const [conversation_id, message_id] of acks) {
      if (stream?.send({ type: 'ack', conversation_id, message_id })) acks.delete(conversation_id);
    }
  }, 100);
}

/** One event of the user stream. */
function apply(ev) {
  switch (ev.type) {
    case 'chat_message': {
      if (!store.conversations.has(ev.conversation_id)) {
        api.conversation(ev.conversation_id).then((c) => store.setConversation(c), () => {});
      }
      const m = store.receive(ev);
      if (m.sender_id !== store.me.id) {
        store.setTyping(m.conversation_id, '', false);
        ack(m.conversation_id, m.id);
        chat?.incoming(m);
        announce(`New message from ${m.sender_name}: ${m.content}`);
      }
      break;
    }
    case 'messages_read':
      if (ev.user_id !== store.me.id) store.read(ev.conversation_id, ev.message_ids, ev.read_at);
      store.setUnread(ev.conversation_id, ev.unread_count);
      break;
    case 'messages_delivered':
      if (ev.user_id !== store.me.id) {
        store.delivered(ev.conversation_id, ev.up_to_message_id, ev.delivered_at);
      }
      break;
    case 'reaction_changed':
      store.setReactions(ev.conversation_id, ev.message_id, ev.reactions);
      break;
    case 'typing_indicator':
      if (ev.user_id !== store.me.id) store.setTyping(ev.conversation_id, ev.user_name, ev.is_typing);
      break;
    case 'presence':
      store.setPresence(ev.user_id, ev.status, ev.last_seen);
      break;
    case 'connection_request':
    case 'connection_updated':
      store.setConnection(ev.connection);
      break;
    case 'conversation_created':
    case 'conversation_updated':
      store.setConversation(ev.conversation);
      break;
    case 'error':
      chat?.failed(ev.client_id, ev.message);
      break;
    default:
      break;
  }
}

// The conversation list

function preview(conv) {
  const m = conv.last_message;
  if (!m) return 'No messages yet';
  return (m.sender_id === store.me.id ? 'You: ' : '') + m.content;
}

function renderConversation(conv) {
  const presence = store.presenceOf(conv.other_user.id);
  const online = presence.status === 'online';
  const unread = conv.unread_count || 0;
  const current = chat?.conversationId === conv.id;
  const label = [
    conv.other_user.name,
    online ? 'online' : 'offline',
    unread ? `${unread} unread` : '',
  ].filter(Boolean).join(', ');
  return h('li', { class: 'item' },
    h('a', {
      href: `#/c/${conv.id}`,
      class: `conversation${current ? ' current' : ''}${unread ? ' unread' : ''}`,
      'aria-current': current ? 'page' : null,
      'aria-label': label,
      'data-focus': 'open',
    },
    h('span', { class: `dot ${online ? 'online' : ''}`, 'aria-hidden': 'true' }),
    h('span', { class: 'conv-main' },
      h('span', { class: 'conv-top' },
        h('span', { class: 'conv-name', text: conv.other_user.name }),
        h('time', { class: 'sub', datetime: conv.updated_at, text: shortTime(conv.updated_at) })),
      h('span', { class: 'conv-bottom' },
        h('span', { class: 'preview', text: preview(conv) }),
        unread ? h('span', { class: 'badge', text: String(unread) }) : null))));
}

function renderConversations() {
  const list = store.sortedConversations();
  reconcile($('conversations'), list, (c) => c.id, (c) => JSON.stringify([
    c.other_user.name, c.unread_count, c.updated_at, c.last_message?.id, c.last_message?.status,
    store.presenceOf(c.other_user.id).status, chat?.conversationId === c.id,
  ]), renderConversation);
  $('no-conversations').hidden = list.length > 0;
  const total = store.totalUnread();
  $('chats-badge').hidden = total === 0;
  $('chats-badge').textContent = String(total);
  document.title = total ? `(${total}) Chat` : 'Chat';
}

// Search

let searchQuery = '';
let searchCursor = null;

async function runSearch(more) {
  const q = $('search-input').value.trim();
  if (!q) return clearSearch();
  if (!more) {
    searchQuery = q;
    searchCursor = null;
    $('search-list').replaceChildren();
  }
  $('search-results').hidden = false;
  $('search-title').textContent = 'Searching…';
  try {
    const page = await api.search(searchQuery, { before: searchCursor });
    for (const m of page.results) $('search-list').append(renderResult(m));
    searchCursor = page.results.at(-1)?.id ?? searchCursor;
    $('search-more').hidden = !page.has_more;
    const n = $('search-list').children.length;
    $('search-title').textContent = n ? `${n}${page.has_more ? '+' : ''} results for “${searchQuery}”`
      : `No results for “${searchQuery}”`;
  } catch (err) {
    $('search-title').textContent = err.message;
  }
}

function renderResult(m) {
  const conv = store.conversations.get(m.conversation_id);
  const who = m.sender_id === store.me.id ? 'You' : m.sender_name;
  return h('li', { class: 'item' },
    h('a', { href: `#/c/${m.conversation_id}/m/${m.id}`, class: 'result' },
      h('span', { class: 'conv-top' },
        h('span', { class: 'conv-name', text: conv ? conv.other_user.name : who }),
        h('time', { class: 'sub', datetime: m.created_at, text: shortTime(m.created_at) })),
      h('span', { class: 'snippet' }, h('span', { class: 'sub', text: `${who}: ` }),
        highlight(m.highlight))));
}

function clearSearch() {
  $('search-input').value = '';
  $('search-results').hidden = true;
  $('search-list').replaceChildren();
}

// Navigation: #/c/<id> opens a conversation (#/c/<id>/m/<message id> a search hit).

function openConversation(id) {
  location.hash = `#/c/${id}`;
}

function routeFromHash() {
  const match = /^#\/c\/(\d+)(?:\/m\/(\d+))?/.exec(location.hash);
  if (!store.me) return;
  if (match) {
    selectTab(false);
    chat.open(Number(match[1]), match[2] ? Number(match[2]) : null);
    document.body.classList.add('in-chat');
    $('empty').hidden = true;
  } else {
    chat.close();
    document.body.classList.remove('in-chat');
    $('empty').hidden = false;
  }
  renderConversations();
}

function selectTab(contactsTab) {
  $('tab-chats').setAttribute('aria-selected', String(!contactsTab));
  $('tab-contacts').setAttribute('aria-selected', String(contactsTab));
  $('chats-panel').hidden = contactsTab;
  $('contacts-panel').hidden = !contactsTab;
}

// Wiring

store.addEventListener('change', (e) => {
  const { what } = e.detail;
  if (what === 'conversations' || what === 'presence') renderConversations();
  if (what === 'connections') {
    const incoming = store.connectionGroups().incoming.length;
    $('contacts-badge').hidden = incoming === 0;
    $('contacts-badge').textContent = String(incoming);
  }
});

$('tab-login').addEventListener('click', () => selectAuthTab(false));
$('tab-register').addEventListener('click', () => selectAuthTab(true));
$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  submitAuth(e.target, false);
});
$('register-form').addEventListener('submit', (e) => {
  e.preventDefault();
  submitAuth(e.target, true);
});
$('logout').addEventListener('click', () => api.logout());
$('tab-chats').addEventListener('click', () => selectTab(false));
$('tab-contacts').addEventListener('click', () => selectTab(true));
$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  runSearch(false);
});
$('search-more').addEventListener('click', () => runSearch(true));
$('search-clear').addEventListener('click', () => {
  clearSearch();
  $('search-input').focus();
});
$('back').addEventListener('click', () => {
  location.hash = '#/';
  $('conversations').querySelector('.current')?.focus();
});
addEventListener('hashchange', routeFromHash);
api.onAuthChange((inSession) => {
  if (!inSession) endSession();
});

if (api.loggedIn()) startSession();
else showAuth();
