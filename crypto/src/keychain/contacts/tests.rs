use super::*;
use crate::codec::Writer;
use crate::identity::{Identity, Visibility};
use crate::keychain::Keychain;

fn person(seed: u8, x: u8, label: &str) -> Identity {
    Identity::from_secrets(
        Label::new(label).unwrap(),
        Visibility::Public,
        1_700_000_000,
        &[seed; 32],
        &[x; 32],
    )
}

fn contact(seed: u8, label: &str) -> Contact {
    Contact::new(
        person(seed, seed, "their own label").public(),
        Label::new(label).unwrap(),
        Source::Uri,
        1_800_000_000,
    )
}

fn keychain() -> Keychain {
    let mut kc = Keychain::new();
    kc.add(person(1, 1, "me")).unwrap();
    kc.add_contact(contact(2, "bob")).unwrap();
    let mut carol = contact(3, "carol");
    carol.mark_verified(1_800_000_100);
    kc.add_contact(carol).unwrap();
    kc
}

#[test]
fn contacts_survive_encoding_and_sealing() {
    let mut kc = keychain();
    assert_eq!(
        kc.observe(&person(3, 9, "carol, new phone").public()),
        Observed::Changed(Label::new("carol").unwrap())
    );
    let bytes = kc.encode();
    assert_eq!(bytes[12], 2, "written as version 2");
    let back = Keychain::decode(&bytes).unwrap();
    assert_eq!(back.contacts(), kc.contacts());
    assert_eq!(&back.encode()[..], &bytes[..]);
    let carol = back.find_contact("carol").unwrap();
    assert_eq!(carol.verified(), Some(1_800_000_100));
    assert_eq!(
        carol.changed().unwrap().encryption_key(),
        person(3, 9, "x").public().encryption_key()
    );
    assert_eq!(back.find_contact("bob").unwrap().verified(), None);
}

#[test]
fn a_version_1_keychain_still_opens_with_no_contacts() {
    let me = person(1, 1, "me");
    let mut w = Writer::with_capacity(256);
    w.bytes(b"MTOSKEYCHAIN").u8(1).u16(1);
    me.encode_secret_record(&mut w);
    let v1 = w.into_vec();
    let kc = Keychain::decode(&v1).unwrap();
    assert_eq!(kc.len(), 1);
    assert!(kc.contacts().is_empty());
    // A version 1 keychain with a contact section is refused (trailing bytes).
    let mut longer = v1.clone();
    longer.extend_from_slice(&[0, 0]);
    assert!(Keychain::decode(&longer).is_err());
    // And a version 2 one without it (truncated).
    let mut v2 = v1;
    v2[12] = 2;
    assert!(Keychain::decode(&v2).is_err());
}

#[test]
fn labels_and_keys_are_unique_across_identities_and_contacts() {
    let mut kc = keychain();
    assert!(matches!(
        kc.add_contact(contact(2, "bob again")),
        Err(KeychainError::DuplicateContact(l)) if l == "bob"
    ));
    assert!(matches!(
        kc.add_contact(contact(1, "myself")),
        Err(KeychainError::OwnIdentity(_))
    ));
    assert!(matches!(
        kc.add_contact(contact(4, "me")),
        Err(KeychainError::DuplicateLabel(_))
    ));
    assert!(matches!(
        kc.add(person(5, 5, "bob")),
        Err(KeychainError::DuplicateLabel(_))
    ));
    // A contact's key cannot come back as an own identity either.
    assert!(matches!(
        kc.add(person(2, 2, "stolen")),
        Err(KeychainError::Duplicate(_))
    ));
    assert!(matches!(
        kc.relabel_contact("bob", Label::new("carol").unwrap()),
        Err(KeychainError::DuplicateLabel(_))
    ));
    kc.relabel_contact("bob", Label::new("robert").unwrap())
        .unwrap();
    assert!(matches!(
        kc.find_contact("bob"),
        Err(KeychainError::ContactNotFound(_))
    ));
    let id = kc
        .find_contact("robert")
        .unwrap()
        .identity()
        .id()
        .to_string();
    assert_eq!(
        kc.find_contact(&id[..5]).unwrap().label().as_str(),
        "robert"
    );
    assert_eq!(
        kc.remove_contact("robert")
            .unwrap()
            .identity()
            .id()
            .to_string(),
        id
    );
    assert_eq!(kc.contacts().len(), 1);
}

#[test]
fn changed_keys_flag_the_contact_and_never_replace_its_keys() {
    let mut kc = keychain();
    let old = kc.find_contact("bob").unwrap().identity().clone();
    // The same keys with a new self-chosen label: taken, not flagged.
    let relabelled = person(2, 2, "bob's new name").public();
    assert_eq!(
        kc.observe(&relabelled),
        Observed::Same(Label::new("bob").unwrap())
    );
    assert_eq!(kc.find_contact("bob").unwrap().identity(), &relabelled);
    assert!(kc.find_contact("bob").unwrap().changed().is_none());
    // Another encryption key under bob's verify key: flagged.
    let swapped = person(2, 7, "bob").public();
    assert_eq!(
        kc.observe(&swapped),
        Observed::Changed(Label::new("bob").unwrap())
    );
    let bob = kc.find_contact("bob").unwrap();
    assert_eq!(bob.identity().encryption_key(), old.encryption_key());
    assert_eq!(bob.changed(), Some(&swapped));
    // Someone unknown.
    assert_eq!(kc.observe(&person(9, 9, "x").public()), Observed::Unknown);
    // Accepting the change takes the new keys, unverified.
    let bob = kc.find_contact_mut("bob").unwrap();
    bob.mark_verified(5);
    assert!(bob.accept_change(None));
    assert_eq!(bob.identity(), &swapped);
    assert_eq!(bob.verified(), None);
    assert!(!bob.accept_change(None));
}

#[test]
fn decode_refuses_bad_contacts() {
    let kc = keychain();
    let bytes = kc.encode();
    for cut in 13..bytes.len() {
        assert!(Keychain::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // Unknown source: the byte after bob's label (after "bob", 3 bytes).
    let me_len = {
        let mut w = Writer::with_capacity(200);
        person(1, 1, "me").encode_secret_record(&mut w);
        w.into_vec().len()
    };
    let source_at = 12 + 1 + 2 + me_len + 2 + 1 + 3;
    assert_eq!(bytes[source_at], Source::Uri.to_byte());
    let mut bad = bytes.to_vec();
    bad[source_at] = 0;
    assert!(Keychain::decode(&bad).is_err());
    // A "change" to the same keys is not a change.
    let mut same = Keychain::new();
    let mut c = contact(2, "bob");
    c.changed = Some(c.identity.clone());
    same.contacts.push(c);
    assert!(Keychain::decode(&same.encode()).is_err());
    // Nor is another person's record.
    let mut other = Keychain::new();
    let mut c = contact(2, "bob");
    c.changed = Some(person(3, 3, "carol").public());
    other.contacts.push(c);
    assert!(Keychain::decode(&other.encode()).is_err());
    // Two contacts with one key.
    let mut twice = Keychain::new();
    twice.contacts.push(contact(2, "bob"));
    twice.contacts.push(contact(2, "bob 2"));
    assert!(Keychain::decode(&twice.encode()).is_err());
}

#[test]
fn a_label_that_is_another_contacts_id_prefix_names_no_one() {
    let mut kc = keychain();
    let bob_id = kc.find_contact("bob").unwrap().identity().id().to_string();
    // Mallory labels herself with bob's id.
    kc.add_contact(contact(6, &bob_id)).unwrap();
    assert!(matches!(
        kc.find_contact(&bob_id),
        Err(KeychainError::Ambiguous { .. })
    ));
    // A shorter prefix is no one's label: bob's.
    assert_eq!(
        kc.find_contact(&bob_id[..8]).unwrap().label().as_str(),
        "bob"
    );
    // Her own id still finds her; bob's label still finds bob.
    let mallory = person(6, 6, "x").public().id().to_string();
    assert_eq!(kc.find_contact(&mallory).unwrap().label().as_str(), bob_id);
    assert_eq!(
        kc.find_contact("bob").unwrap().identity().id().to_string(),
        bob_id
    );
}
