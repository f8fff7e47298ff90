//! What a node does with a payload for which it is the final hop
//! (`specs/storage.md` §4, `specs/mixing.md` §5, `specs/client.md` §6):
//! the rule, separate from the driver that then acts on it.
//!
//! * addressed to this node with SURB id zero: a request to this service
//!   node (a node that is not one discards it);
//! * addressed to this node with any other id: one of its own loops
//!   coming back (the loop machine judges whether it is one in flight);
//! * addressed to anyone else: a gateway files it in that address's
//!   mailbox; any other node discards it.

use mtos_crypto::sphinx::{Destination, SURB_ID_LEN};

use crate::loops::LoopId;

/// The final-hop rule of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalHopRule {
    /// The node's key: destinations naming it are its own.
    pub me: [u8; 32],
    /// Whether it answers service requests.
    pub service: bool,
    /// Whether it keeps mailboxes (a gateway).
    pub gateway: bool,
}

/// What to do with a delivered payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalHop {
    /// A request to this service node: open the payload, queue it.
    ServiceRequest,
    /// Maybe one of this node's loops: its id.
    OwnLoop(LoopId),
    /// File it in the mailbox of `address` with this SURB id.
    Mailbox {
        /// The mailbox.
        address: [u8; 32],
        /// The SURB id the client reads it under.
        surb_id: [u8; SURB_ID_LEN],
    },
    /// Nothing here wants it.
    Discard,
}

impl FinalHopRule {
    /// What to do with a payload for `destination`.
    pub fn classify(&self, destination: &Destination) -> FinalHop {
        if destination.address == self.me {
            if destination.surb_id != [0; SURB_ID_LEN] {
                return FinalHop::OwnLoop(destination.surb_id);
            }
            return if self.service {
                FinalHop::ServiceRequest
            } else {
                FinalHop::Discard
            };
        }
        if self.gateway {
            FinalHop::Mailbox {
                address: destination.address,
                surb_id: destination.surb_id,
            }
        } else {
            FinalHop::Discard
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(address: [u8; 32], surb_id: [u8; 16]) -> Destination {
        Destination { address, surb_id }
    }

    #[test]
    fn each_role_keeps_only_what_is_its_own() {
        let me = [7; 32];
        let other = [9; 32];
        let rule = |service, gateway| FinalHopRule {
            me,
            service,
            gateway,
        };
        // A service node: requests to it, its loops; nothing else.
        let service = rule(true, false);
        assert_eq!(service.classify(&to(me, [0; 16])), FinalHop::ServiceRequest);
        assert_eq!(
            service.classify(&to(me, [3; 16])),
            FinalHop::OwnLoop([3; 16])
        );
        assert_eq!(service.classify(&to(other, [0; 16])), FinalHop::Discard);
        // A gateway: its loops, and mailboxes for every other address; a
        // "request" to a gateway is nobody's.
        let gateway = rule(false, true);
        assert_eq!(gateway.classify(&to(me, [0; 16])), FinalHop::Discard);
        assert_eq!(
            gateway.classify(&to(me, [1; 16])),
            FinalHop::OwnLoop([1; 16])
        );
        assert_eq!(
            gateway.classify(&to(other, [2; 16])),
            FinalHop::Mailbox {
                address: other,
                surb_id: [2; 16]
            }
        );
        // A mix: its own loops only.
        let mix = rule(false, false);
        assert_eq!(mix.classify(&to(me, [5; 16])), FinalHop::OwnLoop([5; 16]));
        assert_eq!(mix.classify(&to(me, [0; 16])), FinalHop::Discard);
        assert_eq!(mix.classify(&to(other, [5; 16])), FinalHop::Discard);
    }
}
