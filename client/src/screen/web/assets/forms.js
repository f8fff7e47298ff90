// What a person does: publish, keep identities, follow feeds.
import { api, view, post, upload, h, say, blobUrl } from './api.js';

const TYPES = ['', 'Note', 'Article', 'Comment', 'ImageObject', 'VideoObject', 'AudioObject',
  'MediaObject', 'DigitalDocument', 'WebPage', 'Event', 'Collection'];

function field(id, label, input, hint) {
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null);
}

function words(text) {
  return text.split(/[\s,]+/).map((t) => t.trim()).filter(Boolean);
}

class MtosPublish extends HTMLElement {
  async connectedCallback() {
    const f = {
      text: h('textarea', { name: 'text', rows: 5 }),
      files: h('input', { type: 'file', name: 'files', multiple: true }),
      tags: h('input', { name: 'tags', autocomplete: 'off' }),
      type: h('select', { name: 'type' }, TYPES.map((t) => h('option', { value: t }, t || 'from the parts'))),
      as: h('select', { name: 'as' }),
      audience: h('select', { name: 'audience' },
        h('option', { value: 'public' }, 'public'),
        h('option', { value: 'private' }, 'chosen people'),
        h('option', { value: 'anonymous' }, 'public, anonymous (a throwaway key)')),
      to: h('input', { name: 'to', autocomplete: 'off' }),
      reply: h('input', { name: 'reply_to', autocomplete: 'off' }),
      remix: h('input', { name: 'remix_of', autocomplete: 'off' }),
      reblog: h('input', { name: 'reblog', autocomplete: 'off' }),
      component: h('input', { name: 'component', autocomplete: 'off' }),
      page: h('input', { type: 'file', name: 'page', accept: '.html,.htm,.json,.xml,text/html,application/json,text/xml' }),
      oembed: h('input', { type: 'file', name: 'oembed', accept: '.json,.xml,application/json,text/xml' }),
      pageUrl: h('input', { name: 'page_url', autocomplete: 'off', type: 'url' }),
    };
    this.f = f;
    this.note = h('p', { class: 'note', 'aria-live': 'polite' });
    this.bar = h('progress', { max: 1, value: 0, 'aria-label': 'Publish progress', hidden: true });
    this.result = h('div', { class: 'result' });
    const toField = field('pub-to', 'To (labels or mtos:id: URIs)', f.to);
    toField.hidden = true;
    f.audience.addEventListener('change', () => { toField.hidden = f.audience.value !== 'private'; });
    this.submit = h('button', { type: 'submit' }, 'Publish');
    this.append(
      h('h2', {}, 'Publish'),
      h('form', { onsubmit: (e) => { e.preventDefault(); this.publish(); } },
        field('pub-text', 'Text', f.text),
        field('pub-files', 'Files (pictures, sound, video, documents)', f.files),
        field('pub-tags', 'Tags', f.tags, 'separated by spaces or commas'),
        field('pub-type', 'Type', f.type),
        field('pub-as', 'Signed by', f.as),
        field('pub-audience', 'Audience', f.audience),
        toField,
        h('details', {}, h('summary', {}, 'Import a saved web page'),
          h('p', { class: 'muted' }, 'The item takes the page\'s type, title, description, author, date, address, site, license, pictures and media addresses from its own metadata; nothing is fetched.'),
          field('pub-page', 'Saved page (HTML) or oEmbed response', f.page),
          field('pub-oembed', 'Its oEmbed response (optional)', f.oembed),
          field('pub-page-url', 'Address it was saved from (optional)', f.pageUrl, 'resolves the page\'s relative links')),
        h('details', {}, h('summary', {}, 'References and display component'),
          field('pub-reply', 'Reply to', f.reply, 'an mtos:item: reference'),
          field('pub-remix', 'Remix of', f.remix),
          field('pub-reblog', 'Reblog of', f.reblog),
          field('pub-component', 'Display component', f.component, 'an item holding an HTML display for this one')),
        this.submit),
      this.bar, this.note, this.result,
    );
    try {
      const { identities } = await view('/view/identities');
      f.as.replaceChildren(...identities.map((i) => h('option', { value: i.id }, `${i.label} (${i.visibility})`)));
      if (identities.length === 0) f.as.append(h('option', { value: '' }, 'no identity: anonymous only'));
    } catch (e) {
      say(this.note, e.message, 'error');
    }
  }

  async publish() {
    const f = this.f;
    this.submit.disabled = true;
    this.result.replaceChildren();
    this.bar.hidden = false;
    try {
      const files = [];
      for (const file of f.files.files) {
        say(this.note, `uploading ${file.name}…`);
        const up = await upload(file, (sent, total) => { this.bar.max = Math.max(1, total); this.bar.value = sent; });
        files.push(up.upload);
      }
      const one = async (input) => {
        const file = input.files[0];
        if (!file) return null;
        say(this.note, `uploading ${file.name}…`);
        return (await upload(file, (sent, total) => { this.bar.max = Math.max(1, total); this.bar.value = sent; })).upload;
      };
      const page = await one(f.page);
      const pageOembed = await one(f.oembed);
      const seal = {
        text: f.text.value.trim() ? [f.text.value] : [],
        files,
        import: page,
        import_oembed: pageOembed,
        import_url: page && f.pageUrl.value.trim() ? f.pageUrl.value.trim() : null,
        content_type: f.type.value || null,
        tag: words(f.tags.value),
        reply_to: words(f.reply.value),
        remix_of: words(f.remix.value),
        reblog: words(f.reblog.value),
        component: f.component.value.trim() || null,
        to: f.audience.value === 'private' ? words(f.to.value) : [],
        anonymous: f.audience.value === 'anonymous',
        as_id: f.audience.value === 'anonymous' ? null : (f.as.value || null),
      };
      say(this.note, 'sealing…');
      this.bar.value = 0;
      const done = await api({ op: 'publish', seal }, (e) => {
        if (e.event === 'progress') {
          this.bar.max = Math.max(1, e.total);
          this.bar.value = e.done;
          say(this.note, `storing: ${e.done} of ${e.total} chunks`);
        } else if (e.event === 'note') {
          say(this.note, e.text);
        } else if (e.event === 'queued') {
          say(this.note, `queued (job ${e.job}): it goes out in the cover traffic's slots`);
        }
      });
      const entry = Array.isArray(done.feed_entry) ? `, entry #${done.feed_entry[1]} of the feed of ${done.feed_entry[0]}` : '';
      say(this.note, `published: ${done.chunks} chunk(s)${entry}`, 'ok');
      const ref = h('input', { id: 'published-ref', readonly: true, value: done.reference });
      this.result.replaceChildren(
        field('published-ref', 'Reference', ref),
        h('button', { type: 'button', onclick: () => document.dispatchEvent(new CustomEvent('mtos-open-item', { detail: { reference: done.reference } })) }, 'Open it'));
      f.text.value = '';
      f.files.value = '';
      f.page.value = '';
      f.oembed.value = '';
      f.pageUrl.value = '';
    } catch (e) {
      say(this.note, e.message, 'error');
    } finally {
      this.submit.disabled = false;
    }
  }
}

class MtosIdentities extends HTMLElement {
  connectedCallback() {
    this.note = h('p', { class: 'note', 'aria-live': 'polite' });
    this.list = h('div', { class: 'cards' });
    this.newForm = h('form', { onsubmit: (e) => { e.preventDefault(); this.create(); } });
    this.compareOut = h('p', { class: 'safety', 'aria-live': 'polite' });
    this.append(h('h2', {}, 'Identities'), this.note, this.list, this.newForm, this.compareForm());
    this.load();
  }

  async load() {
    try {
      const { identities, keychain } = await view('/view/identities');
      this.identities = identities;
      this.list.replaceChildren(...identities.map((i) => this.card(i)));
      if (identities.length === 0) this.list.append(h('p', { class: 'muted' }, 'No identity yet.'));
      this.drawNew(keychain);
      const sel = this.querySelector('#cmp-id');
      if (sel) sel.replaceChildren(...identities.map((i) => h('option', { value: i.id }, i.label)));
    } catch (e) {
      say(this.note, e.message, 'error');
    }
  }

  card(i) {
    const note = h('p', { class: 'note', 'aria-live': 'polite' });
    const publishCard = async () => {
      say(note, 'publishing the card…');
      try {
        await api({ op: 'publish_card', id: i.id });
        say(note, 'card published: others find it by fingerprint', 'ok');
      } catch (e) {
        say(note, e.message, 'error');
      }
    };
    const qr = h('img', { alt: `QR code of ${i.label}'s identity URI`, class: 'qr' });
    blobUrl(`/view/identity.svg?id=${encodeURIComponent(i.id)}`).then((u) => { qr.src = u; }, (e) => say(note, e.message, 'error'));
    const exportCard = async () => {
      try {
        const a = h('a', { href: await blobUrl(`/view/identity.txt?id=${encodeURIComponent(i.id)}`), download: `mtos-${i.id}.txt` });
        a.click();
      } catch (e) {
        say(note, e.message, 'error');
      }
    };
    return h('section', { class: 'card identity', 'aria-label': `identity ${i.label}` },
      h('h3', {}, i.label, ' ', h('span', { class: 'pill' }, i.visibility)),
      qr,
      h('dl', {},
        h('dt', {}, 'Fingerprint'), h('dd', { class: 'fingerprint' }, i.fingerprint),
        h('dt', {}, 'Identity URI'), h('dd', {}, h('input', { readonly: true, value: i.uri, 'aria-label': `identity URI of ${i.label}` })),
        h('dt', {}, 'Feed URI (for followers)'), h('dd', {}, h('input', { readonly: true, value: i.feed, 'aria-label': `feed URI of ${i.label}` }))),
      i.visibility === 'private' ? h('p', { class: 'muted' }, 'Private: share its URIs out of band only.') : null,
      h('p', {},
        h('button', { type: 'button', onclick: exportCard }, 'Export the public card'),
        ' ',
        i.visibility === 'public' ? h('button', { type: 'button', onclick: publishCard }, 'Publish the card') : null),
      note);
  }

  drawNew(keychain) {
    const label = h('input', { name: 'label', autocomplete: 'off' });
    const priv = h('input', { type: 'checkbox', name: 'private' });
    const pass = h('input', { type: 'password', name: 'passphrase', autocomplete: 'new-password', minlength: 8 });
    const pass2 = h('input', { type: 'password', name: 'passphrase2', autocomplete: 'new-password', minlength: 8 });
    this.newFields = { label, priv, pass, pass2, keychain };
    this.newForm.replaceChildren(...[
      h('h3', {}, 'New identity'),
      field('new-label', 'Label', label),
      h('div', { class: 'field check' }, priv, h('label', { for: 'new-private' }, 'Private (never published; shared out of band)')),
      keychain ? null : h('p', { class: 'muted' }, 'This home has no keychain yet: choose the passphrase that will lock it.'),
      keychain ? null : field('new-pass', 'Passphrase', pass),
      keychain ? null : field('new-pass2', 'Passphrase again', pass2),
      h('button', { type: 'submit', id: 'new-identity' }, 'Create'),
    ].filter(Boolean));
    priv.id = 'new-private';
  }

  async create() {
    const { label, priv, pass, pass2, keychain } = this.newFields;
    if (!keychain && pass.value !== pass2.value) {
      say(this.note, 'the two passphrases differ', 'error');
      return;
    }
    if (this.creating) return;
    this.creating = true;
    const button = this.newForm.querySelector('#new-identity');
    button.disabled = true;
    say(this.note, 'creating…');
    try {
      const r = await post('/view/identities', {
        label: label.value.trim() || null,
        private: priv.checked,
        passphrase: keychain ? null : pass.value,
      });
      say(this.note, `created "${r.label}"`, 'ok');
      await this.load();
    } catch (e) {
      say(this.note, e.message, 'error');
    } finally {
      this.creating = false;
      button.disabled = false;
    }
  }

  compareForm() {
    const uri = h('input', { name: 'uri', autocomplete: 'off', placeholder: 'mtos:id:…' });
    const id = h('select', { name: 'id' });
    return h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const r = await post('/view/compare', { id: id.value, uri: uri.value });
          this.compareOut.replaceChildren(
            `Safety number of ${r.me} and ${r.contact} (${r.contact_id}): `,
            h('strong', {}, r.safety_number),
            '. Compare it with the one your contact sees: if all digits match, you hold each other\'s real keys.');
        } catch (err) {
          say(this.compareOut, err.message, 'error');
        }
      },
    },
    h('h3', {}, 'Safety number with a contact'),
    field('cmp-id', 'Your identity', id),
    field('cmp-uri', 'Their identity URI', uri),
    h('button', { type: 'submit' }, 'Compare'),
    this.compareOut);
  }
}

class MtosFeeds extends HTMLElement {
  connectedCallback() {
    this.note = h('p', { class: 'note', 'aria-live': 'polite' });
    this.list = h('ul', { class: 'feeds', 'aria-label': 'Followed feeds' });
    const uri = h('input', { name: 'uri', required: true, autocomplete: 'off', spellcheck: false, placeholder: 'mtos:feed:…' });
    const label = h('input', { name: 'label', autocomplete: 'off' });
    const finger = h('input', { name: 'fingerprint', autocomplete: 'off', inputmode: 'numeric' });
    this.cardOut = h('div', { class: 'result', 'aria-live': 'polite' });
    this.append(
      h('h2', {}, 'Feeds'),
      h('form', {
        onsubmit: async (e) => {
          e.preventDefault();
          say(this.note, 'following…');
          try {
            const r = await api({ op: 'follow', uri: uri.value.trim(), label: label.value.trim() || null });
            say(this.note, `following "${r.label}" (${r.owner})`, 'ok');
            uri.value = '';
            label.value = '';
            this.load();
          } catch (err) {
            say(this.note, err.message, 'error');
          }
        },
      },
      field('follow-uri', 'Feed URI', uri),
      field('follow-label', 'Call it', label, 'optional'),
      h('button', { type: 'submit', id: 'follow' }, 'Follow')),
      this.note,
      this.list,
      h('form', {
        onsubmit: async (e) => {
          e.preventDefault();
          say(this.cardOut, 'looking it up through the mixnet…');
          try {
            const c = await api({ op: 'lookup_card', query: finger.value.trim() });
            this.cardOut.replaceChildren(h('p', {}, `${c.label} (${c.id}), fingerprint ${c.fingerprint}`),
              field('card-uri', 'Identity URI', h('input', { readonly: true, value: c.uri })));
          } catch (err) {
            say(this.cardOut, err.message, 'error');
          }
        },
      },
      h('h3', {}, 'Find a published identity'),
      field('card-fp', 'Fingerprint (30 digits) or identity URI', finger),
      h('button', { type: 'submit' }, 'Look up')),
      this.cardOut,
    );
    this.load();
  }

  async load() {
    try {
      const { feeds } = await view('/view/feeds');
      this.list.replaceChildren(...feeds.map((f) => h('li', {}, h('strong', {}, f.label), ` · ${f.owner || '?'} · ${f.entries} entr${f.entries === 1 ? 'y' : 'ies'}, next slot ${f.next}`)));
      if (feeds.length === 0) this.list.append(h('li', { class: 'muted' }, 'No feed followed yet.'));
    } catch (e) {
      say(this.note, e.message, 'error');
    }
  }
}

customElements.define('mtos-publish', MtosPublish);
customElements.define('mtos-identities', MtosIdentities);
customElements.define('mtos-feeds', MtosFeeds);
