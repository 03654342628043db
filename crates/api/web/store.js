// The client's state: conversations, messages, connections, presence,
// typing and the outbox of sends not yet echoed. Messages are keyed by id
// (and pending sends by client_id), so whatever arrives twice — a replay
// after a reconnect, an echo of a retried send, a REST reload — shows once.

const time = (iso) => (iso ? Date.parse(iso) : 0);

/** A `chat_message` event as a message object. */
export function fromEvent(ev) {
  return {
    id: ev.message_id,
    conversation_id: ev.conversation_id,
    sender_id: ev.sender_id,
    sender_name: ev.sender_name,
    sender_avatar: ev.sender_avatar,
    content: ev.content,
    created_at: ev.created_at,
    client_id: ev.client_id ?? null,
    status: 'sent',
    is_read: false,
    read_at: null,
    delivered_at: null,
    reactions: [],
    attachments: ev.attachments || [],
  };
}

export class Store extends EventTarget {
  constructor() {
    super();
    this.reset();
  }

  reset() {
    this.me = null;
    this.conversations = new Map();
    this.threads = new Map(); // conversation id -> { byId, hasMore, loaded }
    this.outbox = new Map(); // client_id -> pending send
    this.connections = new Map();
    this.typing = new Map(); // conversation id -> { name, until }
    this.presence = new Map(); // user id -> { status, last_seen }
  }

  changed(what, id) {
    this.dispatchEvent(new CustomEvent('change', { detail: { what, id } }));
  }

  // Conversations

  setConversation(conv) {
    const old = this.conversations.get(conv.id);
    this.conversations.set(conv.id, { ...old, ...conv });
    if (conv.other_user_presence) {
      this.presence.set(conv.other_user.id, conv.other_user_presence);
    }
    this.changed('conversations');
  }

  /** Most recently active first. */
  sortedConversations() {
    return [...this.conversations.values()].sort(
      (a, b) => time(b.updated_at) - time(a.updated_at) || b.id - a.id,
    );
  }

  totalUnread() {
    let n = 0;
    for (const c of this.conversations.values()) n += c.unread_count || 0;
    return n;
  }

  setUnread(conversationId, count) {
    const conv = this.conversations.get(conversationId);
    if (conv && typeof count === 'number' && conv.unread_count !== count) {
      conv.unread_count = count;
      this.changed('conversations');
    }
  }

  presenceOf(userId) {
    return this.presence.get(userId) || { status: 'offline', last_seen: null };
  }

  setPresence(userId, status, lastSeen) {
    this.presence.set(userId, { status, last_seen: lastSeen });
    this.changed('presence', userId);
    this.changed('conversations');
  }

  // Messages

  thread(conversationId) {
    let t = this.threads.get(conversationId);
    if (!t) {
      t = { byId: new Map(), hasMore: true, loaded: false };
      this.threads.set(conversationId, t);
    }
    return t;
  }

  /**
   * Adds or updates messages. REST objects (`authoritative`) replace what
   * is held; an event never downgrades a status a REST read already gave.
   */
  putMessages(conversationId, messages, authoritative) {
    const t = this.thread(conversationId);
    for (const m of messages) {
      const old = t.byId.get(m.id);
      if (!old) t.byId.set(m.id, m);
      else if (authoritative) t.byId.set(m.id, { ...old, ...m });
      if (m.client_id && m.sender_id === this.me?.id) this.outbox.delete(m.client_id);
    }
    this.changed('messages', conversationId);
  }

  /** A conversation's messages, oldest first. */
  messages(conversationId) {
    const t = this.threads.get(conversationId);
    return t ? [...t.byId.values()].sort((a, b) => a.id - b.id) : [];
  }

  /** Sends not yet stored, oldest first. */
  pending(conversationId) {
    return [...this.outbox.values()].filter((p) => p.conversation_id === conversationId);
  }

  /** A new message from a `chat_message` event: thread, preview, counters. */
  receive(ev) {
    const m = fromEvent(ev);
    this.putMessages(m.conversation_id, [m], false);
    const conv = this.conversations.get(m.conversation_id);
    if (conv) {
      if (!conv.last_message || conv.last_message.id <= m.id) {
        conv.last_message = m;
        conv.updated_at = m.created_at;
      }
      if (typeof ev.unread_count === 'number') conv.unread_count = ev.unread_count;
      this.changed('conversations');
    }
    return m;
  }

  /** Own messages up to `upTo` were delivered to the other user. */
  delivered(conversationId, upTo, at) {
    this.updateOwn(conversationId, (m) => m.id <= upTo && m.status === 'sent', (m) => ({
      ...m,
      status: 'delivered',
      delivered_at: at,
    }));
  }

  /** The listed own messages were read by the other user. */
  read(conversationId, ids, at) {
    const set = new Set(ids);
    this.updateOwn(conversationId, (m) => set.has(m.id), (m) => ({
      ...m,
      status: 'read',
      is_read: true,
      read_at: at,
      delivered_at: m.delivered_at || at,
    }));
  }

  updateOwn(conversationId, pick, update) {
    const t = this.threads.get(conversationId);
    const conv = this.conversations.get(conversationId);
    let any = false;
    if (t) {
      for (const m of t.byId.values()) {
        if (m.sender_id === this.me?.id && pick(m)) {
          t.byId.set(m.id, update(m));
          any = true;
        }
      }
    }
    const last = conv?.last_message;
    if (last && last.sender_id === this.me?.id && pick(last)) {
      conv.last_message = update(last);
      this.changed('conversations');
    }
    if (any) this.changed('messages', conversationId);
  }

  setReactions(conversationId, messageId, reactions) {
    const t = this.threads.get(conversationId);
    const m = t?.byId.get(messageId);
    if (m) {
      t.byId.set(messageId, { ...m, reactions });
      this.changed('messages', conversationId);
    }
  }

  // Outbox

  queue(conversationId, content, clientId, attachments = []) {
    this.outbox.set(clientId, {
      client_id: clientId,
      conversation_id: conversationId,
      content,
      attachments,
      state: 'pending',
      error: '',
      created_at: new Date().toISOString(),
    });
    this.changed('messages', conversationId);
  }

  setPending(clientId, state, error = '') {
    const p = this.outbox.get(clientId);
    if (p) {
      p.state = state;
      p.error = error;
      this.changed('messages', p.conversation_id);
    }
  }

  // Typing

  setTyping(conversationId, name, isTyping) {
    if (isTyping) this.typing.set(conversationId, { name, until: Date.now() + 6000 });
    else this.typing.delete(conversationId);
    this.changed('typing', conversationId);
  }

  typist(conversationId) {
    const t = this.typing.get(conversationId);
    return t && t.until > Date.now() ? t.name : '';
  }

  // Connections

  setConnection(conn) {
    this.connections.set(conn.id, conn);
    this.changed('connections');
  }

  /** The connections by kind, as the contacts view lists them. */
  connectionGroups() {
    const me = this.me?.id;
    const groups = { incoming: [], outgoing: [], accepted: [] };
    for (const c of this.connections.values()) {
      if (c.status === 'accepted') groups.accepted.push(c);
      else if (c.status === 'pending') {
        (c.addressee.id === me ? groups.incoming : groups.outgoing).push(c);
      }
    }
    return groups;
  }
}
