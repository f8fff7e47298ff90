// The screen's API as the page speaks it (specs/screen.md §8): requests in
// the socket's envelope over POST /api, answered as lines of JSON; views
// under /view. Every request carries the tab's session secret as a header
// (no cookie: a host's cookies go to all its ports).

export const API_VERSION = 1;
const SESSION = 'mtos-session';

function headers(json) {
  const h = { 'X-Mtos-Session': sessionStorage.getItem(SESSION) || '' };
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

// Trades the one-time token in the address's fragment (which the browser
// never sends anywhere) for this tab's session, and takes the token out of
// the address bar and history.
export async function signIn() {
  const m = location.hash.match(/^#token=([a-z2-7]+)$/);
  if (m) {
    history.replaceState(null, '', location.pathname);
    const res = await fetch('/session', { method: 'POST', headers: { 'X-Mtos-Token': m[1] } });
    if (!res.ok) throw new ApiError('refused', (await res.text()).trim());
    sessionStorage.setItem(SESSION, (await res.json()).session);
  }
  if (!sessionStorage.getItem(SESSION)) {
    throw new ApiError('refused', 'Open the address `mtos screen web` prints (each is good once, for ten minutes).');
  }
}

// A picture or file the screen serves to the session only, as a blob: URL.
export async function blobUrl(path) {
  const res = await fetch(path, { headers: headers(false) });
  if (!res.ok) throw new ApiError(String(res.status), (await res.text()).trim());
  return URL.createObjectURL(await res.blob());
}

export class ApiError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

// Sends one API request; `onEvent` hears its events; resolves with the
// final reply, rejects with an ApiError. `signal` aborts it (a watch).
export async function api(request, onEvent = () => {}, signal = undefined) {
  const res = await fetch('/api', {
    method: 'POST',
    headers: headers(true),
    body: JSON.stringify({ api: API_VERSION, request }),
    signal,
  });
  if (!res.ok) throw new ApiError('refused', (await res.text()).trim());
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      if (line.event) onEvent(line.event);
      else if (line.ok) return line.ok;
      else if (line.error) throw new ApiError(line.error.kind, line.error.message);
    }
  }
  throw new ApiError('failure', 'the screen ended the answer early');
}

async function answer(res) {
  const text = await res.text();
  if (!res.ok) {
    let parsed = null;
    try { parsed = JSON.parse(text); } catch { /* plain text */ }
    const e = new ApiError(String(res.status), parsed ? JSON.stringify(parsed) : text.trim());
    e.status = res.status;
    e.body = parsed;
    throw e;
  }
  return JSON.parse(text);
}

export async function view(path) {
  return answer(await fetch(path, { headers: headers(false) }));
}

export async function post(path, body) {
  return answer(await fetch(path, { method: 'POST', headers: headers(true), body: JSON.stringify(body) }));
}

// Sends a file's bytes as the body of a POST (a photo of a QR code).
export async function postBytes(path, blob) {
  const h = headers(false);
  h['Content-Type'] = 'application/octet-stream';
  return answer(await fetch(path, { method: 'POST', headers: h, body: blob }));
}

// Uploads one file; `progress(sent, total)` follows it. XMLHttpRequest:
// fetch() reports no upload progress.
export function upload(file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/upload');
    xhr.setRequestHeader('X-Mtos-Session', sessionStorage.getItem(SESSION) || '');
    xhr.setRequestHeader('X-File-Name', file.name.replace(/[^\x20-\x7e]/g, '_'));
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => progress(e.loaded, e.total);
    xhr.onload = () => {
      if (xhr.status === 200) resolve(JSON.parse(xhr.responseText));
      else reject(new ApiError(String(xhr.status), xhr.responseText.trim()));
    };
    xhr.onerror = () => reject(new ApiError('failure', 'the upload failed'));
    xhr.send(file);
  });
}

// Builds an element; attributes are set as properties or attributes,
// children appended as nodes or text (never parsed as markup: an item's
// text is data).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function when(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleString();
}

export function say(el, text, kind = 'info') {
  el.textContent = text;
  el.dataset.kind = kind;
}
