//! `mtos`: the command of people publishing and reading on mtos.

mod common;
mod contact;
mod id;
mod import;
mod item;
mod net;
mod pgp;
mod screen;
mod testnet;
mod thread;
mod via;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mtos_client::{ClientError, Home};
use zeroize::Zeroize;

const AFTER_HELP: &str = "\
Environment:
  MTOS_HOME         the home directory (same as --home)
  MTOS_PASSPHRASE   the keychain passphrase, for scripts (otherwise asked on the terminal)
  MTOS_NEW_PASSPHRASE  the new passphrase for `mtos id passwd`, for scripts
  MTOS_KDF_LOG_N    scrypt work factor for keychains written by this run (tests and demos only:
                    a low value makes the keychain easy to crack)

Exit codes: 0 success, 1 failure, 2 usage, 3 wrong passphrase, 4 damaged or malformed input,
            5 not found, 6 would overwrite or duplicate something, 7 not a recipient

Example:
  mtos id new --label alice
  mtos id list";

/// mtos: publish and read signed, encrypted items over an anonymity network.
#[derive(Debug, Parser)]
#[command(name = "mtos", version, after_help = AFTER_HELP, propagate_version = true)]
struct Cli {
    /// Home directory holding the keychain and stores [default: the XDG data directory, e.g. ~/.local/share/mtos]
    #[arg(long, global = true, env = "MTOS_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Network commands open a session of their own instead of asking the
    /// running screen (for scripts): the gateway and the authority then see
    /// when you act.
    #[arg(long, global = true)]
    no_screen: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage your identities: create, list, show, compare, export, import, remove, passwd.
    ///
    /// An identity is an ed25519 signing key and an X25519 (age) encryption key
    /// under a label. Identities live in an encrypted keychain in the home
    /// directory; each has a 30-digit fingerprint and a `mtos:id:` URI to share.
    #[command(
        subcommand,
        after_help = "Example:\n  mtos id new --label alice\n  mtos id show alice --qr"
    )]
    Id(id::IdCommand),
    /// Keep other people's identities: add, list, show, verify, rename, remove.
    ///
    /// A contact is someone's public identity under your own label, with how
    /// you obtained it and whether you compared its safety number. `--to`
    /// accepts contact labels. A contact seen later with other keys is
    /// flagged, never silently replaced.
    #[command(
        subcommand,
        after_help = "Example:\n  mtos contact add mtos:id:... --label bob\n  mtos contact verify bob"
    )]
    Contact(contact::ContactCommand),
    /// Seal, open and inspect items: signed, encrypted posts and media.
    ///
    /// An item is text and files under one mtos:item: reference. Sealing signs it,
    /// encrypts it and stores its chunks in the local store; anyone holding the
    /// reference of a public item (or a recipient of a private one) can open it.
    #[command(
        subcommand,
        after_help = "Example:\n  mtos item seal --text \"hello\" --tag first\n  mtos item open mtos:item:..."
    )]
    Item(item::ItemCommand),
    /// Make an item from a saved web page or oEmbed response; seal it.
    ///
    /// Reads the page's own metadata (schema.org JSON-LD, microdata and
    /// RDFa; Open Graph; Twitter cards; an oEmbed response; <title> and
    /// meta tags), with site profiles for the sites that need more, and
    /// makes an item of its type: the title, description and address as
    /// text, the metadata as schema.org JSON-LD, the embed markup as a file
    /// (never run), the keywords as tags. Nothing is fetched: addresses are
    /// kept as data. Prints what it found on stderr and the reference on
    /// stdout; `mtos publish --import FILE` puts it on the network.
    #[command(
        after_help = "Example:\n  mtos import saved-page.html --oembed oembed.json --with-media video.mp4\n  mtos import --dry-run --json saved-page.html"
    )]
    Import(import::ImportOpts),
    /// Seal an item and put it on the network; print its reference once stored.
    ///
    /// Seals as `mtos item seal` does (same options), then puts every chunk
    /// through the mixnet: no node learns who stores it. The reference is
    /// printed only after the network's replicas acknowledged every chunk. An
    /// interrupted publish resumes when the same command is run again: the
    /// same item, only the chunks not yet stored.
    #[command(
        after_help = "Example:\n  mtos net use --testnet /tmp/tn\n  mtos publish --text \"sunset\" photo.jpg --tag sky"
    )]
    Publish(item::SealOpts),
    /// Fetch an item through the mixnet, verify it and open it.
    ///
    /// Chunks already in the local store are not fetched again; the rest come
    /// through many paths and service nodes at once, each checked against its
    /// locator. Then the item is opened as `mtos item open` does.
    #[command(after_help = "Example:\n  mtos fetch mtos:item:... -o photo.jpg")]
    Fetch {
        /// The mtos:item: reference.
        reference: String,
        /// Write the parts here instead of printing.
        #[arg(long, short, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Follow a feed: its follow URI (`mtos id feed` prints one's own).
    #[command(after_help = "Example:\n  mtos follow mtos:feed:... --label alice")]
    Follow {
        /// The mtos:feed: follow URI.
        uri: String,
        /// What to call it in the timeline [default: the author's id].
        #[arg(long)]
        label: Option<String>,
    },
    /// Read the followed feeds: new entries through the mixnet, then the timeline.
    ///
    /// Each poll round is four probes of one window each (a feed's or a
    /// decoy's), each to its own random service node, whatever the number
    /// of feeds followed (specs/feeds.md); the new items are fetched and
    /// the timeline printed newest first.
    #[command(after_help = "Example:\n  mtos feed")]
    Feed {
        /// Poll rounds.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
        /// Then keep polling, one round every SECS seconds (a fixed schedule),
        /// printing new entries as they come, until interrupted.
        #[arg(long, value_name = "SECS")]
        every: Option<u64>,
    },
    /// The screen: the always-on client that holds this home's one mixnet session.
    ///
    /// `mtos screen start` unlocks the keychain once and keeps a session with
    /// constant cover traffic through the same gateway for as long as it runs;
    /// publish, fetch, feed, follow and id publish/lookup then go through it,
    /// so nothing on the network starts or stops when you act.
    #[command(
        subcommand,
        after_help = "Example:\n  mtos screen start\n  mtos screen status\n  mtos screen stop"
    )]
    Screen(screen::ScreenCommand),
    /// Choose the network: a local testnet, or an authority's key and address.
    #[command(
        subcommand,
        after_help = "Example:\n  mtos net use --testnet /tmp/tn\n  mtos net show"
    )]
    Net(net::NetCommand),
    /// Run a local testnet: real mtos-node processes on 127.0.0.1.
    ///
    /// `up` starts a directory authority, gateways, mix layers and service
    /// nodes (each storing records) and waits until every node is listed in
    /// the network document; `demo` exchanges messages between two clients
    /// through it; `status` and `down` check and stop it. Point a home at it
    /// with `mtos net use --testnet DIR` to publish, fetch and follow.
    #[command(
        subcommand,
        after_help = "Example:\n  mtos testnet up --dir /tmp/tn\n  mtos testnet demo --dir /tmp/tn\n  mtos testnet down --dir /tmp/tn"
    )]
    Testnet(testnet::TestnetCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(mut output) => {
            // A closed pipe (`mtos id list | head -1`) is not an error.
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(output.as_bytes())
                .and_then(|()| stdout.flush());
            output.zeroize();
            match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("mtos: error: cannot write to stdout: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("mtos: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs a command; returns its standard output, which may hold secrets
/// (`mtos id export`) and is zeroized once written.
fn run(cli: Cli) -> Result<String, ClientError> {
    let via_screen = !cli.no_screen;
    let home = || Home::resolve(cli.home.clone());
    if cli.no_screen && cli.command.uses_network() {
        via::warn_one_shot();
    }
    match cli.command {
        // A testnet lives in its own directory, not in the home.
        Command::Testnet(cmd) => testnet::run(cmd),
        Command::Id(cmd) => id::run(&home()?, cmd, via_screen),
        Command::Contact(cmd) => contact::run(&home()?, cmd, via_screen),
        Command::Item(item::ItemCommand::Thread {
            reference,
            fetch: true,
        }) => {
            let home = home()?;
            let fetch = |uri: &str| -> Result<(), ClientError> {
                if via_screen {
                    via::fetch(&home, uri, None).map(drop)
                } else {
                    net::fetch(&home, uri, None).map(drop)
                }
            };
            thread::run(&home, &reference, Some(&fetch))
        }
        Command::Item(cmd) => item::run(&home()?, cmd),
        Command::Import(opts) => import::run(&home()?, opts),
        Command::Screen(cmd) => screen::run(&home()?, cmd),
        Command::Publish(opts) if via_screen => via::publish(&home()?, opts),
        Command::Publish(opts) => net::publish(&home()?, opts),
        Command::Fetch { reference, output } if via_screen => {
            via::fetch(&home()?, &reference, output.as_deref())
        }
        Command::Fetch { reference, output } => net::fetch(&home()?, &reference, output.as_deref()),
        Command::Net(cmd) => net::run(&home()?, cmd),
        Command::Follow { uri, label } => {
            let home = home()?;
            // Following touches no network: without a screen the book is
            // written here; with one (even with --no-screen), the screen
            // writes it, so the book has one writer.
            if mtos_client::screen::ScreenLock::held(&home).is_some() {
                via::follow(&home, &uri, label)
            } else {
                net::follow(&home, &uri, label)
            }
        }
        Command::Feed { rounds, every } if via_screen => via::feed(&home()?, rounds, every),
        Command::Feed { rounds, every } => net::feed(&home()?, rounds, every),
    }
}

impl Command {
    /// Whether it opens a session of its own with `--no-screen`.
    fn uses_network(&self) -> bool {
        match self {
            Command::Publish(_) | Command::Fetch { .. } | Command::Feed { .. } => true,
            Command::Id(cmd) => cmd.uses_network(),
            Command::Contact(cmd) => cmd.uses_network(),
            _ => false,
        }
    }
}
