//! The directory loop: descriptor upload (with heartbeats) and document
//! fetches, publishing each new document to the other tasks.

use super::*;

/// Keeps the node's descriptor at the authority and its document fresh.
pub(super) struct DirectoryLoop {
    pub(super) control: libp2p_stream::Control,
    /// Every authority: descriptors go to all of them.
    pub(super) authorities: Vec<mtos_net::AuthorityAddr>,
    /// The authority asked first for the next document.
    pub(super) next: usize,
    pub(super) trust: Trust,
    pub(super) descriptor: watch::Receiver<Vec<u8>>,
    pub(super) topology: watch::Sender<Option<Arc<Topology>>>,
    pub(super) commands: mpsc::Sender<SwarmCommand>,
    pub(super) metrics: Metrics,
    pub(super) me: [u8; 32],
    /// The signed bytes of the document installed, which the node serves.
    pub(super) signed: watch::Sender<Option<Arc<Vec<u8>>>>,
}

impl DirectoryLoop {
    pub(super) async fn run(mut self, first: NetworkDocument, signed: Vec<u8>) {
        self.install(first, signed).await;
        let mut uploaded: Vec<u8> = Vec::new();
        let mut uploaded_at: Option<tokio::time::Instant> = None;
        loop {
            let current = self.descriptor.borrow_and_update().clone();
            let (listed, heartbeat) = match self.topology.borrow().as_ref() {
                Some(t) => (
                    t.document.nodes.iter().any(|n| n.key == self.me),
                    Duration::from_secs(t.document.schedule.heartbeat_secs.max(1)),
                ),
                None => (false, Duration::ZERO),
            };
            // The heartbeat: the same descriptor again, so the authority
            // keeps listing this node (`specs/directory.md` §3).
            let due = uploaded_at.is_none_or(|at| at.elapsed() >= heartbeat);
            if !current.is_empty() && (current != uploaded || !listed || due) {
                // To every authority at once: each votes from what it
                // holds. Done when a majority took it (the others are
                // tried again at the next heartbeat).
                let uploads = self.authorities.iter().map(|a| {
                    let mut control = self.control.clone();
                    let body = current.clone();
                    async move {
                        let r = net::directory_request_retrying(
                            &mut control,
                            a.peer,
                            DIR_PUT_DESCRIPTOR,
                            &body,
                            Duration::from_secs(10),
                        )
                        .await;
                        (a.peer, r)
                    }
                });
                let mut took = 0;
                for (peer, r) in futures::future::join_all(uploads).await {
                    match r {
                        Ok(_) => took += 1,
                        Err(e) => {
                            self.metrics.directory_failures.inc();
                            tracing::warn!(authority = %peer, error = %e, "descriptor upload failed");
                        }
                    }
                }
                if took > self.authorities.len() / 2 {
                    uploaded = current;
                    uploaded_at = Some(tokio::time::Instant::now());
                }
            }
            match net::fetch_document_any(
                &mut self.control,
                &self.authorities,
                &self.trust,
                self.next,
            )
            .await
            {
                Ok((doc, signed, at)) => {
                    // The next fetch asks the next authority first, so each
                    // is checked in turn.
                    self.next = at + 1;
                    self.install(doc, signed).await;
                }
                Err(e) => {
                    self.metrics.directory_failures.inc();
                    self.next += 1;
                    tracing::warn!(error = %e, "document fetch failed");
                }
            }
            let (listed, schedule) = match self.topology.borrow().as_ref() {
                Some(t) => (
                    t.document.nodes.iter().any(|n| n.key == self.me),
                    Some(t.document.schedule),
                ),
                None => (false, None),
            };
            // Quickly until the node is listed, then often enough that
            // nodes joining within an epoch are soon reachable and the
            // heartbeat is never late.
            let pause = if let (true, Some(schedule)) = (listed, schedule) {
                Duration::from_secs(
                    (schedule.epoch_secs / 60)
                        .clamp(1, 30)
                        .min(schedule.heartbeat_secs.max(1)),
                )
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                changed = self.descriptor.changed() => if changed.is_err() { return },
            }
        }
    }

    pub(super) async fn install(&mut self, doc: NetworkDocument, signed: Vec<u8>) {
        // Every time: the address book is a bounded cache that identify
        // reports from clients can push document nodes out of.
        let addresses = doc
            .nodes
            .iter()
            .filter_map(|n| n.peer().ok().map(|p| (p, n.multiaddrs())))
            .collect();
        let _ = self.commands.send(SwarmCommand::Addresses(addresses)).await;
        let current = self
            .topology
            .borrow()
            .as_ref()
            // Compared whole: a restarted authority counts serials from 1.
            .map(|t| (t.document.epoch, t.document == doc));
        match current {
            Some((_, true)) => return,
            Some((epoch, false)) if doc.epoch < epoch => {
                tracing::debug!(epoch = doc.epoch, "an older document is ignored");
                return;
            }
            _ => {}
        }
        self.metrics.directory_nodes.set(doc.nodes.len() as i64);
        tracing::info!(
            epoch = doc.epoch,
            serial = doc.serial,
            nodes = doc.nodes.len(),
            "network document installed"
        );
        self.topology
            .send_replace(Some(Arc::new(Topology::new(doc))));
        self.signed.send_replace(Some(Arc::new(signed)));
    }
}
