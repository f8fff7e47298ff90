//! The network's packet geometry: one set of numbers for every node and
//! client, normative in `specs/geometry.md`. Every component reads them
//! from here.

/// Sphinx payload size in bytes, including the 17-byte payload overhead
/// (the value passed to `sphinx-packet`'s `with_payload_size`).
pub const SPHINX_PAYLOAD_SIZE: usize = 4096;
/// What `sphinx-packet` adds inside the payload (16 zero bytes of the
/// integrity check and one padding marker byte).
pub const SPHINX_PAYLOAD_OVERHEAD: usize = 17;
/// Size of a Sphinx header with `MAX_PATH_LENGTH` = 5 hops.
pub const SPHINX_HEADER_SIZE: usize = 348;
/// A Sphinx packet on the wire: header and payload.
pub const SPHINX_PACKET_SIZE: usize = SPHINX_HEADER_SIZE + SPHINX_PAYLOAD_SIZE;
/// Hops a Sphinx header can hold (a compile-time constant of
/// `sphinx-packet`): client -> gateway -> 3 mix layers -> final hop.
pub const MAX_PATH_LENGTH: usize = 5;
/// A version-260 (recoverable) single-use reply block, serialised.
pub const SURB_SIZE: usize = 396;
/// Bytes reserved in a store request for its own header (operation,
/// locator, request id, lengths); the storage protocol must fit in it.
pub const REQUEST_HEADER_BUDGET: usize = 64;
/// A content-addressed chunk: what fits in one store request next to its
/// header and the SURB that carries the acknowledgement back.
pub const CHUNK_SIZE: usize =
    SPHINX_PAYLOAD_SIZE - SPHINX_PAYLOAD_OVERHEAD - REQUEST_HEADER_BUDGET - SURB_SIZE;

const _: () = assert!(CHUNK_SIZE == 3619);
