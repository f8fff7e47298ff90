//! Feeds arbitrary bytes to the item, reference and URI decoders.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mtos_crypto::PublicIdentity;
use mtos_crypto::item::{Item, ItemRef};

fuzz_target!(|data: &[u8]| {
    let _ = Item::decode(data);
    let _ = ItemRef::decode(data);
    let _ = PublicIdentity::decode(data);
    let _ = mtos_crypto::Keychain::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ItemRef::from_uri(text);
        let _ = PublicIdentity::from_uri(text);
        let _ = mtos_crypto::Identity::import_secret(text);
    }
});
