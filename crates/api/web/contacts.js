// The contacts view: find a user by id (the API looks users up by id
// only), send a request, accept, reject, withdraw or remove; live from
// the user stream's connection events.

import * as api from './api.js';
import { h, reconcile, announce } from './dom.js';

const $ = (id) => document.getElementById(id);

export class ContactsView {
  constructor(store, { openConversation }) {
    this.store = store;
    this.openConversation = openConversation;
    store.addEventListener('change', (e) => {
      if (e.detail.what === 'connections' || e.detail.what === 'presence') this.render();
    });
    $('find-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.find();
    });
  }

  error(text) {
    $('find-form').querySelector('[data-error]').textContent = text;
  }

  async find() {
    const raw = $('find-input').value.trim();
    this.error('');
    $('found').hidden = true;
    if (!/^[1-9][0-9]*$/.test(raw)) {
      this.error('Enter a user id (a positive number).');
      return;
    }
    try {
      const user = await api.user(raw);
      this.showFound(user);
    } catch (err) {
      this.error(err.status === 404 ? `No user with id ${raw}.` : err.message);
    }
  }

  showFound(user) {
    const self = user.id === this.store.me.id;
    const send = h('button', { class: 'primary', disabled: self }, 'Send request');
    send.addEventListener('click', async () => {
      send.disabled = true;
      try {
        this.store.setConnection(await api.requestConnection(user.id));
        announce(`Request sent to ${user.name}`);
        $('found').hidden = true;
        $('find-input').value = '';
      } catch (err) {
        this.error(err.status === 409 ? `You already have a request or a connection with ${user.name}.`
          : err.message);
        send.disabled = false;
      }
    });
    $('found').replaceChildren(
      h('p', null, h('strong', { text: user.name }), ` @${user.username}`),
      self ? h('p', { class: 'hint', text: 'That is you.' }) : send,
    );
    $('found').hidden = false;
    if (!self) send.focus();
  }

  /** Runs `action` and stores the connection it answers (or reports why not). */
  async act(action, conn) {
    try {
      const result = await action(conn.id);
      if (result) this.store.setConnection(result);
      else this.store.setConnection({ ...conn, status: 'removed' });
    } catch (err) {
      announce(err.message);
      this.error(err.message);
    }
  }

  render() {
    const me = this.store.me;
    if (!me) return;
    const { incoming, outgoing, accepted } = this.store.connectionGroups();
    const other = (c) => (c.requester.id === me.id ? c.addressee : c.requester);
    const sig = (c) => JSON.stringify([c.status, c.conversation_id,
      this.store.presenceOf(other(c).id).status]);
    const row = (c, ...buttons) => h('li', { class: 'item contact' },
      h('span', { class: 'conv-name', text: other(c).name }),
      h('span', { class: 'sub', text: ` id ${other(c).id}` }),
      h('span', { class: 'actions' }, buttons));
    const button = (label, name, onclick, cls = '') => h('button', {
      class: cls, onclick, 'data-focus': label, 'aria-label': `${label} ${name}`,
    }, label);
    reconcile($('incoming'), incoming, (c) => c.id, sig, (c) => row(c,
      button('Accept', other(c).name, () => this.act(api.acceptConnection, c), 'primary'),
      button('Reject', other(c).name, () => this.act(api.rejectConnection, c))));
    reconcile($('outgoing'), outgoing, (c) => c.id, sig, (c) => row(c,
      button('Withdraw', other(c).name, () => this.act(api.removeConnection, c))));
    reconcile($('accepted'), accepted, (c) => c.id, sig, (c) => row(c,
      c.conversation_id ? button('Chat', other(c).name, () => this.openConversation(c.conversation_id), 'primary') : null,
      button('Remove', other(c).name, () => {
        if (confirm(`Remove ${other(c).name} from your contacts?`)) this.act(api.removeConnection, c);
      })));
  }
}
