// Starts and stops the real server binary for the browser tests: a temp
// SQLite file, a free port, fast password hashing, no rate limits.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');

/** Builds the server (a no-op when it is up to date) unless CHAT_SERVER_BIN names one. */
export function serverBinary() {
  if (process.env.CHAT_SERVER_BIN) return process.env.CHAT_SERVER_BIN;
  const built = spawnSync('cargo', ['build', '-p', 'chat-server'], { cwd: ROOT, stdio: 'inherit' });
  if (built.status !== 0) throw new Error('cargo build -p chat-server failed');
  // Where cargo put it: CARGO_TARGET_DIR when set (relative to the root, as cargo reads it).
  const target = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
  return join(target, 'debug', 'chat-server');
}

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** One server process on `port` and `db`; `stop()` and `start()` again to restart it. */
export class ServerProcess {
  constructor(binary, artifacts) {
    this.binary = binary;
    this.dir = mkdtempSync(join(tmpdir(), 'chat-browser-'));
    this.db = join(this.dir, 'chat.sqlite3');
    this.log = join(artifacts, 'server.log');
    this.proc = null;
    this.port = 0;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port and file; `env` adds settings. */
  async start(env = {}) {
    if (!this.port) this.port = await freePort();
    const vars = {
      ...env,
      PATH: process.env.PATH,
      CHAT_CONFIG_DIR: join(this.dir, 'no-config'),
      HOST: '127.0.0.1',
      PORT: String(this.port),
      DATABASE_URL: `sqlite://${this.db}`,
      CHAT__ATTACHMENTS__DIR: join(this.dir, 'attachments'),
      JWT_SECRET: 'browser-test-secret',
      RUST_LOG: process.env.RUST_LOG || 'info',
      CHAT__SERVER__WORKERS: '2',
      CHAT__SERVER__SHUTDOWN_TIMEOUT_SECONDS: '2',
      CHAT__AUTH__ARGON2_MEMORY_KIB: '1024',
      CHAT__AUTH__ARGON2_ITERATIONS: '1',
      // Short-lived access tokens, so the client's refresh runs during the test.
      CHAT__AUTH__ACCESS_TOKEN_MINUTES: '1',
      CHAT__RATE_LIMITS__AUTH_PER_MINUTE: '0',
      CHAT__REDIS__PRESENCE_GRACE_MS: '1000',
    };
    const out = openSync(this.log, 'a');
    this.proc = spawn(this.binary, ['serve'], { env: vars, stdio: ['ignore', out, out] });
    const exited = new Promise((ok) => this.proc.once('exit', ok));
    this.exited = exited;
    for (let i = 0; i < 200; i++) {
      if (this.proc.exitCode !== null) throw new Error(`server exited; see ${this.log}`);
      try {
        const res = await fetch(`${this.url}/readyz/`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`server did not get ready; see ${this.log}`);
  }

  /** SIGTERM (sockets close with 1012), and waits for the exit. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    const timeout = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timeout);
  }

  async cleanup() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
