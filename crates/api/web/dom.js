// Small DOM helpers: element creation, keyed list updates that keep focus,
// the search highlight rendered without innerHTML, and time formatting.

/** `h('button', { class: 'x', onclick: fn }, 'Label')`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/**
 * Makes `container`'s children the rendering of `items`, reusing the
 * element of each key whose signature did not change, so focus and scroll
 * survive; a replaced element hands focus to its counterpart (same
 * `data-focus` value).
 */
export function reconcile(container, items, key, signature, render) {
  const old = new Map();
  for (const el of container.children) old.set(el.dataset.key, el);
  let before = container.firstElementChild;
  const keep = new Set();
  for (const item of items) {
    const k = String(key(item));
    const sig = signature(item);
    let el = old.get(k);
    if (!el || el.dataset.sig !== sig) {
      const next = render(item);
      next.dataset.key = k;
      next.dataset.sig = sig;
      if (el) {
        const focus = el.contains(document.activeElement)
          ? document.activeElement.dataset.focus
          : null;
        el.replaceWith(next);
        if (before === el) before = next;
        if (focus) next.querySelector(`[data-focus="${CSS.escape(focus)}"]`)?.focus();
      }
      el = next;
    }
    keep.add(el);
    if (el !== before) container.insertBefore(el, before);
    else before = el.nextElementSibling;
  }
  for (const el of [...container.children]) if (!keep.has(el)) el.remove();
}

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescape(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (all, name) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' || name[1] === 'X'
        ? parseInt(name.slice(2), 16)
        : parseInt(name.slice(1), 10);
      return Number.isFinite(code) && code <= 0x10ffff ? String.fromCodePoint(code) : all;
    }
    return ENTITIES[name.toLowerCase()] ?? all;
  });
}

/**
 * The server's highlight (escaped text with `<mark>` around matches) as
 * nodes: only `<mark>` becomes an element, everything else is text, so
 * nothing the server sends is ever parsed as HTML.
 */
export function highlight(escaped) {
  const frag = document.createDocumentFragment();
  const parts = escaped.split(/(<mark>|<\/mark>)/);
  let mark = null;
  for (const part of parts) {
    if (part === '<mark>') mark = document.createElement('mark');
    else if (part === '</mark>') {
      if (mark) frag.append(mark);
      mark = null;
    } else if (part) (mark || frag).append(unescape(part));
  }
  if (mark) frag.append(mark);
  return frag;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const day = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

/** `14:05` today, `Nov 3` before. */
export function shortTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toDateString() === new Date().toDateString() ? clock.format(d) : day.format(d);
}

export function fullTime(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}

/** A random id for `client_id` (crypto.randomUUID needs a secure context). */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Says `text` to screen readers (the page's polite live region). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}
