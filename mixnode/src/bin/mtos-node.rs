//! `mtos-node`: the relay daemon of mtos. So far it prepares and checks a
//! node's configuration and keys; serving (`run`) comes with the
//! transport.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mtos_crypto::{Identity, Label, Visibility};
use mtos_mixnode::config::{NodeConfig, Role};

/// File names inside the node directory.
const CONFIG_FILE: &str = "mtos-node.toml";
const IDENTITY_FILE: &str = "identity.key";

/// mtos-node: an mtos mix node for volunteer relay operators.
#[derive(Debug, Parser)]
#[command(name = "mtos-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Gateway,
    Mix,
    Service,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node directory: a commented config and a fresh identity key.
    ///
    /// Never overwrites an existing config or key: if either exists, nothing
    /// is written.
    ///
    /// Example: mtos-node init --dir /var/lib/mtos-node --role mix --layer 2
    Init {
        /// The node directory.
        #[arg(long, default_value = "mtos-node")]
        dir: PathBuf,
        /// The node's role.
        #[arg(long, value_enum, default_value = "mix")]
        role: RoleArg,
        /// Mix layer (1, 2 or 3) for --role mix.
        #[arg(long)]
        layer: Option<u8>,
    },
    /// Check a config file and its keys without starting anything.
    ///
    /// Example: mtos-node check --config /var/lib/mtos-node/mtos-node.toml
    Check {
        /// The config file.
        #[arg(long, default_value = "mtos-node/mtos-node.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtos-node: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Init { dir, role, layer } => init(&dir, role, layer),
        Command::Check { config } => check(&config),
    }
}

fn create_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn init(dir: &Path, role: RoleArg, layer: Option<u8>) -> Result<(), String> {
    let role = match role {
        RoleArg::Gateway => Role::Gateway,
        RoleArg::Mix => Role::Mix,
        RoleArg::Service => Role::Service,
    };
    let layer = match (role, layer) {
        (Role::Mix, None) => Some(1),
        (Role::Mix, Some(l @ 1..=3)) => Some(l),
        (Role::Mix, Some(l)) => return Err(format!("--layer {l}: a mix layer is 1, 2 or 3")),
        (_, Some(_)) => return Err("--layer is only for --role mix".into()),
        (_, None) => None,
    };
    let config_path = dir.join(CONFIG_FILE);
    let keys = dir.join("keys");
    let key_path = keys.join(IDENTITY_FILE);
    for existing in [&config_path, &key_path] {
        if existing.exists() {
            return Err(format!(
                "{} exists; refusing to overwrite (nothing was written)",
                existing.display()
            ));
        }
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(&keys)
        .map_err(|e| format!("{}: {e}", keys.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let label = Label::new("mtos-node").map_err(|e| e.to_string())?;
    let identity = Identity::generate(&mut rand::rng(), label, Visibility::Public, now);
    // The key first: a config without a key is harmless, the reverse would
    // invite a second init that replaces the key.
    create_private(&key_path, identity.export_secret().as_bytes())?;
    create_private(&config_path, NodeConfig::template(role, layer).as_bytes())?;
    println!("created {}", config_path.display());
    println!(
        "created {} (owner-only; back it up, never share it)",
        key_path.display()
    );
    println!("node key: {}", identity.verify_key());
    Ok(())
}

fn check(config_path: &Path) -> Result<(), String> {
    let text =
        fs::read_to_string(config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config = NodeConfig::parse(&text, config_path).map_err(|e| e.to_string())?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let key_path = base.join(&config.node.keys).join(IDENTITY_FILE);
    let key_text =
        fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let identity =
        Identity::import_secret(&key_text).map_err(|e| format!("{}: {e}", key_path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key_path)
            .map_err(|e| format!("{}: {e}", key_path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{}: readable by others (mode {:o}); chmod 600 it",
                key_path.display(),
                mode & 0o777
            ));
        }
    }
    println!(
        "config ok: {:?} node on network {:?}",
        config.node.role, config.network.id
    );
    if config.network.authority.is_empty() {
        println!("note: network.authority is empty; the node cannot verify network documents yet");
    }
    println!("node key: {}", identity.verify_key());
    Ok(())
}
