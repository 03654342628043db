// The user stream (/ws/chat/): one socket for all of the user's
// conversations. It reconnects by itself with `since=<last seq>` so the
// server replays what was missed; a `recovered: false` answer asks the app
// to reload through REST. While the browser reports no network it does not
// try (and closes a socket it holds: emulated or real, a dead network does
// not always close a WebSocket).

const MAX_DELAY_MS = 4000;

export class UserStream extends EventTarget {
  /** `token()` gives the current access token at each (re)connect. */
  constructor(token) {
    super();
    this.token = token;
    this.ws = null;
    this.seq = null;
    this.attempt = 0;
    this.timer = 0;
    this.state = 'connecting';
    this.stopped = false;
    this.onOffline = () => this.drop('offline');
    this.onOnline = () => this.connect();
    addEventListener('offline', this.onOffline);
    addEventListener('online', this.onOnline);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    removeEventListener('offline', this.onOffline);
    removeEventListener('online', this.onOnline);
    if (this.ws) this.ws.close(1000, 'logout');
    this.ws = null;
  }

  get open() {
    return this.state === 'open' && this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends a client frame; false when the socket is not open. */
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    if (!navigator.onLine) {
      this.setState('offline');
      return;
    }
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this.setState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = new URLSearchParams({ token: this.token() });
    if (this.seq !== null) q.set('since', String(this.seq));
    const ws = new WebSocket(`${scheme}://${location.host}/ws/chat/?${q}`);
    this.ws = ws;
    ws.onmessage = (msg) => this.receive(msg.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (ev.code === 4001) {
        this.setState('connecting');
        this.emit('unauthorized');
        return;
      }
      this.retry();
    };
  }

  /** Closes the socket (e.g. the network went away) and waits for it. */
  drop(state) {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, state);
    this.setState(state);
  }

  retry() {
    if (this.stopped) return;
    if (!navigator.onLine) {
      this.setState('offline');
      return;
    }
    this.setState('reconnecting');
    const delay = Math.min(250 * 2 ** this.attempt, MAX_DELAY_MS);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay + Math.random() * 100);
  }

  receive(data) {
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    if (ev.type === 'connection_established') {
      this.attempt = 0;
      const resumed = this.seq !== null;
      // Replayed events follow and advance `seq` one by one; anything else
      // starts from the server's position after a REST reload.
      if (!resumed || !ev.recovered) this.seq = ev.seq;
      this.setState('open');
      this.emit('established', { ...ev, resumed, reload: !resumed || !ev.recovered });
      return;
    }
    if (typeof ev.seq === 'number') {
      if (this.seq !== null && ev.seq <= this.seq) return; // seen already
      this.seq = ev.seq;
    }
    this.emit('event', ev);
  }
}
