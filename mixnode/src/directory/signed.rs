//! The signed form of descriptors and documents (`specs/directory.md`
//! §2): the exact body bytes plus a list of signatures over them.
//! Verifiers check the bytes they received and only then parse them, so
//! nothing depends on re-encoding JSON.

use mtos_crypto::geometry::MAX_PATH_LENGTH;
use mtos_crypto::{Identity, VerifyKey};

use super::*;

/// A signed object: body and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Signed {
    pub(super) body: Vec<u8>,
    pub(super) signatures: Vec<([u8; 32], [u8; 64])>,
}

pub(super) fn signing_message(context: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + 4 + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub(super) fn encode_signed(magic: &[u8; 8], signed: &Signed) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 + signed.body.len() + 1 + 96 * signed.signatures.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(signed.body.len() as u32).to_be_bytes());
    out.extend_from_slice(&signed.body);
    out.push(signed.signatures.len() as u8);
    for (key, sig) in &signed.signatures {
        out.extend_from_slice(key);
        out.extend_from_slice(sig);
    }
    out
}

pub(super) fn decode_signed(
    magic: &[u8; 8],
    bytes: &[u8],
    max_body: usize,
) -> Result<Signed, DirectoryError> {
    let rest = bytes
        .strip_prefix(magic.as_slice())
        .ok_or(DirectoryError::Framing("wrong magic"))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(DirectoryError::Framing("truncated length"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > max_body {
        return Err(DirectoryError::Framing("body too large"));
    }
    if rest.len() < len + 1 {
        return Err(DirectoryError::Framing("truncated body"));
    }
    let (body, rest) = rest.split_at(len);
    let (&count, mut rest) = rest
        .split_first()
        .ok_or(DirectoryError::Framing("truncated"))?;
    let count = count as usize;
    if count == 0 || count > MAX_SIGNATURES {
        return Err(DirectoryError::Framing("1 to 16 signatures required"));
    }
    if rest.len() != count * 96 {
        return Err(DirectoryError::Framing(
            "signature block of the wrong length",
        ));
    }
    let mut signatures = Vec::with_capacity(count);
    while let Some((key, tail)) = rest.split_first_chunk::<32>() {
        let Some((sig, tail)) = tail.split_first_chunk::<64>() else {
            return Err(DirectoryError::Framing("truncated signature"));
        };
        signatures.push((*key, *sig));
        rest = tail;
    }
    Ok(Signed {
        body: body.to_vec(),
        signatures,
    })
}

impl Descriptor {
    /// Encodes and signs with the node's identity (whose key must be
    /// `self.node.key`).
    pub fn sign(&self, identity: &Identity) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let sig = identity.sign(&signing_message(DESCRIPTOR_CONTEXT, &body));
        encode_signed(
            DESCRIPTOR_MAGIC,
            &Signed {
                body,
                signatures: vec![(*identity.verify_key().as_bytes(), sig)],
            },
        )
    }

    /// Checks a signed descriptor: framing, the node's own signature, the
    /// network, and the entry's consistency.
    pub fn verify(
        bytes: &[u8],
        network: &str,
        layers: u8,
        addresses: AddressCheck,
    ) -> Result<Self, DirectoryError> {
        let signed = decode_signed(DESCRIPTOR_MAGIC, bytes, MAX_DESCRIPTOR_BODY)?;
        let descriptor: Descriptor = parse_body(&signed.body)?;
        if descriptor.version != VERSION {
            return Err(body_error(format!(
                "version {} (expected {VERSION})",
                descriptor.version
            )));
        }
        if descriptor.network != network {
            return Err(DirectoryError::WrongNetwork {
                got: descriptor.network,
                expected: network.to_owned(),
            });
        }
        let [(key, sig)] = signed.signatures.as_slice() else {
            return Err(DirectoryError::Signature("a descriptor has one signature"));
        };
        if *key != descriptor.node.key {
            return Err(DirectoryError::Signature("not signed by the node's key"));
        }
        let vk = VerifyKey::from_bytes(*key)
            .map_err(|_| DirectoryError::Signature("not an ed25519 key"))?;
        if !vk.verify(&signing_message(DESCRIPTOR_CONTEXT, &signed.body), sig) {
            return Err(DirectoryError::Signature(
                "descriptor signature does not verify",
            ));
        }
        descriptor.node.validate(layers, addresses)?;
        if descriptor.node.since.is_some()
            || descriptor.node.salt.is_some()
            || descriptor.node.family.is_some()
        {
            return Err(body_error(
                "since, salt and family are the authorities' to set, not a descriptor's",
            ));
        }
        Ok(descriptor)
    }
}

impl NetworkDocument {
    /// Encodes and signs with one authority key. More signatures can be
    /// added with [`add_signature`].
    pub fn sign(&self, authority: &Identity) -> Vec<u8> {
        sign_document_body(serde_json::to_vec(self).unwrap_or_default(), authority)
    }

    /// Checks a signed document against `trust` at `now` (Unix seconds):
    /// framing, at least `threshold` valid signatures by distinct trusted
    /// authorities, the network id, the validity window, the geometry
    /// and every node entry.
    pub fn verify(bytes: &[u8], trust: &Trust, now: u64) -> Result<Self, DirectoryError> {
        let signed = decode_signed(DOCUMENT_MAGIC, bytes, MAX_DOCUMENT_BODY)?;
        let message = signing_message(DOCUMENT_CONTEXT, &signed.body);
        let mut valid: Vec<[u8; 32]> = Vec::new();
        for (key, sig) in &signed.signatures {
            let Some(vk) = trust.authorities.iter().find(|a| a.as_bytes() == key) else {
                continue;
            };
            if !valid.contains(key) && vk.verify(&message, sig) {
                valid.push(*key);
            }
        }
        if trust.threshold == 0 || valid.len() < trust.threshold {
            return Err(DirectoryError::Signature(
                "not signed by enough of the configured authorities",
            ));
        }
        // The version first: a body of another version is refused as
        // such, not for a field this build reads otherwise.
        #[derive(serde::Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version = parse_body(&signed.body)?;
        if version.version != DOCUMENT_VERSION {
            return Err(body_error(format!(
                "version {} (expected {DOCUMENT_VERSION})",
                version.version
            )));
        }
        let doc: NetworkDocument = parse_body(&signed.body)?;
        if doc.network != trust.network {
            return Err(DirectoryError::WrongNetwork {
                got: doc.network,
                expected: trust.network.clone(),
            });
        }
        if now >= doc.valid_until {
            return Err(DirectoryError::Expired {
                epoch: doc.epoch,
                valid_until: doc.valid_until,
                now,
            });
        }
        if doc.valid_after > now.saturating_add(CLOCK_SKEW) {
            return Err(DirectoryError::NotYetValid {
                epoch: doc.epoch,
                valid_after: doc.valid_after,
                now,
            });
        }
        doc.validate(trust.addresses)?;
        Ok(doc)
    }

    pub(super) fn validate(&self, addresses: AddressCheck) -> Result<(), DirectoryError> {
        if self.geometry != Geometry::compiled() {
            return Err(body_error(format!(
                "geometry {:?} differs from this build's {:?}",
                self.geometry,
                Geometry::compiled()
            )));
        }
        if self.layers == 0 || self.layers > MAX_LAYERS {
            return Err(body_error(format!("layers must be 1..={MAX_LAYERS}")));
        }
        if usize::from(self.layers) + 2 > MAX_PATH_LENGTH {
            return Err(body_error(
                "gateway + layers + final hop exceed the path length",
            ));
        }
        if self.schedule.epoch_secs == 0 {
            return Err(body_error("schedule.epoch_secs must be > 0"));
        }
        if !(1..=self.schedule.epoch_secs.max(1)).contains(&self.schedule.heartbeat_secs) {
            return Err(body_error(
                "schedule.heartbeat_secs must be 1 to schedule.epoch_secs",
            ));
        }
        if !(1..=self.schedule.epoch_secs.max(1)).contains(&self.schedule.round_secs) {
            return Err(body_error(
                "schedule.round_secs must be 1 to schedule.epoch_secs",
            ));
        }
        self.mixing.validate()?;
        self.rates.validate()?;
        self.storage.validate()?;
        let mut keys = std::collections::HashSet::new();
        for node in &self.nodes {
            node.validate(self.layers, addresses)?;
            if !keys.insert(node.key) {
                return Err(body_error(format!(
                    "node {} listed twice",
                    short(&node.key)
                )));
            }
        }
        Ok(())
    }
}

/// A document body (JSON) signed with one authority key: what
/// [`NetworkDocument::sign`] does with its own encoding, and what tests
/// use to sign bodies no encoder of this build would write.
pub(crate) fn sign_document_body(body: Vec<u8>, authority: &Identity) -> Vec<u8> {
    let sig = authority.sign(&signing_message(DOCUMENT_CONTEXT, &body));
    encode_signed(
        DOCUMENT_MAGIC,
        &Signed {
            body,
            signatures: vec![(*authority.verify_key().as_bytes(), sig)],
        },
    )
}

/// Adds an authority's signature to a signed document (for networks with
/// several authorities: each signs the same body).
pub fn add_signature(
    signed_document: &[u8],
    authority: &Identity,
) -> Result<Vec<u8>, DirectoryError> {
    let mut signed = decode_signed(DOCUMENT_MAGIC, signed_document, MAX_DOCUMENT_BODY)?;
    if signed.signatures.len() >= MAX_SIGNATURES {
        return Err(DirectoryError::Framing("too many signatures"));
    }
    let key = *authority.verify_key().as_bytes();
    signed.signatures.retain(|(k, _)| *k != key);
    let sig = authority.sign(&signing_message(DOCUMENT_CONTEXT, &signed.body));
    signed.signatures.push((key, sig));
    Ok(encode_signed(DOCUMENT_MAGIC, &signed))
}

/// Parses a JSON body; an error names the field it is in
/// (`rates.payload`: JSON has no NaN or infinity, so such a value arrives
/// as `null` or out of range and is refused here).
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DirectoryError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        let problem = e.into_inner().to_string();
        if field == "." {
            body_error(problem)
        } else {
            DirectoryError::Field { field, problem }
        }
    })
}

/// A signed document's body and signatures, without checking them.
pub(super) fn document_parts(bytes: &[u8]) -> Result<Signed, DirectoryError> {
    decode_signed(DOCUMENT_MAGIC, bytes, MAX_DOCUMENT_BODY)
}

/// Whether `sig` by `key` signs the document body `body`.
pub(super) fn document_signature_verifies(body: &[u8], key: &[u8; 32], sig: &[u8; 64]) -> bool {
    VerifyKey::from_bytes(*key)
        .is_ok_and(|vk| vk.verify(&signing_message(DOCUMENT_CONTEXT, body), sig))
}

/// An authority's signature on a document body.
pub(super) fn sign_document(body: &[u8], authority: &Identity) -> [u8; 64] {
    authority.sign(&signing_message(DOCUMENT_CONTEXT, body))
}

/// A document body with these signatures (at most [`MAX_SIGNATURES`]).
pub(super) fn encode_document(body: Vec<u8>, signatures: Vec<([u8; 32], [u8; 64])>) -> Vec<u8> {
    let mut signatures = signatures;
    signatures.truncate(MAX_SIGNATURES);
    encode_signed(DOCUMENT_MAGIC, &Signed { body, signatures })
}

/// SHA-256 of a signed document's body, and the configured authorities
/// whose signatures on it verify (each once): what an auditor compares
/// between the copies different authorities serve.
pub fn document_signers(
    bytes: &[u8],
    authorities: &[[u8; 32]],
) -> Result<([u8; 32], Vec<[u8; 32]>), DirectoryError> {
    use sha2::Digest;
    let signed = document_parts(bytes)?;
    let mut signers: Vec<[u8; 32]> = Vec::new();
    for (key, sig) in &signed.signatures {
        if authorities.contains(key)
            && !signers.contains(key)
            && document_signature_verifies(&signed.body, key, sig)
        {
            signers.push(*key);
        }
    }
    Ok((sha2::Sha256::digest(&signed.body).into(), signers))
}
