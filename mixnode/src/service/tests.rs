use super::*;

fn block() -> ReplyBlock {
    ReplyBlock {
        epoch: 9,
        expires: 1_900_000_000,
        surb: vec![0x5a; SURB_SIZE],
    }
}

fn request(op: Op) -> Request {
    // A put's locator is the one its record names.
    let locator = match &op {
        Op::Put(kind, record, _) => {
            locator_of(*kind, record).unwrap_or(Locator::from_bytes([3; 32]))
        }
        _ => Locator::from_bytes([3; 32]),
    };
    Request {
        id: [7; 16],
        locator,
        op,
        reply: block(),
    }
}

fn stamp() -> Stamp {
    Stamp::decode(&[0x44; STAMP_LEN])
}

#[test]
fn every_request_round_trips_and_a_full_put_fills_one_packet() {
    let chunk = vec![1u8; CHUNK_SIZE];
    for op in [
        Op::Put(Kind::Chunk, chunk.clone(), stamp()),
        Op::Put(Kind::Slot, vec![2; 200], stamp()),
        Op::Get(Kind::Chunk),
        Op::Get(Kind::Slot),
        Op::Probe(vec![]),
        Op::Probe(
            (0..MAX_PROBE as u8 - 1)
                .map(|i| Locator::from_bytes([i; 32]))
                .collect(),
        ),
    ] {
        let r = request(op);
        let bytes = r.encode().unwrap();
        assert!(bytes.len() <= MAX_MESSAGE);
        assert_eq!(Request::decode(&bytes).unwrap(), r);
    }
    let full = request(Op::Put(Kind::Chunk, chunk.clone(), stamp()))
        .encode()
        .unwrap();
    assert_eq!(full.len(), MAX_MESSAGE);
    // A put carries its stamp where other requests carry the locator, and
    // its locator is the record's own, whatever the sender claimed.
    assert_eq!(&full[18..50], &[0x44; 32]);
    let claimed = Request {
        locator: Locator::from_bytes([9; 32]),
        ..request(Op::Put(Kind::Chunk, chunk.clone(), stamp()))
    };
    assert_eq!(
        Request::decode(&claimed.encode().unwrap()).unwrap().locator,
        Locator::of(&chunk)
    );
    assert_eq!(BLOCK_SIZE, 408);
}

#[test]
fn malformed_requests_are_refused_without_panicking() {
    let good = request(Op::Put(Kind::Chunk, vec![1; 100], stamp()))
        .encode()
        .unwrap();
    for cut in 0..good.len() {
        assert!(Request::decode(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(Request::decode(&longer).is_err(), "bytes beyond the length");
    let mut version = good.clone();
    version[0] = REQUEST_VERSION + 1;
    assert_eq!(
        Request::decode(&version),
        Err(ServiceError::Version(REQUEST_VERSION + 1))
    );
    for op in [0u8, 6, 255] {
        let mut bad = good.clone();
        bad[1] = op;
        assert!(Request::decode(&bad).is_err(), "op {op}");
    }
    // A get with a body, a probe with a partial locator.
    let mut get = request(Op::Get(Kind::Chunk)).encode().unwrap();
    get.push(1);
    get[51] = 1;
    assert!(Request::decode(&get).is_err());
    let mut probe = request(Op::Probe(vec![])).encode().unwrap();
    probe.extend_from_slice(&[0; 5]);
    probe[51] = 5;
    assert!(Request::decode(&probe).is_err());
    assert!(
        request(Op::Put(Kind::Chunk, vec![0; CHUNK_SIZE + 1], stamp()))
            .encode()
            .is_err()
    );
    // A slot record too short to hold its key names no locator.
    let mut slot = request(Op::Put(Kind::Slot, vec![2; 200], stamp()))
        .encode()
        .unwrap();
    slot.truncate(REQUEST_HEADER + BLOCK_SIZE + 20);
    slot[50..52].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(
        Request::decode(&slot),
        Err(ServiceError::Malformed("slot record"))
    );
    let mut short_surb = request(Op::Get(Kind::Slot));
    short_surb.reply.surb.pop();
    assert!(short_surb.encode().is_err());
}

#[test]
fn responses_round_trip_and_fit_a_reply() {
    for status in [
        Status::Ok,
        Status::NotFound,
        Status::Refused,
        Status::Unavailable,
        Status::BadRequest,
    ] {
        let r = Response {
            id: [1; 16],
            status,
            body: vec![9; 10],
        };
        assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
    }
    // A whole record fits a reply (one kind byte before the response).
    let big = Response {
        id: [1; 16],
        status: Status::Ok,
        body: vec![0; CHUNK_SIZE],
    };
    assert!(big.encode().unwrap().len() < MAX_MESSAGE);
    assert!(
        Response {
            body: vec![0; MAX_RESPONSE_BODY + 1],
            ..big
        }
        .encode()
        .is_err()
    );
    assert!(Response::decode(&[1; 17]).is_err());
    let mut bad = vec![1u8; RESPONSE_HEADER];
    bad[17] = 9;
    assert!(Response::decode(&bad).is_err());
}
