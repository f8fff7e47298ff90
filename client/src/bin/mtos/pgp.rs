//! `mtos id export --openpgp`, `mtos id import key.asc`, `mtos id sign`
//! and `mtos id verify`: identities as OpenPGP keys, for GnuPG
//! (`mtos_client::openpgp`).

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use mtos_client::openpgp;
use mtos_client::{ClientError, Home, passphrase};
use mtos_crypto::Label;

use crate::common::{modify, now, open, write_new_file};

/// A signature or certificate file larger than this is neither.
const MAX_ARMORED: u64 = 1 << 20;

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ClientError> {
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut raw))
        .map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })?;
    if raw.len() as u64 > limit {
        return Err(ClientError::TooLarge {
            path: path.display().to_string(),
            limit,
        });
    }
    Ok(raw)
}

fn read_text(path: &Path) -> Result<String, ClientError> {
    String::from_utf8(read_limited(path, MAX_ARMORED)?)
        .map_err(|_| openpgp::OpenPgpError::NotOpenPgp("an armored OpenPGP file").into())
}

/// `mtos id export ID --openpgp`.
pub fn export(home: &Home, query: &str, output: Option<&Path>) -> Result<String, ClientError> {
    let keychain = open(home)?;
    let identity = keychain.find(query)?;
    let cert = openpgp::certificate(identity)?;
    match output {
        Some(path) => {
            write_new_file(path, cert.as_bytes())?;
            eprintln!(
                "wrote the OpenPGP certificate of \"{}\" ({}) to {}",
                identity.label(),
                openpgp::fingerprint(identity)?,
                path.display()
            );
            Ok(String::new())
        }
        None => Ok(cert),
    }
}

/// `mtos id import key.asc`: an OpenPGP secret key.
pub fn import(home: &Home, armored: &str, label: Option<String>) -> Result<String, ClientError> {
    let label = label.map(Label::new).transpose()?;
    let imported = openpgp::import(armored, label, passphrase::openpgp_key)?;
    let identity = modify(home, true, |keychain| {
        keychain.add(imported.identity.clone())?;
        Ok(imported.identity.clone())
    })?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "imported the OpenPGP key {} as private identity \"{}\"",
        imported.fingerprint,
        identity.label()
    );
    if imported.sign_only {
        let _ = writeln!(
            out,
            "it had no encryption subkey (sign-only): mtos made this identity a new encryption key, which `mtos id export --openpgp` adds as a subkey"
        );
    }
    crate::id::describe(&mut out, &identity);
    Ok(out)
}

/// `mtos id sign ID FILE`.
pub fn sign(
    home: &Home,
    query: &str,
    file: &Path,
    output: Option<&Path>,
) -> Result<String, ClientError> {
    let keychain = open(home)?;
    let identity = keychain.find(query)?;
    let data = std::fs::read(file).map_err(|source| ClientError::Io {
        path: file.to_owned(),
        source,
    })?;
    let signature = openpgp::sign(identity, &data, now())?;
    let path = output.map_or_else(|| with_asc(file), Path::to_owned);
    write_new_file(&path, signature.as_bytes())?;
    Ok(format!(
        "signed {} as \"{}\" ({}): {}\n",
        file.display(),
        identity.label(),
        openpgp::fingerprint(identity)?,
        path.display()
    ))
}

fn with_asc(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".asc");
    PathBuf::from(name)
}

/// `mtos id verify FILE [SIG] --by ID | --cert CERT`.
pub fn verify(
    home: &Home,
    file: &Path,
    signature: Option<&Path>,
    by: Option<&str>,
    cert: Option<&Path>,
) -> Result<String, ClientError> {
    let sig_path = signature.map_or_else(|| with_asc(file), Path::to_owned);
    let signature = read_text(&sig_path)?;
    let data = std::fs::read(file).map_err(|source| ClientError::Io {
        path: file.to_owned(),
        source,
    })?;
    let signer = match (by, cert) {
        (Some(q), _) => {
            let keychain = open(home)?;
            let identity = keychain.find(q)?;
            openpgp::verify(identity, &signature, &data)?;
            format!(
                "\"{}\" ({})",
                identity.label(),
                openpgp::fingerprint(identity)?
            )
        }
        (None, Some(c)) => openpgp::verify_with_certificate(&read_text(c)?, &signature, &data)?,
        (None, None) => {
            return Err(ClientError::Refused(
                "name the signer: --by ID or --cert FILE".into(),
            ));
        }
    };
    Ok(format!(
        "Good signature over {} by {signer}\n",
        file.display()
    ))
}
