#!/usr/bin/env bash
# The mtos demo on an embedded default: a local testnet of real mtos-node
# processes with two clients exchanging messages through it, then a
# scripted session of the `mtos` command against a temporary home, then a
# simulated run. Everything lives in a temporary directory that is deleted
# afterwards, and the testnet is always stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin mtos --bin mtos-node
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
MTOS="$TARGET_DIR/debug/mtos"

HOME_DIR="$(mktemp -d -t mtos-demo.XXXXXX)"
TESTNET="$HOME_DIR/testnet"
cleanup() {
    for home in "$HOME_DIR" "$HOME_DIR/reader"; do
        if [ -S "$home/screen.sock" ]; then "$MTOS" --home "$home" screen stop >/dev/null 2>&1 || true; fi
    done
    if [ -f "$TESTNET/testnet.json" ]; then "$MTOS" testnet down --dir "$TESTNET" >/dev/null || true; fi
    rm -rf "$HOME_DIR"
}
trap cleanup EXIT
export MTOS_HOME="$HOME_DIR"
# A throwaway home: the passphrase comes from the environment and the
# scrypt cost is lowered so the demo is quick. Never do this with a real
# keychain.
export MTOS_PASSPHRASE="demo passphrase"
export MTOS_KDF_LOG_N=12

step() { printf '\n\033[1m$ mtos %s\033[0m\n' "$*"; "$MTOS" "$@"; }

echo "demo home: $HOME_DIR"

# A mixnet on this machine: an authority, a gateway, three layers of two
# mixes and a service node, each a real mtos-node process on 127.0.0.1.
step testnet up --dir "$TESTNET"
# Two clients (fresh identities each) exchange messages on the Loopix
# cover schedule; the gateway delivers to each at a constant rate.
step testnet demo --dir "$TESTNET" --messages 20

step id new --label alice
step id new --label "alice (private)" --private
step id new --label bob
step id list
BOB_URI="$("$MTOS" id show bob | awk '/^uri:/ {print $2}')"
step id compare alice "$BOB_URI"
step id show alice --qr
step id export alice -o "$HOME_DIR/alice.mtos-id"
step id rm alice --yes
step id import "$HOME_DIR/alice.mtos-id"
printf '\n\033[1m$ mtos item seal --text "hello from the demo" --tag demo --as alice\033[0m\n'
NOTE="$("$MTOS" item seal --text "hello from the demo" --tag demo --as alice)"
echo "$NOTE"
step item open "$NOTE"
head -c 300000 /dev/urandom > "$HOME_DIR/photo.jpg"
printf '\n\033[1m$ mtos item seal photo.jpg --text "a (random) photo" --reply-to mtos:item:... --as alice\033[0m\n'
PHOTO="$("$MTOS" item seal "$HOME_DIR/photo.jpg" --text "a (random) photo" --reply-to "$NOTE" --as alice)"
echo "$PHOTO"
step item inspect "$PHOTO"
printf '\n\033[1m$ mtos item seal --text "for bob only" --to bob --as alice\033[0m\n'
SECRET="$("$MTOS" item seal --text "for bob only" --to bob --as alice)"
echo "$SECRET"
step item open "$SECRET"
printf '\n\033[1m$ mtos id show nobody   (an error: exit code %s expected)\033[0m\n' 5
set +e
"$MTOS" id show nobody
echo "exit code: $?"
set -e

# Publishing through the mixnet: alice's home puts a text item and a 1 MiB
# file on the testnet's storage nodes (every request through the three
# layers to a service node, every answer back through a reply block); a
# second home, a reader who knows only the references, fetches both. Each
# command prints how long it took. Each home runs a screen: one session
# whose cover traffic runs from its start to its stop, whatever the
# commands do; they queue work into it.
READER="$HOME_DIR/reader"
step net use --testnet "$TESTNET"
"$MTOS" --home "$READER" net use --testnet "$TESTNET" >/dev/null
step screen start
printf '\n\033[1m$ mtos --home reader screen start\033[0m\n'
"$MTOS" --home "$READER" screen start
printf '\n\033[1m$ mtos publish --text "hello through the mixnet" --tag demo --as alice\033[0m\n'
POST="$("$MTOS" publish --text "hello through the mixnet" --tag demo --as alice)"
echo "$POST"
head -c 1048576 /dev/urandom > "$HOME_DIR/mebibyte.bin"
printf '\n\033[1m$ mtos publish mebibyte.bin --text "a mebibyte" --as alice\033[0m\n'
FILE="$("$MTOS" publish "$HOME_DIR/mebibyte.bin" --text "a mebibyte" --as alice)"
echo "$FILE"
printf '\n\033[1m$ mtos --home reader fetch mtos:item:...   (the text item)\033[0m\n'
"$MTOS" --home "$READER" fetch "$POST"
printf '\n\033[1m$ mtos --home reader fetch mtos:item:... -o fetched   (the 1 MiB file)\033[0m\n'
"$MTOS" --home "$READER" fetch "$FILE" -o "$HOME_DIR/fetched"
cmp "$HOME_DIR/mebibyte.bin" "$HOME_DIR"/fetched/part-1.* && echo "the fetched file is byte-identical"
printf '\n\033[1m$ mtos --home reader fetch mtos:item:...   (again: from the local store)\033[0m\n'
"$MTOS" --home "$READER" fetch "$FILE" -o "$HOME_DIR/again"
# Both items went into alice's feed; the reader follows it with the URI
# alice hands out, and reads it with one fixed-size probe per round.
FEED="$("$MTOS" id feed alice)"
printf '\n\033[1m$ mtos --home reader follow %s --label alice\033[0m\n' "${FEED:0:40}..."
"$MTOS" --home "$READER" follow "$FEED" --label alice
printf '\n\033[1m$ mtos --home reader feed\033[0m\n'
time "$MTOS" --home "$READER" feed
step screen status
step screen stop
"$MTOS" --home "$READER" screen stop >/dev/null
step testnet down --dir "$TESTNET"

# The mix engine those items will travel through, under virtual time: the
# small Loopix-like scenario (5 minutes of a 9-mix, 50-client network).
printf '\n\033[1m$ mtos-sim run simulations/scenarios/small.toml\033[0m\n'
cargo build --quiet -p mtos-sim
"$TARGET_DIR/debug/mtos-sim" run simulations/scenarios/small.toml --quiet --out "$HOME_DIR/sim" \
    | grep -E '"(scenario|events|cover_fraction_of_packets|entropy_bits_mean|effective_anonymity_set_mean|mean|p99)"'
echo "(mtos-sim run --out DIR also writes latency and entropy CSVs and SVG plots)"

echo
echo "demo finished; the temporary home is removed."
