//! `mtos net`, `mtos publish` and `mtos fetch`: the network this home
//! uses, and items put on it and read from it through the mixnet.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use mtos_client::mixnet::{NetworkConfig, Session};
use mtos_client::store::{ChunkStore, STORE_DIR};
use mtos_client::transfer::{self, TransferOptions, TransferReport};
use mtos_client::{ClientError, Home, testnet};
use mtos_crypto::item::ItemRef;

use crate::item::{SealOpts, open_cmd, seal_into_store};

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Use the local testnet in DIR (as `mtos testnet up` made it).
    ///
    /// Example: mtos net use --testnet /tmp/tn
    Use {
        /// The testnet directory.
        #[arg(long, value_name = "DIR")]
        testnet: PathBuf,
    },
    /// Use a network: its id, its directory authority's key and address.
    ///
    /// Example: mtos net set mtos-main 5f0c…e1 /dns4/dir.example.org/tcp/9400
    Set {
        /// The network id.
        network: String,
        /// The authority's ed25519 key, 64 hex digits.
        authority_key: String,
        /// The authority's libp2p multiaddr.
        authority_addr: String,
    },
    /// Show the network this home uses.
    Show,
}

pub fn run(home: &Home, cmd: NetCommand) -> Result<String, ClientError> {
    let config = match cmd {
        NetCommand::Show => return Ok(describe(&home.network()?)),
        NetCommand::Use { testnet } => testnet::load(&testnet)?.network_config()?,
        NetCommand::Set {
            network,
            authority_key,
            authority_addr,
        } => NetworkConfig::parse(&network, &authority_key, &authority_addr, "mtos net set")?,
    };
    home.set_network(&config)?;
    Ok(describe(&config))
}

fn describe(c: &NetworkConfig) -> String {
    format!(
        "network:   {}\nauthority: {}\naddress:   {}\n",
        c.network,
        data_encoding::HEXLOWER.encode(&c.authority_key),
        c.authority_addr
    )
}

fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ClientError::Network(format!("cannot start the runtime: {e}")))
}

/// A progress bar on stderr (drawn only on a terminal).
fn bar(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks, {elapsed} elapsed")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

fn summary(verb: &str, report: &TransferReport, started: Instant) -> String {
    format!(
        "{verb} {} chunks ({} over the network, {} requests) in {:.1} s",
        report.chunks,
        report.transferred,
        report.requests,
        started.elapsed().as_secs_f64()
    )
}

/// Directory of the home holding the references of publishes not yet
/// finished, one file per command (named by [`publish_digest`]).
const PENDING_DIR: &str = "pending";

/// What identifies one `mtos publish` command: its options and the
/// contents of its files. The same command run again finds the item it
/// sealed the first time and resumes it.
fn publish_digest(opts: &SealOpts) -> Result<String, ClientError> {
    let mut h = blake3::Hasher::new_derive_key("mtos publish command v1");
    let mut field = |name: &str, value: &[u8]| {
        for part in [name.as_bytes(), value] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part);
        }
    };
    for t in &opts.text {
        field("text", t.as_bytes());
    }
    for path in &opts.files {
        let mut file = blake3::Hasher::new();
        file.update_reader(std::fs::File::open(path).map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?)
        .map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?;
        field("file", path.as_os_str().as_encoded_bytes());
        field("file-bytes", file.finalize().as_bytes());
    }
    field(
        "type",
        opts.content_type.as_deref().unwrap_or("").as_bytes(),
    );
    for (name, list) in [
        ("tag", &opts.tag),
        ("reply-to", &opts.reply_to),
        ("remix-of", &opts.remix_of),
        ("reblog", &opts.reblog),
        ("to", &opts.to),
    ] {
        for v in list {
            field(name, v.as_bytes());
        }
    }
    field("anonymous", &[u8::from(opts.anonymous)]);
    field("as", opts.as_id.as_deref().unwrap_or("").as_bytes());
    Ok(h.finalize().to_hex().to_string())
}

/// `mtos publish`: seal, put every chunk through the mixnet, and print
/// the reference only once the replicas hold every chunk. The reference
/// of an unfinished publish waits in the home's `pending` directory
/// (owner-only, like the rest of the home), so running the same command
/// again resumes the same item instead of sealing a new one.
pub fn publish(home: &Home, opts: SealOpts) -> Result<String, ClientError> {
    let config = home.network()?;
    let pending_dir = home.dir().join(PENDING_DIR);
    let pending = pending_dir.join(publish_digest(&opts)?);
    home.ensure()?;
    // A pending reference whose chunks are no longer in the local store
    // (the store was removed) cannot be resumed: the item is sealed anew.
    let resumed = std::fs::read_to_string(&pending)
        .ok()
        .and_then(|uri| ItemRef::from_uri(uri.trim()).ok())
        .filter(|r| {
            ChunkStore::open(&home.dir().join(STORE_DIR))
                .is_ok_and(|store| transfer::item_chunks(&store, r).is_ok())
        });
    let reference = match resumed {
        Some(r) => {
            eprintln!("resuming the unfinished publish of this item");
            r
        }
        None => {
            let r = seal_into_store(home, opts)?;
            std::fs::create_dir_all(&pending_dir).map_err(|source| ClientError::Io {
                path: pending_dir.clone(),
                source,
            })?;
            let _ = std::fs::remove_file(&pending);
            crate::id::write_new_private_file(&pending, r.to_uri().as_bytes())?;
            r
        }
    };
    let store = ChunkStore::open(&home.dir().join(STORE_DIR))?;
    put(&config, &store, &reference)?;
    let _ = std::fs::remove_file(&pending);
    Ok(format!("{}\n", reference.to_uri()))
}

fn put(
    config: &NetworkConfig,
    store: &ChunkStore,
    reference: &ItemRef,
) -> Result<TransferReport, ClientError> {
    runtime()?.block_on(async {
        let started = Instant::now();
        let session = Session::connect(config).await?;
        let bar = bar("publishing");
        let report = transfer::publish(
            &session,
            store,
            reference,
            TransferOptions::default(),
            &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        )
        .await;
        bar.finish_and_clear();
        let report = report?;
        eprintln!("{}", summary("published", &report, started));
        Ok(report)
    })
}

/// `mtos fetch`: fetch what the local store lacks of the item through
/// the mixnet, then open it as `mtos item open` does.
pub fn fetch(home: &Home, reference: &str, output: Option<&Path>) -> Result<String, ClientError> {
    let parsed = ItemRef::from_uri(reference)?;
    let config = home.network()?;
    home.ensure()?;
    let store = ChunkStore::open(&home.dir().join(STORE_DIR))?;
    // Held already: open it without touching the network.
    let held = mtos_crypto::item::seal::missing(
        &mut &store,
        &parsed,
        mtos_crypto::item::seal::MAX_SEALED_LEN,
    )?
    .is_empty();
    if held {
        eprintln!("the item is in the local store: nothing to fetch");
        drop(store);
        return open_cmd(home, reference, output);
    }
    runtime()?.block_on(async {
        let started = Instant::now();
        let session = Session::connect(&config).await?;
        let bar = bar("fetching");
        let report = transfer::fetch(
            &session,
            &store,
            &parsed,
            TransferOptions::default(),
            &|done, known| {
                bar.set_length(known);
                bar.set_position(done);
            },
        )
        .await;
        bar.finish_and_clear();
        let report = report?;
        eprintln!("{}", summary("fetched", &report, started));
        Ok::<_, ClientError>(())
    })?;
    drop(store);
    open_cmd(home, reference, output)
}
