use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const AT: Rendezvous = Rendezvous {
    purpose: Purpose::Contact,
    epoch: 42,
    channel: 7,
};

fn code(text: &str) -> Code {
    Code::parse(Purpose::Contact, text).unwrap()
}

fn run(
    inviter_code: &Code,
    accepter_code: &Code,
    at: Rendezvous,
    b_at: Rendezvous,
) -> (Keys, Keys) {
    let a = Pake::start(inviter_code, at, Role::Inviter, &[1; 64]);
    let b = Pake::start(accepter_code, b_at, Role::Accepter, &[2; 64]);
    let (ea, eb) = (a.element(), b.element());
    (a.finish(&eb).unwrap(), b.finish(&ea).unwrap())
}

/// Sends `payload` from `from` to `to` through slot bodies.
fn deliver(from: &Keys, to: &Keys, payload: &[u8]) -> Result<Vec<u8>, TransferError> {
    let bodies = from.seal(payload)?;
    let mut re = Reassembly::new(from.role);
    for (i, (slot, body)) in (0u32..).zip(&bodies) {
        assert_eq!(body.len(), BODY_LEN);
        assert_eq!(*slot, from.role.frame_slot(i));
        if let Some(done) = re.push(&to.open(i, body)?)? {
            assert_eq!(i as usize + 1, bodies.len());
            return Ok(done.to_vec());
        }
    }
    Err(TransferError::BadStream("ended early"))
}

#[test]
fn codes_read_as_people_type_them() {
    let c = code("7-guitar-orbit");
    assert_eq!(c.to_string(), "7-guitar-orbit");
    assert_eq!(c.channel(), 7);
    for typed in [
        "7 guitar orbit",
        "  7-GUITAR-Orbit ",
        "7-guit-orbi",
        "7 - guita - orbit",
        "007-guitar-orbit",
    ] {
        assert_eq!(code(typed), c, "{typed}");
    }
    // A three-letter word is typed whole.
    assert_eq!(code("12-act-zoo").to_string(), "12-act-zoo");
    for bad in [
        "",
        "guitar-orbit",
        "0-guitar-orbit",
        "1000000-guitar-orbit",
        "7-guitar",
        "7-guitar-orbit-zoo",
        "7-guitarx-orbit",
        "7-gui-orbit",
        "7-guitar-orbït",
        "7x-guitar-orbit",
    ] {
        assert!(
            matches!(
                Code::parse(Purpose::Contact, bad),
                Err(TransferError::BadCode(_))
            ),
            "{bad}"
        );
    }
    let keys = Code::parse(Purpose::Keys, "31-abandon-ability-able-zoo").unwrap();
    assert_eq!(keys.to_string(), "31-abandon-ability-able-zoo");
    assert!(Code::parse(Purpose::Keys, "7-guitar-orbit").is_err());
    // The words are the secret: Debug leaves them out.
    assert!(!format!("{c:?}").contains("guitar"));
    assert_eq!(words().len(), 2048);
}

#[test]
fn random_codes_use_the_whole_list() {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4000 {
        let c = Code::random(Purpose::Contact, 9, &mut rng).unwrap();
        assert_eq!(Code::parse(Purpose::Contact, &c.to_string()).unwrap(), c);
        seen.extend(c.to_string().split('-').skip(1).map(str::to_owned));
    }
    assert!(seen.len() > 1900, "{} distinct words", seen.len());
}

#[test]
fn the_same_code_gives_both_sides_the_same_keys() {
    let c = code("7-guitar-orbit");
    let (a, b) = run(&c, &c, AT, AT);
    let card = b"a signed card, in real use".to_vec();
    assert_eq!(deliver(&b, &a, &card).unwrap(), card);
    assert_eq!(
        deliver(&a, &b, b"the other card").unwrap(),
        b"the other card"
    );
    // A payload over many frames, and one that fills a frame exactly.
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(deliver(&b, &a, &big).unwrap(), big);
    assert_eq!(deliver(&a, &b, &big).unwrap(), big);
    let exact = vec![9u8; frame_capacity(Role::Accepter, 0) - 4];
    assert_eq!(b.seal(&exact).unwrap().len(), 1);
    assert_eq!(deliver(&b, &a, &exact).unwrap(), exact);
    assert_eq!(deliver(&a, &b, b"").unwrap(), b"");
    // The accepter's first body starts with its element.
    let first = &b.seal(b"x").unwrap()[0].1;
    assert_eq!(element_of(first).unwrap(), b.element);
}

#[test]
fn a_wrong_code_or_another_rendezvous_fails_on_both_sides() {
    let right = code("7-guitar-orbit");
    for (other, b_at) in [
        (code("7-guitar-orbiT"), AT), // the same code: control
        (code("7-guitar-orange"), AT),
        (code("8-guitar-orbit"), AT),
        (right.clone(), Rendezvous { epoch: 43, ..AT }),
        (right.clone(), Rendezvous { channel: 8, ..AT }),
    ] {
        let control = other == right && b_at == AT;
        let (a, b) = run(&right, &other, AT, b_at);
        let got = deliver(&b, &a, b"card");
        let back = deliver(&a, &b, b"card");
        if control {
            assert!(got.is_ok() && back.is_ok());
        } else {
            assert_eq!(got, Err(TransferError::WrongCode));
            assert_eq!(back, Err(TransferError::WrongCode));
        }
    }
    // Another purpose: the same words never open the frames.
    let keys_at = Rendezvous {
        purpose: Purpose::Keys,
        ..AT
    };
    let (a, b) = run(&right, &right, AT, keys_at);
    assert_eq!(deliver(&b, &a, b"card"), Err(TransferError::WrongCode));
}

#[test]
fn frames_cannot_be_moved_reordered_or_altered() {
    let c = code("7-guitar-orbit");
    let (a, b) = run(&c, &c, AT, AT);
    let big = vec![3u8; 3000];
    let bodies = b.seal(&big).unwrap();
    assert!(bodies.len() >= 3);
    // Frame 1 offered as frame 2, a flipped byte, a short body, the
    // accepter's frame read as an inviter's.
    assert_eq!(a.open(2, &bodies[1].1), Err(TransferError::WrongCode));
    let mut flipped = bodies[1].1.clone();
    flipped[500] ^= 1;
    assert_eq!(a.open(1, &flipped), Err(TransferError::WrongCode));
    assert_eq!(
        a.open(1, &bodies[1].1[..1000]),
        Err(TransferError::WrongCode)
    );
    assert_eq!(b.open(1, &bodies[1].1), Err(TransferError::WrongCode));
    // An element that is not a point.
    let p = Pake::start(&c, AT, Role::Inviter, &[1; 64]);
    let not_a_point = (0u8..=255)
        .map(|x| [x; 32])
        .find(|e| {
            curve25519_dalek::edwards::CompressedEdwardsY(*e)
                .decompress()
                .is_none()
        })
        .unwrap();
    assert!(matches!(
        p.finish(&not_a_point),
        Err(TransferError::BadElement)
    ));
}

#[test]
fn a_stream_that_lies_about_itself_is_refused() {
    let mut re = Reassembly::new(Role::Inviter);
    let mut frame = vec![0u8; frame_capacity(Role::Inviter, 0)];
    frame[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(re.push(&frame), Err(TransferError::BadStream(_))));
    let mut re = Reassembly::new(Role::Inviter);
    let mut frame = vec![0u8; frame_capacity(Role::Inviter, 0)];
    frame[..4].copy_from_slice(&3u32.to_be_bytes());
    frame[10] = 1;
    assert!(matches!(re.push(&frame), Err(TransferError::BadStream(_))));
    let mut re = Reassembly::new(Role::Inviter);
    assert!(matches!(
        re.push(&[0u8; 10]),
        Err(TransferError::BadStream(_))
    ));
    // Too large to send.
    let huge = vec![0u8; MAX_FRAMES * 1008];
    assert!(matches!(
        AT_KEYS.with(|k| k.seal(&huge)),
        Err(TransferError::TooLarge(_))
    ));
}

thread_local! {
    static AT_KEYS: Keys = {
        let c = code("7-guitar-orbit");
        run(&c, &c, AT, AT).0
    };
}

#[test]
fn the_two_roles_and_each_slot_have_their_own_locator() {
    let mut seen = std::collections::HashSet::new();
    for role in [Role::Inviter, Role::Accepter] {
        for n in 0..4 {
            assert!(seen.insert(AT.locator(role, n).unwrap()));
            let record = AT.record(role, n, &[7; BODY_LEN]).unwrap();
            record.verify(&AT.locator(role, n).unwrap()).unwrap();
        }
    }
    let other = Rendezvous { epoch: 43, ..AT };
    assert!(!seen.contains(&other.locator(Role::Inviter, 0).unwrap()));
}

#[test]
fn both_sides_hold_one_transcript_and_other_exchanges_another() {
    let c = code("7-guitar-orbit");
    let (a, b) = run(&c, &c, AT, AT);
    assert_eq!(a.transcript(), b.transcript());
    let other = Rendezvous { channel: 8, ..AT };
    let c8 = code("8-guitar-orbit");
    let (a8, _) = run(&c8, &c8, other, other);
    assert_ne!(a.transcript(), a8.transcript());
}

#[test]
fn frame_counts_match_the_stream() {
    for role in [Role::Inviter, Role::Accepter] {
        for len in (0..5000).chain([usize::MAX - 3, usize::MAX]) {
            let n = frames_for(role, len);
            assert!(n >= 1);
            if len < 5000 {
                assert_eq!(
                    n,
                    frames::stream(role, &vec![0; len]).unwrap().len(),
                    "{role:?} {len}"
                );
            }
        }
    }
}
