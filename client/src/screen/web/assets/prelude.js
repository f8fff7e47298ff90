(function (g) {
  'use strict';
  // The mtos component prelude (specs/item.md §6): the first statements of
  // the one script a component's frame may run. The global object is
  // reached as the script's `this`, which no declaration of the
  // component's can shadow.
  var gone = ['RTCPeerConnection', 'webkitRTCPeerConnection', 'RTCDataChannel',
    'RTCSessionDescription', 'RTCIceCandidate', 'RTCRtpTransceiver', 'RTCRtpSender',
    'RTCRtpReceiver', 'RTCDtlsTransport', 'RTCIceTransport', 'RTCSctpTransport',
    'RTCCertificate', 'RTCEncodedAudioFrame', 'RTCEncodedVideoFrame', 'RTCError',
    'RTCPeerConnectionIceEvent', 'RTCDTMFSender'];
  for (var i = 0; i < gone.length; i++) {
    try { delete g[gone[i]]; } catch (_) { /* not there */ }
  }
  var port = null;
  var item = null;
  var listeners = [];
  // What the component asks before the page has handed it its channel,
  // sent once it has (at most 16 asks).
  var waiting = [];
  function ask(message) {
    if (port) port.postMessage(message);
    else if (waiting.length < 16) waiting.push(message);
  }
  g.addEventListener('message', function (e) {
    if (port || e.source !== g.parent) return;
    var d = e.data;
    if (!d || d.mtos !== 1 || d.type !== 'item' || !e.ports || !e.ports[0]) return;
    port = e.ports[0];
    item = d.item;
    for (var k = 0; k < waiting.length; k++) port.postMessage(waiting[k]);
    waiting = [];
    for (var j = 0; j < listeners.length; j++) {
      try { listeners[j](item); } catch (err) { console.error(err); }
    }
  });
  var api = {
    // Calls `f` with the item once it has come (at once if it has).
    onitem: function (f) {
      if (typeof f !== 'function') return;
      listeners.push(f);
      if (item) f(item);
    },
    // Asks the page to make the frame `px` pixels high.
    resize: function (px) { ask({ type: 'height', px: Number(px) }); },
    // Asks the page to offer the person the item's reference `index`.
    open: function (index) { ask({ type: 'open', ref: Number(index) }); },
  };
  Object.defineProperty(g, 'mtos', { value: Object.freeze(api), writable: false, configurable: false });
})(this);
