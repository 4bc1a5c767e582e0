//! The file store's bytes: header, superblocks, record frames, the free
//! list, and addresses. `docs/format.md` is the same layout in prose.
//!
//! ```text
//! offset  size  what
//! 0       4096  header page: the header, then zeros
//! 4096    4096  superblock slot 0
//! 8192    4096  superblock slot 1
//! 12288   ...   records and free space, up to the superblock's `end`
//!
//! header (all integers little-endian):
//!   0   [u8; 8]  magic "GHOSTBT\n"
//!   8   u32      format version (1)
//!   12  u32      header length (64)
//!   16  [u8; 44] zeros (reserved)
//!   60  u32      CRC-32 of bytes 0..60
//!
//! superblock (in its slot, the rest of the slot zero; written as the
//! whole slot):
//!   0   [u8; 4]  magic "GBSB"
//!   4   u32      format version (1)
//!   8   u64      sequence number (>= 1; the newest valid slot wins)
//!   16  u64      end: bytes in use; records lie below it
//!   24  u64      free-list record address (0: nothing free below end)
//!   32  u64      free bytes below end
//!   40  u32      commit length n (<= 256)
//!   44  [u8; n]  the tree's commit record (`engine/format.rs`)
//!   44+n u32     CRC-32 of bytes 0..44+n
//!
//! record frame (at an offset that is a multiple of 16):
//!   0   u32      payload length n
//!   4   u8       kind: 1 node, 2 free list
//!   5   [u8; 3]  zeros
//!   8   [u8; n]  payload
//!   8+n u32      CRC-32 of bytes 0..8+n
//!   the frame takes 12 + n bytes rounded up to a multiple of 16
//!
//! free-list payload: u64 count, then count x (u64 offset, u64 length),
//!   then zeros (the frame is sized before the count is known)
//!
//! address (u64): (offset / 16) << 24 | (frame length / 16)
//! ```
//!
//! An address carries its frame's length, so a read is one positioned
//! read of exactly the frame, and freeing a record needs no I/O. Address 0
//! (offset 0, the header) is never a record. Frames are at most 256 MiB,
//! files at most 16 TiB.
//!
//! Decoding checks every magic, version, length and checksum: any bytes
//! give a value or an error that says what is wrong, never a panic.

use super::space::ALIGN;
use crate::store::Address;

pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const PAGE: u64 = 4096;
pub(crate) const HEADER_LEN: usize = 64;
/// Where the two superblock slots are.
pub(crate) const SUPERBLOCK_AT: [u64; 2] = [PAGE, 2 * PAGE];
/// Where records begin.
pub(crate) const DATA_START: u64 = 3 * PAGE;
/// The largest commit record a superblock holds.
pub(crate) const MAX_COMMIT: usize = 256;
/// The bytes of a superblock slot that are ever read.
pub(crate) const SUPERBLOCK_LEN: usize = 44 + MAX_COMMIT + 4;

const HEADER_MAGIC: &[u8; 8] = b"GHOSTBT\n";
const SUPERBLOCK_MAGIC: &[u8; 4] = b"GBSB";
const FRAME_OVERHEAD: u64 = 12;
const LEN_BITS: u32 = 24;
/// The largest frame an address describes.
pub(crate) const MAX_FRAME: u64 = ((1 << LEN_BITS) - 1) * ALIGN;
/// The largest offset an address describes.
const MAX_OFFSET: u64 = (1 << (64 - LEN_BITS)) * ALIGN - ALIGN;

/// What a record frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Node = 1,
    FreeList = 2,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::FreeList => "free-list",
        }
    }
}

/// A frame's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Extent {
    pub(crate) fn address(self) -> Address {
        Address(((self.offset / ALIGN) << LEN_BITS) | (self.len / ALIGN))
    }

    /// The extent an address names; `None` if no frame can be there.
    pub(crate) fn of(address: Address) -> Option<Extent> {
        let len = (address.0 & ((1 << LEN_BITS) - 1)) * ALIGN;
        let offset = (address.0 >> LEN_BITS) * ALIGN;
        (len >= FRAME_OVERHEAD && offset >= DATA_START).then_some(Extent { offset, len })
    }

    /// Whether [`Extent::address`] can describe this extent.
    pub(crate) fn addressable(self) -> bool {
        self.len <= MAX_FRAME && self.offset <= MAX_OFFSET
    }
}

/// The bytes a frame holding `payload` bytes takes.
pub(crate) fn frame_len(payload: usize) -> u64 {
    (payload as u64 + FRAME_OVERHEAD).next_multiple_of(ALIGN)
}

pub(crate) fn encode_header() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(HEADER_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.resize(HEADER_LEN - 4, 0);
    seal(out)
}

/// Checks a file's first bytes (at most [`HEADER_LEN`]).
pub(crate) fn decode_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..8] != HEADER_MAGIC {
        return Err("is not a ghostbtree file (no ghostbtree magic at offset 0)".into());
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!("is truncated: {} bytes, shorter than the header ({HEADER_LEN})", bytes.len()));
    }
    let version = u32_at(bytes, 8);
    if version > FORMAT_VERSION {
        return Err(format!(
            "file format version {version} is newer than this build of ghostbtree reads ({FORMAT_VERSION})"
        ));
    }
    unseal(&bytes[..HEADER_LEN]).map_err(|why| format!("has a damaged header: {why}"))?;
    if version != FORMAT_VERSION || u32_at(bytes, 12) != HEADER_LEN as u32 {
        return Err(format!("has a damaged header: format version {version}"));
    }
    Ok(())
}

/// One superblock: a commit and the state of the space it leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub(crate) sequence: u64,
    pub(crate) end: u64,
    pub(crate) free_list: Option<Extent>,
    pub(crate) free_bytes: u64,
    pub(crate) commit: Vec<u8>,
}

pub(crate) fn encode_superblock(superblock: &Superblock) -> Vec<u8> {
    debug_assert!(superblock.commit.len() <= MAX_COMMIT);
    let mut out = Vec::with_capacity(SUPERBLOCK_LEN);
    out.extend_from_slice(SUPERBLOCK_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&superblock.sequence.to_le_bytes());
    out.extend_from_slice(&superblock.end.to_le_bytes());
    out.extend_from_slice(&superblock.free_list.map_or(0, |e| e.address().0).to_le_bytes());
    out.extend_from_slice(&superblock.free_bytes.to_le_bytes());
    out.extend_from_slice(&(superblock.commit.len() as u32).to_le_bytes());
    out.extend_from_slice(&superblock.commit);
    let mut out = seal(out);
    out.resize(SUPERBLOCK_LEN, 0);
    out
}

/// Decodes a superblock slot's bytes (the whole slot: what follows the
/// checksum must be zeros); `Ok(None)` for a slot never written (all
/// zeros).
pub(crate) fn decode_superblock(bytes: &[u8]) -> Result<Option<Superblock>, String> {
    if bytes.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if bytes.len() < 48 || &bytes[..4] != SUPERBLOCK_MAGIC {
        return Err("no superblock magic".into());
    }
    let n = u32_at(bytes, 40) as usize;
    if n > MAX_COMMIT || bytes.len() < 48 + n {
        return Err(format!("a commit record of {n} bytes (at most {MAX_COMMIT})"));
    }
    unseal(&bytes[..48 + n])?;
    if bytes[48 + n..].iter().any(|&b| b != 0) {
        return Err("non-zero bytes after the superblock's checksum".into());
    }
    let version = u32_at(bytes, 4);
    if version != FORMAT_VERSION {
        return Err(format!("superblock format version {version}, this build reads {FORMAT_VERSION}"));
    }
    let (sequence, end, free_list, free_bytes) =
        (u64_at(bytes, 8), u64_at(bytes, 16), u64_at(bytes, 24), u64_at(bytes, 32));
    // One per commit never nears 2^63: a larger one is damage, and the next
    // commit (sequence + 1) always has room (found by the decode fuzz target).
    if sequence == 0
        || sequence > 1 << 63
        || end < DATA_START
        || !end.is_multiple_of(ALIGN)
        || free_bytes > end - DATA_START
    {
        return Err(format!(
            "inconsistent superblock: sequence {sequence}, end {end}, {free_bytes} bytes free"
        ));
    }
    let free_list = match free_list {
        0 => None,
        address => match Extent::of(Address(address)) {
            Some(extent) if extent.offset + extent.len <= end => Some(extent),
            _ => return Err(format!("a free-list address {address:#x} outside the used space")),
        },
    };
    Ok(Some(Superblock { sequence, end, free_list, free_bytes, commit: bytes[44..44 + n].to_vec() }))
}

/// The format version of a superblock whose magic and checksum hold (a
/// newer one is refused as a whole, not skipped as torn).
pub(crate) fn superblock_version(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < 48 || &bytes[..4] != SUPERBLOCK_MAGIC {
        return None;
    }
    let n = u32_at(bytes, 40) as usize;
    (n <= MAX_COMMIT && bytes.len() >= 48 + n && unseal(&bytes[..48 + n]).is_ok()).then(|| u32_at(bytes, 4))
}

/// A frame of `kind` holding `payload`, padded to its [`frame_len`].
pub(crate) fn encode_frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame_len(payload.len()) as usize);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[kind as u8, 0, 0, 0]);
    out.extend_from_slice(payload);
    let mut out = seal(out);
    out.resize(frame_len(payload.len()) as usize, 0);
    out
}

/// The CRC-32 a frame carries after its payload, as stored (not checked);
/// `None` if the frame is too short to hold one.
pub(crate) fn frame_checksum(frame: &[u8]) -> Option<u32> {
    let n = u32::from_le_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    let at = n.checked_add(8)?;
    Some(u32::from_le_bytes(frame.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// The payload of a frame read whole (`frame` is its extent's bytes),
/// which must be of `kind`.
pub(crate) fn decode_frame(frame: &[u8], kind: Kind) -> Result<&[u8], String> {
    if frame.len() < FRAME_OVERHEAD as usize {
        return Err(format!("{} bytes is too short for a record", frame.len()));
    }
    let n = u32_at(frame, 0) as usize;
    if frame_len(n) != frame.len() as u64 {
        return Err(format!("a payload length of {n} bytes in a record of {} bytes", frame.len()));
    }
    let body = unseal(&frame[..8 + n + 4])?;
    if frame[8 + n + 4..].iter().any(|&b| b != 0) {
        return Err("non-zero bytes in a record's padding".into());
    }
    if frame[4] != kind as u8 || frame[5..8] != [0, 0, 0] {
        return Err(format!("a record of kind {} where a {} record should be", frame[4], kind.name()));
    }
    Ok(&body[8..])
}

pub(crate) fn encode_free_list(extents: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 16 * extents.len());
    out.extend_from_slice(&(extents.len() as u64).to_le_bytes());
    for &(offset, len) in extents {
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    out
}

/// The free extents a free-list payload lists: in offset order, aligned,
/// disjoint and below `end`.
pub(crate) fn decode_free_list(payload: &[u8], end: u64) -> Result<Vec<(u64, u64)>, String> {
    if payload.len() < 8 {
        return Err("a free list without its count".into());
    }
    let count = u64_at(payload, 0);
    // The payload is padded with zeros to the frame `prepare` allocated
    // for it before it knew how many extents it would list.
    let listed = count.checked_mul(16).and_then(|n| n.checked_add(8)).filter(|&n| n <= payload.len() as u64);
    let Some(listed) = listed else {
        return Err(format!("a free list of {count} extents in {} bytes", payload.len()));
    };
    if payload[listed as usize..].iter().any(|&b| b != 0) {
        return Err("non-zero bytes after a free list's extents".into());
    }
    let mut extents = Vec::with_capacity(count as usize);
    let mut floor = DATA_START;
    for i in 0..count as usize {
        let (offset, len) = (u64_at(payload, 8 + 16 * i), u64_at(payload, 16 + 16 * i));
        let ok = offset >= floor
            && len > 0
            && offset.is_multiple_of(ALIGN)
            && len.is_multiple_of(ALIGN)
            && offset.checked_add(len).is_some_and(|stop| stop <= end);
        if !ok {
            return Err(format!(
                "free extent {i} ({len} bytes at {offset}) is out of order or out of bounds"
            ));
        }
        floor = offset + len;
        extents.push((offset, len));
    }
    Ok(extents)
}

/// Appends the CRC-32 of everything so far.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The bytes before the trailing CRC, if it matches.
fn unseal(bytes: &[u8]) -> Result<&[u8], String> {
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
    }
    Ok(body)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Runs every decoder on `bytes`: the decode fuzz target's entry point.
pub(crate) fn decode_all(bytes: &[u8]) {
    let _ = decode_header(bytes);
    let _ = decode_superblock(bytes);
    for kind in [Kind::Node, Kind::FreeList] {
        if let Ok(payload) = decode_frame(bytes, kind)
            && kind == Kind::FreeList
        {
            let _ = decode_free_list(payload, u64::MAX);
        }
    }
    let _ = decode_free_list(bytes, u64::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_zero_is_none() {
        let extent = Extent { offset: DATA_START + 4096, len: 1040 };
        assert_eq!(Extent::of(extent.address()), Some(extent));
        assert_eq!(Extent::of(Address(0)), None);
        assert!(!Extent { offset: 0, len: MAX_FRAME + ALIGN }.addressable());
    }

    #[test]
    #[cfg_attr(miri, ignore = "slow under Miri, and no unsafe code")]
    fn every_byte_flip_of_a_frame_or_superblock_is_caught() {
        let frame = encode_frame(Kind::Node, b"some node payload");
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                assert!(decode_frame(&bad, Kind::Node).is_err(), "byte {i} bit {bit}");
            }
        }
        let superblock = Superblock {
            sequence: 7,
            end: DATA_START + 4096,
            free_list: Some(Extent { offset: DATA_START, len: 64 }),
            free_bytes: 32,
            commit: b"commit".to_vec(),
        };
        let bytes = encode_superblock(&superblock);
        assert_eq!(decode_superblock(&bytes).unwrap(), Some(superblock));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(!matches!(decode_superblock(&bad), Ok(Some(_))), "byte {i}");
        }
    }

    #[test]
    fn free_lists_round_trip_and_are_checked() {
        let extents = vec![(DATA_START, 32), (DATA_START + 64, 16)];
        let payload = encode_free_list(&extents);
        assert_eq!(decode_free_list(&payload, DATA_START + 4096).unwrap(), extents);
        let mut padded = payload.clone();
        padded.resize(payload.len() + 52, 0);
        assert_eq!(decode_free_list(&padded, DATA_START + 4096).unwrap(), extents);
        padded[payload.len() + 51] = 1;
        assert!(decode_free_list(&padded, DATA_START + 4096).is_err());
        assert!(decode_free_list(&payload[..payload.len() - 1], DATA_START + 4096).is_err());
        assert!(decode_free_list(&payload, DATA_START + 48).is_err());
        let overlapping = encode_free_list(&[(DATA_START, 32), (DATA_START + 16, 16)]);
        assert!(decode_free_list(&overlapping, u64::MAX).is_err());
    }

    #[test]
    #[cfg_attr(miri, ignore = "slow under Miri, and no unsafe code")]
    fn arbitrary_bytes_never_panic() {
        let mut state = 1u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            decode_all(&bytes);
        }
    }
}
