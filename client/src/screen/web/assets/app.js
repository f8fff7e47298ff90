// The web screen's shell: navigation, the screen's status, the timeline.
import { api, view, h, when, say, signIn } from './api.js';
import './item.js';
import './forms.js';
import './contacts.js';

const VIEWS = [
  ['timeline', 'Timeline'],
  ['publish', 'Publish'],
  ['identities', 'Identities'],
  ['contacts', 'Contacts'],
  ['feeds', 'Feeds'],
  ['open', 'Open an item'],
];

class MtosApp extends HTMLElement {
  async connectedCallback() {
    try {
      await signIn();
    } catch (e) {
      this.append(h('main', { id: 'main' }, h('h1', {}, 'mtos'), h('p', { class: 'note', 'data-kind': 'error', role: 'alert' }, e.message)));
      return;
    }
    this.status = h('mtos-status');
    const nav = h('nav', { 'aria-label': 'Sections' },
      h('ul', {}, VIEWS.map(([id, label]) =>
        h('li', {}, h('a', {
          href: `#${id}`,
          id: `nav-${id}`,
          // The section again, even when the address already names it
          // (an item opened from it is shown in its place).
          onclick: () => { if (location.hash === `#${id}`) this.route(); },
        }, label)))));
    this.main = h('main', { id: 'main', tabindex: '-1' });
    this.append(
      h('header', {}, h('h1', {}, 'mtos'), this.status),
      nav,
      this.main,
    );
    window.addEventListener('hashchange', () => this.route());
    document.addEventListener('mtos-open-item', (e) => this.openItem(e.detail.reference));
    this.route();
  }

  route() {
    const id = (location.hash || '#timeline').slice(1);
    // The skip link, or any other anchor: the view stays (a half-written
    // publish is not lost).
    if (!VIEWS.some(([v]) => v === id) && this.main.firstChild) {
      this.main.focus();
      return;
    }
    const known = VIEWS.some(([v]) => v === id) ? id : 'timeline';
    for (const [v] of VIEWS) {
      const link = this.querySelector(`#nav-${v}`);
      if (v === known) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    this.show(h(`mtos-${known}`));
  }

  show(el) {
    this.main.replaceChildren(el);
    this.main.focus({ preventScroll: true });
  }

  // An item is opened in memory, never by URL: its reference carries its
  // key, and the address bar and history keep URLs.
  openItem(reference) {
    const el = h('mtos-item-view');
    el.reference = reference;
    for (const [v] of VIEWS) this.querySelector(`#nav-${v}`).removeAttribute('aria-current');
    this.show(el);
  }
}

class MtosStatus extends HTMLElement {
  connectedCallback() {
    // Counters that change every few seconds are not announced.
    this.setAttribute('aria-live', 'off');
    // Built once and updated in place: a refresh must not take the focus
    // from the button, nor lose a click.
    this.network = h('span', { class: 'pill ok' });
    this.packets = h('span', { class: 'pill' });
    this.jobs = h('span', { class: 'pill' });
    this.windowsPill = h('span', { class: 'pill', id: 'windows' });
    this.now = h('button', { type: 'button', id: 'window-now', hidden: true, onclick: () => this.windowNow() }, 'Window now');
    this.down = h('span', { class: 'pill bad', hidden: true });
    this.append(this.network, this.packets, this.jobs, this.windowsPill, this.now, this.down);
    this.refresh();
    this.timer = setInterval(() => this.refresh(), 10000);
  }

  disconnectedCallback() { clearInterval(this.timer); }

  async refresh() {
    try {
      const r = await api({ op: 'status' });
      const s = r.status ? r.status : r;
      this.network.textContent = `${s.network} · epoch ${s.epoch}`;
      this.packets.textContent = `${s.sent_real} real / ${s.sent_cover} cover packets`;
      this.jobs.textContent = `${s.jobs.length} job(s)`;
      this.windows(s.windows || {});
      this.down.hidden = true;
    } catch (e) {
      this.down.textContent = `screen unreachable: ${e.message}`;
      this.down.hidden = false;
    }
  }

  // The screen's bulk windows (client.md §4.1): when the next one comes,
  // and a way to take one now, which says that it leaks.
  windows(w) {
    const pill = this.windowsPill;
    pill.className = 'pill';
    pill.removeAttribute('title');
    this.now.hidden = true;
    if (w.ticket === null || w.ticket === undefined) {
      pill.textContent = 'bulk windows off';
      return;
    }
    if (!w.granted) {
      // The gateway has not answered yet (a session just opened), or
      // has given its share of windows to other clients.
      pill.textContent = 'bulk windows not granted yet';
      pill.title = 'transfers go at the idle rate until the gateway grants the screen its windows';
      return;
    }
    const change = w.next_change_ms ? inTime(w.next_change_ms) : 'never';
    if (w.in_window) {
      pill.className = 'pill ok';
      pill.textContent = `bulk window now, ends ${change}`;
      return;
    }
    pill.textContent = `next bulk window ${change}`;
    this.now.hidden = false;
  }

  async windowNow() {
    const leak = 'A bulk window now tells your gateway, and anyone who watches your connection, that this screen has work waiting: '
      + 'its windows otherwise follow a schedule that says nothing. Your windows stay in the new cohort from now on. Start one now?';
    if (!window.confirm(leak)) return;
    try {
      await api({ op: 'window_now' });
    } catch (e) {
      window.alert(e.message);
    }
    // The session opens again and its gateway answers within moments.
    setTimeout(() => this.refresh(), 2000);
  }
}

// "in 25 s", "in 7 min", "in 2 h" from Unix ms.
function inTime(ms) {
  const secs = Math.max(0, Math.round((ms - Date.now()) / 1000));
  if (secs < 120) return `in ${secs} s`;
  if (secs < 7200) return `in ${Math.round(secs / 60)} min`;
  return `in ${Math.round(secs / 3600)} h`;
}

class MtosTimeline extends HTMLElement {
  connectedCallback() {
    this.note = h('p', { class: 'note', 'aria-live': 'polite' });
    this.list = h('ol', { class: 'timeline', 'aria-label': 'Entries of followed feeds' });
    this.append(
      h('h2', {}, 'Timeline'),
      h('p', {}, h('button', { type: 'button', id: 'poll-now', onclick: () => this.pollNow() }, 'Poll now'),
        ' The screen polls followed feeds on its own schedule; new entries appear here.'),
      this.note,
      this.list,
    );
    this.load();
    this.watch();
  }

  disconnectedCallback() { this.abort?.abort(); }

  async watch() {
    this.abort = new AbortController();
    try {
      await api({ op: 'watch' }, () => this.soon(), this.abort.signal);
    } catch (e) {
      if (e.name !== 'AbortError' && this.isConnected) setTimeout(() => this.isConnected && this.watch(), 5000);
    }
  }

  // Many entries at once reload the list once.
  soon() {
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.load(), 500);
  }

  async pollNow() {
    say(this.note, 'polling…');
    try {
      const r = await api({ op: 'poll', rounds: 1 });
      say(this.note, `${r.new} new entr${r.new === 1 ? 'y' : 'ies'} from ${r.follows} feed(s)`);
      this.load();
    } catch (e) {
      say(this.note, e.message, 'error');
    }
  }

  async load() {
    try {
      const { entries } = await view('/view/timeline');
      if (entries.length === 0) {
        this.list.replaceChildren(h('li', { class: 'empty' }, 'Nothing yet: follow a feed (Feeds).'));
        return;
      }
      this.list.replaceChildren(...entries.map((e) => {
        const s = e.summary;
        const open = () => document.dispatchEvent(new CustomEvent('mtos-open-item', { detail: { reference: e.item } }));
        return h('li', { class: 'entry' },
          h('article', {},
            h('header', {}, h('strong', {}, e.feed), ' ', h('span', { class: 'muted' }, `#${e.n} · ${when(e.time_ms)}`)),
            s ? h('p', { class: 'summary' }, h('span', { class: 'type' }, s.content_type), ' ', s.text) : h('p', { class: 'muted' }, e.error ? `not opened: ${e.error}` : 'not fetched yet'),
            e.image ? h('img', { src: e.image, alt: `image of entry ${e.n} of ${e.feed}`, class: 'thumb' }) : null,
            s && s.tags.length ? h('p', { class: 'tags' }, s.tags.map((t) => h('span', { class: 'tag' }, t))) : null,
            h('button', { type: 'button', class: 'open', onclick: open }, 'Open'),
          ));
      }));
    } catch (e) {
      say(this.note, e.message, 'error');
    }
  }
}

class MtosOpen extends HTMLElement {
  connectedCallback() {
    const input = h('input', { id: 'open-ref', name: 'reference', required: true, autocomplete: 'off', spellcheck: false, placeholder: 'mtos:item:…' });
    this.append(
      h('h2', {}, 'Open an item'),
      h('form', {
        onsubmit: (e) => {
          e.preventDefault();
          document.dispatchEvent(new CustomEvent('mtos-open-item', { detail: { reference: input.value.trim() } }));
        },
      },
      h('label', { for: 'open-ref' }, 'Reference'), input,
      h('button', { type: 'submit' }, 'Fetch and open')),
    );
  }
}

customElements.define('mtos-app', MtosApp);
customElements.define('mtos-status', MtosStatus);
customElements.define('mtos-timeline', MtosTimeline);
customElements.define('mtos-open', MtosOpen);
