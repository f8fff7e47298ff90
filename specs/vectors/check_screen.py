# Independent derivation of specs/vectors/screen.json (specs/screen.md §4,
# the screen's local API, version 1): each line below is built from the
# spec's table, field by field, and compared (as JSON values) with the
# vectors; `--write` writes them. The Rust test
# `screen::api::tests::vectors_round_trip` parses each line into the
# library's types and serializes it back to the same value.
#   python3 specs/vectors/check_screen.py [--write]
import json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
REF = "mtos:item:aeab5kep4w5cscepwah6oshydgumjy6wkx7ljwp6xmbrgvs2tyxnhpmctzp22iarzem6dp62wi3i654fn26d7mxi5sh5c6qqoee6q7awia"


def request(op, **fields):
    r = {"op": op}
    r.update(fields)
    return {"api": 1, "request": r}


seal = {
    "text": ["sunset"], "files": ["/home/alice/photo.jpg"], "content_type": None,
    "tag": ["sky"], "reply_to": [], "remix_of": [], "reblog": [], "to": [],
    "anonymous": False, "as_id": "alice",
}
requests = [
    ("status", request("status")),
    ("stop", request("stop")),
    ("publish", request("publish", seal=seal)),
    ("fetch", request("fetch", reference=REF)),
    ("follow", request("follow", uri="mtos:feed:abc", label="alice")),
    ("follow without a label", request("follow", uri="mtos:feed:abc", label=None)),
    ("poll", request("poll", rounds=3)),
    ("publish_card", request("publish_card", id="alice")),
    ("lookup_card", request("lookup_card", query="45982 29914 17724 09762 93147 21766")),
    ("jobs", request("jobs")),
    ("attach", request("attach", job=7)),
    ("cancel", request("cancel", job=7)),
    ("watch", request("watch")),
    ("reconnect", request("reconnect")),
    ("window_now", request("window_now")),
    ("web_address", request("web_address")),
    ("contact_invite", request("contact_invite", id="alice", wait_secs=300)),
    ("contact_invite as the only identity", request("contact_invite", id=None, wait_secs=None)),
    ("contact_accept", request("contact_accept", code="7-guitar-orbit", id=None, label="Bob B.")),
    ("pair_keys", request("pair_keys", wait_secs=300, new_passphrase=None)),
    ("pair_keys into a new keychain", request("pair_keys", wait_secs=None, new_passphrase="a long passphrase")),
    ("send_keys", request("send_keys", code="31-abandon-ability-able-zoo", ids=["alice"])),
    ("publish with a display component", request("publish", seal=dict(
        seal, text=["3 9 4"], files=[], tag=[], component=REF))),
]

job = {"job": 3, "kind": "publish", "reference": REF, "state": "running", "done": 12, "total": 85}
status = {
    "reply": "status", "pid": 4242, "network": "mtos-testnet", "gateway": "af" * 32,
    "gateway_addrs": ["/ip4/127.0.0.1/tcp/30735"],
    "peer_id": "12D3KooWG4bzFMu7SijkPEEEvCih3v6s9RMJ9YieVPFpeiXGN4UA",
    "up_secs": 600, "connected_secs": 598, "sessions": 1, "sent_real": 86,
    "sent_cover": 2314, "loops_returned": 580, "link_breaks": 0, "slots_skipped": 0,
    "epoch": 12,
    "jobs": [job], "follows": 2, "poll_every_secs": 300, "last_poll": 1796486400,
    "store_chunks": 85, "store_bytes": 419430,
    "windows": {"ticket": 4123, "granted": True, "in_window": False,
                "next_change_ms": 1796486430000, "origin_ms": 1796485800000},
}
transfer = {
    "reply": "transfer", "job": 3, "reference": REF, "chunks": 85, "transferred": 73,
    "requests": 80, "secs": 8.5, "feed_entry": ["alice", 0],
}
answers = [
    ("event: queued", {"event": {"event": "queued", "job": 3, "joined": False}}),
    ("event: note", {"event": {"event": "note", "text": "resuming the unfinished publish of this item"}}),
    ("event: progress", {"event": {"event": "progress", "job": 3, "done": 12, "total": 85}}),
    ("event: entry", {"event": {"event": "entry", "feed": "alice", "n": 2, "time_ms": 1796486400000,
                                "item": REF, "fetched": True}}),
    ("event: code", {"event": {"event": "code", "code": "7-guitar-orbit", "expires_secs": 300}}),
    ("ok: done", {"ok": {"reply": "done"}}),
    ("ok: status", {"ok": status}),
    ("ok: transfer", {"ok": transfer}),
    ("ok: transfer from the store", {"ok": dict(transfer, job=0, transferred=0, requests=0,
                                                secs=0.0, feed_entry=None)}),
    ("ok: followed", {"ok": {"reply": "followed", "label": "alice", "owner": "9188de6a89dcebf6"}}),
    ("ok: polled", {"ok": {"reply": "polled", "new": 1, "refused": 0, "asked_again": 0, "follows": 2}}),
    ("ok: card_published", {"ok": {"reply": "card_published", "label": "alice",
                                   "fingerprint": "45982 29914 17724 09762 93147 21766",
                                   "digits": "459822991417724097629314721766",
                                   "by_key": 0, "by_fingerprint": 0}}),
    ("ok: card", {"ok": {"reply": "card", "label": "alice", "id": "9188de6a89dcebf6",
                         "fingerprint": "45982 29914 17724 09762 93147 21766",
                         "uri": "mtos:id:abc", "feed": "mtos:feed:abc", "time_ms": 1796486400000}}),
    ("ok: jobs", {"ok": {"reply": "jobs", "jobs": [job]}}),
    ("ok: paired", {"ok": {"reply": "paired", "identities": ["alice"], "contacts": 1,
                           "skipped": ["identity \"bob\": identity 9188de6a89dcebf6 is already in the keychain"]}}),
    ("ok: keys_sent", {"ok": {"reply": "keys_sent", "identities": ["alice"], "contacts": 1}}),
    ("ok: exchanged", {"ok": {"reply": "exchanged", "label": "Bob B.", "outcome": "added",
                              "card": {"label": "bob", "id": "9188de6a89dcebf6",
                                       "fingerprint": "45982 29914 17724 09762 93147 21766",
                                       "uri": "mtos:id:abc", "feed": "mtos:feed:abc",
                                       "time_ms": 1796486400000}}}),
    ("ok: web_address", {"ok": {"reply": "web_address", "address":
        "http://127.0.0.1:8737/#token=" + "a" * 52}}),
]
kinds = [("bad_request", 4), ("version", 4), ("bad_input", 4), ("not_found", 5),
         ("conflict", 6), ("not_recipient", 7), ("network", 1), ("busy", 1),
         ("cancelled", 1), ("failure", 1)]
for kind, _ in kinds:
    answers.append((f"error: {kind}", {"error": {"kind": kind, "message": f"a {kind} error"}}))

derived = {
    "api": 1,
    "max_line": 65536,
    "max_answer_line": 1048576,
    "requests": [{"name": n, "line": json.dumps(v, separators=(",", ":"))} for n, v in requests],
    "answers": [{"name": n, "line": json.dumps(v, separators=(",", ":"))} for n, v in answers],
    "exit_codes": {k: c for k, c in kinds},
}
path = os.path.join(HERE, "screen.json")
if "--write" in sys.argv:
    with open(path, "w") as f:
        json.dump(derived, f, indent=1)
        f.write("\n")
stored = json.load(open(path))
assert stored["api"] == derived["api"] and stored["max_line"] == derived["max_line"]
assert stored["max_answer_line"] == derived["max_answer_line"]
assert stored["exit_codes"] == derived["exit_codes"]
for part in ("requests", "answers"):
    assert len(stored[part]) == len(derived[part]), part
    for s, d in zip(stored[part], derived[part]):
        assert s["name"] == d["name"], (s["name"], d["name"])
        assert json.loads(s["line"]) == json.loads(d["line"]), s["name"]
        limit = stored["max_line"] if part == "requests" else stored["max_answer_line"]
        assert len(s["line"].encode()) + 1 <= limit, s["name"]
print(f"screen.json: {len(derived['requests'])} requests, {len(derived['answers'])} answers re-derived")
