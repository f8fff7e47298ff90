// An item's view: fetched through the screen when the store lacks it,
// opened and verified by the screen, drawn by the built-in view for its
// type or, when its author's components are trusted, by its own display
// component in a sandboxed frame (specs/item.md §6).
import { api, view, post, h, when, say } from './api.js';

const HEIGHT_MIN = 40;
const HEIGHT_MAX = 4000;

// Whether this browser connects on its own to addresses a page names
// (network prediction, Chromium's "Preload pages"): a `preconnect` link to
// a port of the screen that nothing should ever reach, and whether it was
// reached. Asked once per page load.
let predicting = null;
async function browserPredicts() {
  if (predicting === null) {
    predicting = (async () => {
      const before = await view('/view/canary');
      const link = h('link', { rel: 'preconnect', href: `http://127.0.0.1:${before.port}/` });
      document.head.append(link);
      await new Promise((r) => { setTimeout(r, 1500); });
      link.remove();
      const after = await view('/view/canary');
      return after.seen > before.seen;
    })();
  }
  return predicting;
}

function openItem(reference) {
  document.dispatchEvent(new CustomEvent('mtos-open-item', { detail: { reference } }));
}

// Fetches `reference` into the screen's store, telling `note` how far it
// has got.
export async function fetchItem(reference, note, bar) {
  await api({ op: 'fetch', reference }, (e) => {
    if (e.event === 'progress' && bar) {
      bar.max = Math.max(1, e.total);
      bar.value = e.done;
      say(note, `fetching: ${e.done} of ${e.total} chunks`);
    } else if (e.event === 'queued') {
      say(note, `fetching (job ${e.job})…`);
    } else if (e.event === 'note') {
      say(note, e.text);
    }
  });
}

class MtosItemView extends HTMLElement {
  connectedCallback() {
    this.note = h('p', { class: 'note', 'aria-live': 'polite' });
    this.bar = h('progress', { max: 1, value: 0, 'aria-label': 'Fetch progress' });
    this.body = h('div', { class: 'item' });
    this.append(h('h2', {}, 'Item'), this.note, this.bar, this.body);
    this.load();
  }

  async load() {
    let item;
    try {
      item = await post('/view/item', { reference: this.reference });
    } catch (e) {
      if (e.status !== 404) {
        say(this.note, e.message, 'error');
        return;
      }
      try {
        await fetchItem(this.reference, this.note, this.bar);
        item = await post('/view/item', { reference: this.reference });
      } catch (e2) {
        say(this.note, e2.message, 'error');
        return;
      }
    }
    this.bar.hidden = true;
    say(this.note, 'signature and every part verified');
    this.item = item;
    this.draw();
  }

  draw() {
    const item = this.item;
    const author = item.author.mine ? `you (${item.author.mine})` : item.author.id;
    const head = h('header', {},
      h('p', {}, h('span', { class: 'type' }, item.content_type), item.private ? h('span', { class: 'pill' }, 'private') : null),
      h('p', { class: 'muted' }, `by ${author} · ${when(item.created_ms)}`),
      item.tags.length ? h('p', { class: 'tags' }, item.tags.map((t) => h('span', { class: 'tag' }, t))) : null,
    );
    const refs = item.refs.filter((r) => r.kind !== 'component');
    const links = refs.length ? h('ul', { class: 'refs', 'aria-label': 'Related items' },
      refs.map((r) => h('li', {}, h('button', { type: 'button', class: 'link', onclick: () => openItem(r.reference) }, `${r.kind}: open`)))) : null;
    const display = h('div', { class: 'display' });
    this.threadBox = h('section', { class: 'thread', 'aria-label': 'Thread' },
      h('button', { type: 'button', onclick: () => this.thread() }, 'Show the thread'));
    this.body.replaceChildren(h('article', {}, head, display, links), this.threadBox);
    if (item.component) this.component(display);
    else builtin(display, item);
  }

  // The item's thread (specs/item.md §8): the chain of replies, remixes
  // and reblogs up to its root and what answers it among the followed
  // feeds and the items of this screen, indented by depth; a missing item
  // is offered to fetch and open.
  async thread() {
    say(this.note, 'building the thread…');
    let t;
    try {
      t = await post('/view/thread', { reference: this.reference });
    } catch (e) {
      say(this.note, e.message, 'error');
      return;
    }
    const list = h('ol', { class: 'thread-list' }, t.nodes.map((n) => {
      const s = n.summary;
      const li = h('li', { class: n.focus ? 'focus' : null },
        n.kind ? h('span', { class: 'pill' }, n.kind) : null,
        s ? [h('span', { class: 'type' }, s.content_type), ` by ${s.author} · ${when(n.created_ms)}`,
          h('p', {}, (s.text || '').split('\n')[0])]
          : h('span', { class: 'muted' }, `missing: ${n.missing}`),
        n.focus ? h('span', { class: 'muted' }, ' (this item)')
          : h('button', { type: 'button', class: 'link', onclick: () => openItem(n.reference) }, s ? 'open' : 'fetch and open'));
      // CSSOM, not a style attribute: the page's policy allows no inline style.
      li.style.marginLeft = `${Math.min(n.depth, 12) * 1.5}em`;
      return li;
    }));
    this.threadBox.replaceChildren(h('h3', {}, 'Thread'), list,
      t.truncated ? h('p', { class: 'muted' }, 'the thread was cut at its bounds') : null);
    const missing = t.nodes.filter((n) => !n.summary).length;
    say(this.note, `thread of ${t.nodes.length} item(s)${missing ? `, ${missing} missing` : ''}`);
  }

  // The item's own display component: only when its author's components
  // are trusted; otherwise the built-in view and a choice.
  async component(display) {
    const item = this.item;
    let predicts = true;
    try {
      predicts = await browserPredicts();
    } catch (e) {
      say(this.note, e.message, 'error');
    }
    if (predicts) {
      builtin(display, item);
      display.prepend(h('div', { class: 'trust prediction', role: 'alert' },
        h('p', {}, 'This item brings its own display, but this browser opens connections on its own to addresses a page names ("Preload pages"), which would let a display reveal your address. Displays are not drawn here until it is off: Settings, Performance, Preload pages; then reload.')));
      return;
    }
    let reg;
    try {
      reg = await post('/view/frame', { reference: item.reference });
    } catch (e) {
      builtin(display, item);
      if (e.status === 403 && e.body && e.body.untrusted) {
        display.prepend(this.trustBar(e.body.untrusted, e.body.author));
      } else if (e.status === 404 && !this.fetchedComponent) {
        // Fetched only when the person asks: opening an item does not
        // make the screen fetch what the item names.
        display.prepend(h('div', { class: 'trust' },
          h('p', {}, 'This item brings its own display, not fetched yet.'),
          h('button', {
            type: 'button',
            onclick: async () => {
              try {
                await fetchItem(item.component, this.note, null);
                this.fetchedComponent = true;
                this.draw();
              } catch (e2) {
                say(this.note, `its display could not be fetched: ${e2.message}`, 'error');
              }
            },
          }, 'Fetch its display')));
      } else {
        say(this.note, e.message, 'error');
      }
      return;
    }
    const frame = h('iframe', {
      class: 'component',
      title: `display of this ${item.content_type}`,
      sandbox: 'allow-scripts',
      referrerpolicy: 'no-referrer',
      allow: "camera 'none'; microphone 'none'; geolocation 'none'; display-capture 'none'",
      src: reg.frame,
    });
    frame.addEventListener('load', () => this.hand(frame), { once: true });
    const asks = h('div', { class: 'asks', 'aria-live': 'polite' });
    this.asks = asks;
    const untrust = h('button', {
      type: 'button',
      class: 'link',
      onclick: async () => {
        try {
          await post('/view/trust', { author: reg.author_key, trusted: false });
          this.draw();
        } catch (e) {
          say(this.note, e.message, 'error');
        }
      },
    }, `stop trusting displays by ${reg.author}`);
    display.replaceChildren(h('p', { class: 'muted' }, `drawn by a display made by ${reg.author} · `, untrust), frame, asks);
  }

  trustBar(key, author) {
    const bar = h('div', { class: 'trust' },
      h('p', {}, `This item brings its own display, made by ${author}. Displays run in a sandbox that cannot reach the network, this screen or your other items; trust them only from authors you know.`),

      h('button', {
        type: 'button',
        onclick: async () => {
          try {
            await post('/view/trust', { author: key, trusted: true });
            this.draw();
          } catch (e) {
            say(this.note, e.message, 'error');
          }
        },
      }, `Trust displays by ${author}`));
    return bar;
  }

  // Hands the item to its frame over a channel of its own: the frame's
  // origin is opaque ("null"), so only the channel tells it is ours. No
  // reference, key or URL goes in: parts travel as bytes.
  async hand(frame) {
    const item = this.item;
    const parts = [];
    const buffers = [];
    for (const p of item.parts) {
      if (p.kind === 'text' && p.text !== null) {
        parts.push({ kind: 'text', mime: p.mime, text: p.text });
      } else {
        const buf = await (await fetch(p.media)).arrayBuffer();
        buffers.push(buf);
        parts.push({ kind: 'binary', mime: p.mime, bytes: buf });
      }
    }
    const channel = new MessageChannel();
    channel.port1.onmessage = (e) => this.asked(frame, e.data);
    const data = {
      content_type: item.content_type,
      author: item.author.id,
      created_ms: item.created_ms,
      tags: item.tags,
      refs: item.refs.filter((r) => r.kind !== 'component').map((r, i) => ({ kind: r.kind, index: i })),
      parts,
    };
    frame.contentWindow.postMessage({ mtos: 1, type: 'item', item: data }, '*', [channel.port2, ...buffers]);
  }

  // What a component asks: its height, and to open one of its item's
  // references, which the person must confirm with a click here.
  asked(frame, msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'height' && Number.isFinite(msg.px)) {
      frame.style.height = `${Math.min(HEIGHT_MAX, Math.max(HEIGHT_MIN, Math.round(msg.px)))}px`;
    } else if (msg.type === 'open' && Number.isInteger(msg.ref)) {
      const refs = this.item.refs.filter((r) => r.kind !== 'component');
      const r = refs[msg.ref];
      if (!r) return;
      this.asks.replaceChildren(
        h('p', {}, `The display asks to open the ${r.kind} item.`),
        h('button', { type: 'button', onclick: () => openItem(r.reference) }, 'Open it'),
        h('button', { type: 'button', onclick: () => this.asks.replaceChildren() }, 'Ignore'));
    }
  }
}

// The built-in view: text, pictures, sound, video, files.
export function builtin(display, item) {
  const parts = item.parts.map((p, i) => {
    // An imported item's schema.org description (specs/item.md §7.5):
    // shown as data, folded.
    if (p.kind === 'text' && p.text !== null && p.mime.startsWith('application/ld+json')) {
      return h('details', { class: 'metadata' }, h('summary', {}, 'metadata (schema.org)'), h('pre', {}, p.text));
    }
    if (p.kind === 'text' && p.text !== null && !p.mime.startsWith('text/html')) {
      return h('div', { class: 'text' }, p.text.split('\n').map((line) => h('p', {}, line)));
    }
    const base = p.mime.split(';')[0].trim();
    if (/^image\/(png|jpeg|gif|webp|avif)$/.test(base)) {
      return h('figure', {}, h('img', { src: p.media, alt: `picture ${i + 1} of this item`, class: 'media' }));
    }
    if (/^audio\//.test(base)) return h('audio', { src: p.media, controls: true, 'aria-label': `sound ${i + 1}` });
    if (/^video\//.test(base)) return h('video', { src: p.media, controls: true, class: 'media', 'aria-label': `video ${i + 1}` });
    return h('p', {}, h('a', { href: p.media, download: `part-${i + 1}${extension(base)}` }, `file: ${base}, ${p.length} bytes (download)`));
  });
  display.replaceChildren(...parts);
}

// A file name's extension for a part's type, from a short list (the rest:
// none).
function extension(mime) {
  const known = { 'application/pdf': '.pdf', 'text/plain': '.txt', 'text/html': '.html', 'image/svg+xml': '.svg',
    'application/zip': '.zip', 'text/csv': '.csv', 'application/json': '.json', 'text/javascript': '.js' };
  return known[mime] || '';
}

customElements.define('mtos-item-view', MtosItemView);
