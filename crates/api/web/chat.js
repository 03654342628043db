// The chat view: history with scroll-back, the composer with its outbox
// (pending until the echo, retry after a failure), typing, ticks and
// reactions.

import * as api from './api.js';
import { h, reconcile, shortTime, fullTime, randomId, announce } from './dom.js';

const $ = (id) => document.getElementById(id);
const QUICK_REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
const ECHO_TIMEOUT_MS = 10000;
const TYPING_IDLE_MS = 3000;

/** 1.2 MB, 34 kB, 512 B. */
function sizeText(bytes) {
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} kB`;
  return `${bytes} B`;
}

/** The thumbnail's size (at most 320 px on the long side), so the layout does not jump. */
function thumbSize(a) {
  if (!a.width || !a.height) return {};
  const scale = Math.min(1, 320 / Math.max(a.width, a.height));
  return { width: String(Math.round(a.width * scale)), height: String(Math.round(a.height * scale)) };
}

export class ChatView {
  /** `send(frame)` sends on the user stream (false when it is down). */
  constructor(store, { send }) {
    this.store = store;
    this.send = send;
    this.conversationId = null;
    this.picker = null; // message id whose reaction picker is open
    this.loading = false;
    this.state = 'connecting';
    this.typingSentAt = 0;
    this.typingTimer = 0;
    this.typingExpiry = 0;
    this.readTimer = 0;
    this.timers = new Map(); // client_id -> echo timeout
    store.addEventListener('change', (e) => {
      const { what, id } = e.detail;
      if (this.conversationId === null) return;
      if (what === 'messages' && id === this.conversationId) this.renderMessages();
      if (what === 'typing' && id === this.conversationId) this.renderTyping();
      if (what === 'conversations' || what === 'presence') this.renderHead();
    });
    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    $('composer-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    $('composer-input').addEventListener('input', () => this.typing());
    $('attach-input').addEventListener('change', () => this.attach());
    $('older').addEventListener('click', () => this.loadOlder());
    $('history').addEventListener('scroll', () => {
      if ($('history').scrollTop < 40) this.loadOlder();
    });
    document.addEventListener('visibilitychange', () => this.markRead());
  }

  get conversation() {
    return this.store.conversations.get(this.conversationId);
  }

  async open(id, messageId) {
    const changed = this.conversationId !== id;
    this.conversationId = id;
    $('chat').hidden = false;
    if (changed) {
      this.picker = null;
      $('messages').replaceChildren();
      $('composer-input').value = '';
    }
    if (!this.conversation) {
      try {
        this.store.setConversation(await api.conversation(id));
      } catch (err) {
        $('chat-title').textContent = err.status === 404 ? 'No such conversation' : err.message;
        return;
      }
    }
    this.renderHead();
    this.renderTyping();
    const thread = this.store.thread(id);
    if (!thread.loaded) await this.loadLatest();
    else this.renderMessages(true);
    if (changed) $('composer-input').focus();
    if (messageId) await this.reveal(messageId);
    this.markRead();
  }

  close() {
    this.conversationId = null;
    $('chat').hidden = true;
  }

  streamState(state) {
    this.state = state;
    if (this.conversationId !== null) this.renderMessages();
  }

  // History

  async loadLatest() {
    const id = this.conversationId;
    try {
      const page = await api.history(id, { limit: 50 });
      const thread = this.store.thread(id);
      thread.loaded = true;
      thread.hasMore = page.has_more;
      this.store.putMessages(id, page.results, true);
      this.renderMessages(true);
    } catch (err) {
      $('older').hidden = false;
      $('older').textContent = `Could not load messages (${err.message}). Try again`;
    }
  }

  async loadOlder() {
    const id = this.conversationId;
    const thread = this.store.thread(id);
    if (this.loading || !thread.hasMore) return;
    if (!thread.loaded) return this.loadLatest();
    const oldest = this.store.messages(id)[0];
    if (!oldest) return;
    this.loading = true;
    $('older').textContent = 'Loading…';
    const box = $('history');
    const fromBottom = box.scrollHeight - box.scrollTop;
    try {
      const page = await api.history(id, { before: oldest.id, limit: 50 });
      thread.hasMore = page.has_more;
      this.store.putMessages(id, page.results, true);
      box.scrollTop = box.scrollHeight - fromBottom;
    } catch (err) {
      announce(`Could not load older messages: ${err.message}`);
    } finally {
      this.loading = false;
      $('older').textContent = 'Load older messages';
      $('older').hidden = !thread.hasMore;
    }
  }

  /** After a REST reload: what arrived while the stream could not replay it. */
  async catchUp() {
    for (const [id, thread] of this.store.threads) {
      if (!thread.loaded) continue;
      let more = true;
      for (let i = 0; more && i < 20; i++) {
        const last = this.store.messages(id).at(-1);
        const page = last
          ? await api.history(id, { after: last.id, limit: 100 })
          : await api.history(id, { limit: 50 });
        this.store.putMessages(id, page.results, true);
        more = Boolean(last) && page.has_more;
      }
      if (id === this.conversationId) {
        // Statuses and reactions of what is on screen may have moved on.
        const page = await api.history(id, { limit: 50 });
        this.store.putMessages(id, page.results, true);
      }
    }
    this.markRead();
  }

  /** Scrolls to a message (a search hit), loading older pages to find it. */
  async reveal(messageId) {
    const thread = this.store.thread(this.conversationId);
    for (let i = 0; i < 20 && !thread.byId.has(messageId) && thread.hasMore; i++) {
      await this.loadOlder();
    }
    const el = $('messages').querySelector(`[data-key="${messageId}"]`);
    if (el) {
      el.scrollIntoView({ block: 'center' });
      el.classList.add('flash');
      el.querySelector('.bubble')?.focus();
    }
  }

  // Read state

  incoming(m) {
    if (m.conversation_id === this.conversationId) this.markRead();
  }

  markRead() {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => {
      const conv = this.conversation;
      if (!conv || document.hidden || !(conv.unread_count > 0)) return;
      api.markRead(conv.id).catch(() => {});
    }, 150);
  }

  // Sending

  submit() {
    const input = $('composer-input');
    const content = input.value.trim();
    if (!content || !this.conversation?.can_send) return;
    const clientId = randomId();
    this.store.queue(this.conversationId, content, clientId);
    input.value = '';
    this.stopTyping();
    this.transmit(clientId, false);
    this.renderMessages(true);
  }

  /** Uploads the chosen file, then sends it with what the composer holds. */
  async attach() {
    const input = $('attach-input');
    const file = input.files?.[0];
    input.value = '';
    if (!file || !this.conversation?.can_send) return;
    announce(`Uploading ${file.name}…`);
    let attachment;
    try {
      attachment = await api.upload(file);
    } catch (err) {
      announce(`Could not attach ${file.name}: ${err.message}`);
      return;
    }
    const text = $('composer-input');
    const clientId = randomId();
    this.store.queue(this.conversationId, text.value.trim(), clientId, [attachment]);
    text.value = '';
    this.stopTyping();
    this.transmit(clientId, false);
    this.renderMessages(true);
  }

  /** Sends a queued message: on the stream, or over HTTP for a manual retry while it is down. */
  transmit(clientId, manual) {
    const p = this.store.outbox.get(clientId);
    if (!p) return;
    this.store.setPending(clientId, 'pending');
    clearTimeout(this.timers.get(clientId));
    const attachmentIds = (p.attachments || []).map((a) => a.id);
    const frame = {
      type: 'chat_message',
      conversation_id: p.conversation_id,
      content: p.content,
      client_id: clientId,
      attachment_ids: attachmentIds,
    };
    if (this.send(frame)) {
      this.timers.set(clientId, setTimeout(() => {
        if (this.store.outbox.get(clientId)?.state === 'pending' && this.state === 'open') {
          this.failed(clientId, 'No answer from the server.');
        }
      }, ECHO_TIMEOUT_MS));
    } else if (manual) {
      api.sendMessage(p.conversation_id, p.content, clientId, attachmentIds).then(
        (m) => this.store.putMessages(m.conversation_id, [m], true),
        (err) => this.failed(clientId, err.message),
      );
    }
    // Otherwise it waits: `resend` sends it once the stream is back.
  }

  /** The stream is (back) up: sends what waits, with the same client_id. */
  resend() {
    for (const p of this.store.outbox.values()) {
      if (p.state === 'pending') this.transmit(p.client_id, false);
    }
  }

  failed(clientId, message) {
    if (!clientId || !this.store.outbox.has(clientId)) {
      if (message) announce(message);
      return;
    }
    clearTimeout(this.timers.get(clientId));
    this.store.setPending(clientId, 'failed', message || 'Not sent.');
    announce(`Message not sent: ${message}`);
  }

  // Typing

  typing() {
    const id = this.conversationId;
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_IDLE_MS) {
      this.typingSentAt = now;
      this.send({ type: 'typing_indicator', conversation_id: id, is_typing: true });
    }
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingTimer);
    if (this.typingSentAt && this.conversationId !== null) {
      this.send({ type: 'typing_indicator', conversation_id: this.conversationId, is_typing: false });
    }
    this.typingSentAt = 0;
  }

  // Reactions

  async react(m, emoji) {
    const mine = m.reactions.find((r) => r.emoji === emoji)?.user_ids.includes(this.store.me.id);
    this.picker = null;
    try {
      if (mine) await api.removeReaction(m.id, emoji);
      else {
        const updated = await api.addReaction(m.id, emoji);
        this.store.setReactions(m.conversation_id, m.id, updated.reactions);
      }
    } catch (err) {
      announce(`Reaction failed: ${err.message}`);
    }
    this.renderMessages();
  }

  // Rendering

  renderHead() {
    const conv = this.conversation;
    if (!conv) return;
    const presence = this.store.presenceOf(conv.other_user.id);
    const online = presence.status === 'online';
    $('chat-title').textContent = conv.other_user.name;
    $('chat-dot').className = `dot ${online ? 'online' : ''}`;
    $('chat-presence').textContent = online ? 'online'
      : presence.last_seen ? `last seen ${shortTime(presence.last_seen)}` : 'offline';
    $('composer').hidden = !conv.can_send;
    $('cannot-send').hidden = conv.can_send;
  }

  renderTyping() {
    const name = this.store.typist(this.conversationId);
    $('typing').textContent = name ? `${name} is typing…` : '';
    clearTimeout(this.typingExpiry);
    if (name) this.typingExpiry = setTimeout(() => this.renderTyping(), 6100);
  }

  renderMessages(toBottom = false) {
    const id = this.conversationId;
    const box = $('history');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    const items = [...this.store.messages(id), ...this.store.pending(id)];
    reconcile($('messages'), items,
      (m) => (m.client_id && !m.id ? `p:${m.client_id}` : m.id),
      (m) => JSON.stringify([m.id ? m.status : m.state, m.error, m.reactions, this.picker === m.id,
        m.id ? '' : this.state]),
      (m) => (m.id ? this.renderMessage(m) : this.renderPending(m)));
    $('older').hidden = !this.store.thread(id).hasMore;
    if (toBottom || atBottom) box.scrollTop = box.scrollHeight;
  }

  renderPending(p) {
    const failed = p.state === 'failed';
    const waiting = this.state !== 'open';
    return h('li', { class: `msg own ${failed ? 'failed' : 'pending'}` },
      h('div', { class: 'bubble', tabindex: '-1' },
        h('p', { class: 'content', text: p.content }),
        this.renderAttachments(p.attachments),
        h('div', { class: 'meta' },
          failed
            ? [h('span', { class: 'status error', role: 'alert', text: `Not sent: ${p.error}` }),
              h('button', {
                class: 'retry', 'data-focus': 'retry',
                onclick: () => this.transmit(p.client_id, true),
              }, 'Retry')]
            : h('span', { class: 'status', text: waiting ? 'Waiting for the connection…' : 'Sending…' }))));
  }

  /** Images as their thumbnails (a link to the full image), other files as download links. */
  renderAttachments(list) {
    if (!list?.length) return null;
    return h('ul', { class: 'attachments' }, list.map((a) => h('li', {},
      a.thumbnail_url
        ? h('a', { class: 'image', href: api.fileUrl(a.url), target: '_blank', rel: 'noopener' },
          h('img', { src: api.fileUrl(a.thumbnail_url), alt: a.filename, ...thumbSize(a) }))
        : h('a', { class: 'file', href: api.fileUrl(a.url), download: a.filename },
          `${a.filename} (${sizeText(a.size)})`))));
  }

  renderMessage(m) {
    const own = m.sender_id === this.store.me.id;
    const ticks = { sent: ['✓', 'Sent'], delivered: ['✓✓', 'Delivered'], read: ['✓✓', 'Read'] }[m.status]
      || ['✓', 'Sent'];
    const me = this.store.me.id;
    return h('li', { class: `msg ${own ? 'own' : 'theirs'}` },
      h('div', { class: 'bubble', tabindex: '-1' },
        h('span', { class: 'visually-hidden', text: own ? 'You: ' : `${m.sender_name}: ` }),
        h('p', { class: 'content', text: m.content }),
        this.renderAttachments(m.attachments),
        h('div', { class: 'meta' },
          h('time', { datetime: m.created_at, title: fullTime(m.created_at), text: shortTime(m.created_at) }),
          own ? h('span', {
            class: `ticks ${m.status}`, role: 'img', 'aria-label': ticks[1], title: ticks[1],
            text: ticks[0],
          }) : null)),
      h('div', { class: 'reactions' },
        m.reactions.map((r) => h('button', {
          class: 'chip', 'aria-pressed': String(r.user_ids.includes(me)),
          'aria-label': `${r.emoji} ${r.count}${r.user_ids.includes(me) ? ', yours: remove' : ': add'}`,
          'data-focus': `r:${r.emoji}`,
          onclick: () => this.react(m, r.emoji),
        }, `${r.emoji} ${r.count}`)),
        h('button', {
          class: 'chip add', 'aria-label': 'Add a reaction', 'aria-expanded': String(this.picker === m.id),
          'data-focus': 'react',
          onclick: () => {
            this.picker = this.picker === m.id ? null : m.id;
            this.renderMessages();
            if (this.picker === m.id) {
              $('messages').querySelector(`[data-key="${m.id}"] [data-focus="p:0"]`)?.focus();
            }
          },
        }, '☺+'),
        this.picker === m.id ? h('div', { class: 'picker', role: 'group', 'aria-label': 'Reactions' },
          QUICK_REACTIONS.map((e, i) => h('button', {
            class: 'chip', 'aria-label': `React with ${e}`, 'data-focus': `p:${i}`,
            onclick: () => this.react(m, e),
          }, e))) : null));
  }
}
