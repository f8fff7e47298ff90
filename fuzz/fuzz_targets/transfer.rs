//! Feeds arbitrary bytes to what a short-code exchange reads from the
//! network or a person (`specs/transfer.md`): typed codes, slot bodies
//! opened as frames, frames put back together, keychain bundles.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mtos_crypto::keychain::bundle::Bundle;
use mtos_crypto::transfer::{Code, Keys, Pake, Purpose, Reassembly, Rendezvous, Role, element_of};

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let at = Rendezvous {
            purpose: Purpose::Contact,
            epoch: 1,
            channel: 7,
        };
        let code = Code::new(Purpose::Contact, 7, vec![1, 2]).expect("a valid code");
        let a = Pake::start(&code, at, Role::Inviter, &[1; 64]);
        let b = Pake::start(&code, at, Role::Accepter, &[2; 64]);
        a.finish(&b.element()).expect("a point")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Code::parse(Purpose::Contact, text);
        let _ = Code::parse(Purpose::Keys, text);
    }
    let _ = Bundle::decode(data);
    let _ = element_of(data);
    let _ = keys().open(0, data);
    let _ = keys().open(u32::MAX, data);
    // Frames as they would come, whatever they hold.
    for role in [Role::Inviter, Role::Accepter] {
        let mut re = Reassembly::new(role);
        for chunk in data.chunks(1008) {
            match re.push(chunk) {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => {}
            }
        }
    }
});
