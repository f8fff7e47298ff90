//! Serves the signed network document this node installed on
//! `/mtos/dir/1` (`DIR_GET_DOCUMENT` only), so that `mtos net check` and
//! anyone else can compare what nodes were given with what the
//! authorities serve (`specs/directory.md` §4). The bytes are the
//! authorities' signed ones: a node cannot alter them, only serve an
//! older valid document, which a checker sees by its round.

use super::*;

/// Requests answered at once; more streams are dropped (the asker
/// retries, or asks another node).
const MAX_CONCURRENT: usize = 32;
/// Requests answered at once for one peer: no one peer can make the node
/// look unreachable to everyone else.
const PER_PEER: usize = 2;
/// A request is read and answered within this, or dropped.
const DEADLINE: Duration = Duration::from_secs(10);

pub(super) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    signed: watch::Receiver<Option<Arc<Vec<u8>>>>,
) {
    let gate = crate::gate::Gate::single(MAX_CONCURRENT, PER_PEER);
    while let Some((peer, stream)) = incoming.next().await {
        let Some(permit) = gate.admit(peer) else {
            continue;
        };
        let signed = signed.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DEADLINE, answer(stream, signed)).await;
            drop(permit);
        });
    }
}

async fn answer(
    mut stream: libp2p::Stream,
    signed: watch::Receiver<Option<Arc<Vec<u8>>>>,
) -> std::io::Result<()> {
    let (kind, _) = net::read_message(&mut stream, net::MAX_DIR_REQUEST).await?;
    let current = signed.borrow().clone();
    let (status, body) = match (kind, current) {
        (net::DIR_GET_DOCUMENT, Some(doc)) => (net::DIR_OK, doc.to_vec()),
        (net::DIR_GET_DOCUMENT, None) => (
            net::DIR_ERROR,
            b"this node has no network document yet".to_vec(),
        ),
        _ => (
            net::DIR_ERROR,
            b"a node serves only its network document; ask an authority".to_vec(),
        ),
    };
    net::write_message(&mut stream, status, &body).await?;
    stream.close().await
}
