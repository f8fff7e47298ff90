// Contacts (specs/identity.md §9): the list with each contact's safety
// numbers, verifying one after comparing, a flagged contact's change,
// adding one from a URI or a photo of its QR code, and exchanging
// identities by short code through the mixnet (specs/transfer.md).
import { api, view, post, postBytes, h, say } from './api.js';

function field(id, label, input, hint) {
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null);
}

// What an exchange's end says, by its outcome.
function outcome(r) {
  if (r.outcome === 'changed') return [`"${r.label}" answered with keys other than the ones you have for them: the contact is flagged, its old keys kept`, 'error'];
  if (r.outcome === 'verified') return [`"${r.label}" was a contact already: now verified by the code`, 'ok'];
  return [`"${r.label}" added, verified by the code`, 'ok'];
}

function date(secs) {
  return secs ? new Date(secs * 1000).toLocaleString() : '';
}

class MtosContacts extends HTMLElement {
  connectedCallback() {
    this.note = h('p', { class: 'note', 'aria-live': 'polite', id: 'contacts-note' });
    this.list = h('div', { class: 'cards', id: 'contact-list' });
    this.append(h('h2', {}, 'Contacts'), this.note, this.list,
      this.exchangeForms(), this.addForm(), this.qrForm());
    this.load();
  }

  async load() {
    try {
      const { contacts } = await view('/view/contacts');
      this.list.replaceChildren(...contacts.map((c) => this.card(c)));
      if (contacts.length === 0) this.list.append(h('p', { class: 'muted' }, 'No contact yet.'));
    } catch (e) {
      say(this.note, e.message, 'error');
    }
  }

  numbers(list) {
    return h('ul', { class: 'safety' }, list.map((n) =>
      h('li', {}, `with ${n.as}: `, h('strong', {}, n.number))));
  }

  card(c) {
    const note = h('p', { class: 'note', 'aria-live': 'polite' });
    const change = async (body, done) => {
      try {
        await post('/view/contacts/change', { contact: c.id, ...body });
        await this.load();
        say(this.note, done, 'ok');
      } catch (e) {
        say(note, e.message, 'error');
      }
    };
    const flagged = c.changed
      ? h('div', { class: 'flag', role: 'alert' },
        h('p', {}, h('strong', {}, 'Keys changed. '),
          'This contact was seen with another encryption key. Nothing is sealed to it until you compare the new safety number with them and accept the change, or remove the contact.'),
        h('p', {}, 'New fingerprint: ', h('span', { class: 'fingerprint' }, c.changed.fingerprint)),
        this.numbers(c.changed.safety_numbers),
        h('button', { type: 'button', onclick: () => change({ accept_change: true, fingerprint: c.changed.fingerprint }, `"${c.label}" now has its new keys`) }, 'The new numbers match: accept the change'))
      : null;
    return h('section', { class: 'card contact', 'aria-label': `contact ${c.label}`, 'data-id': c.id },
      h('h3', {}, c.label, ' ',
        h('span', { class: 'pill' }, c.changed ? 'keys changed' : (c.verified ? 'verified' : 'not verified'))),
      h('dl', {},
        h('dt', {}, 'Their label'), h('dd', {}, c.their_label),
        h('dt', {}, 'Obtained by'), h('dd', {}, c.source),
        h('dt', {}, 'Verified'), h('dd', {}, c.verified ? date(c.verified) : 'no'),
        h('dt', {}, 'Fingerprint'), h('dd', { class: 'fingerprint' }, c.fingerprint),
        h('dt', {}, 'Safety numbers'), h('dd', {}, this.numbers(c.safety_numbers)),
        h('dt', {}, 'Identity URI'), h('dd', {}, h('input', { readonly: true, value: c.uri, 'aria-label': `identity URI of ${c.label}` }))),
      flagged,
      h('p', {},
        !c.verified && !c.changed
          ? h('button', { type: 'button', onclick: () => change({ fingerprint: c.fingerprint }, `"${c.label}" is verified`) }, 'The numbers match: mark verified')
          : null,
        ' ',
        h('button', {
          type: 'button',
          onclick: () => { if (confirm(`Remove the contact "${c.label}"?`)) change({ remove: true }, `"${c.label}" removed`); },
        }, 'Remove')),
      note);
  }

  exchangeForms() {
    const out = h('p', { class: 'note', 'aria-live': 'polite', id: 'exchange-note' });
    const code = h('output', { class: 'code', id: 'invite-code' });
    const invite = h('button', { type: 'button', id: 'invite' }, 'Make a code');
    invite.addEventListener('click', async () => {
      invite.disabled = true;
      say(out, 'putting the invitation on the network…');
      try {
        const r = await api({ op: 'contact_invite', id: null, wait_secs: null }, (e) => {
          if (e.event === 'code') {
            code.textContent = e.code;
            say(out, `Read this code to the other person; they enter it under "Enter a code" within ${Math.ceil(e.expires_secs / 60)} minutes.`);
          }
        });
        code.textContent = '';
        await this.load();
        say(out, ...outcome(r));
      } catch (e) {
        code.textContent = '';
        say(out, e.message, 'error');
      } finally {
        invite.disabled = false;
      }
    });
    const typed = h('input', { name: 'code', autocomplete: 'off', placeholder: '7-guitar-orbit' });
    const label = h('input', { name: 'label', autocomplete: 'off' });
    const accept = h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        const button = accept.querySelector('button');
        button.disabled = true;
        say(out, 'exchanging through the mixnet…');
        try {
          const r = await api({ op: 'contact_accept', code: typed.value, id: null, label: label.value.trim() || null });
          typed.value = '';
          await this.load();
          say(out, ...outcome(r));
        } catch (err) {
          say(out, err.message, 'error');
        } finally {
          button.disabled = false;
        }
      },
    },
    field('accept-code', 'Enter a code', typed, 'The code someone read to you: a number and two words.'),
    field('accept-label', 'Call them (optional)', label),
    h('button', { type: 'submit', id: 'accept' }, 'Exchange'));
    return h('section', { 'aria-label': 'exchange by short code' },
      h('h3', {}, 'Exchange identities by short code'),
      h('p', { class: 'muted' }, 'Both of you end with each other\'s keys, verified: only someone holding the code could answer. The network carries the exchange and never learns the keys or who you are.'),
      h('p', {}, invite, ' ', code), out, accept);
  }

  addForm() {
    const uri = h('input', { name: 'uri', autocomplete: 'off', placeholder: 'mtos:id:…' });
    const label = h('input', { name: 'label', autocomplete: 'off' });
    return h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const r = await post('/view/contacts', { uri: uri.value, label: label.value.trim() || null });
          uri.value = '';
          label.value = '';
          await this.load();
          say(this.note, r.added ? `"${r.label}" added: compare the safety number, then mark it verified` : `"${r.label}" is already a contact with these keys`, 'ok');
        } catch (err) {
          say(this.note, err.message, 'error');
        }
      },
    },
    h('h3', {}, 'Add from an identity URI'),
    field('add-uri', 'Their identity URI', uri),
    field('add-label', 'Call them (optional)', label),
    h('button', { type: 'submit' }, 'Add'));
  }

  qrForm() {
    const file = h('input', { type: 'file', accept: 'image/png,image/jpeg' });
    const label = h('input', { name: 'label', autocomplete: 'off' });
    return h('form', {
      onsubmit: async (e) => {
        e.preventDefault();
        if (!file.files.length) return;
        say(this.note, 'reading the QR code…');
        try {
          const q = label.value.trim() ? `?label=${encodeURIComponent(label.value.trim())}` : '';
          const r = await postBytes(`/view/contacts/qr${q}`, file.files[0]);
          file.value = '';
          await this.load();
          say(this.note, r.added ? `"${r.label}" added from the QR code: compare the safety number, then mark it verified` : `"${r.label}" is already a contact with these keys`, 'ok');
        } catch (err) {
          say(this.note, err.message, 'error');
        }
      },
    },
    h('h3', {}, 'Add from a photo of a QR code'),
    field('qr-image', 'Photo or screenshot (PNG or JPEG)', file),
    field('qr-label', 'Call them (optional)', label),
    h('button', { type: 'submit', id: 'qr-add' }, 'Read and add'));
  }
}

customElements.define('mtos-contacts', MtosContacts);
