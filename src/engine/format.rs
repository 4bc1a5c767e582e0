//! The stored encoding of node versions and of the commit record.
//!
//! ```text
//! node record (all integers little-endian):
//!   0      u8   format version (1)
//!   1      u8   kind: 0 leaf, 1 branch
//!   2      u8   level (0 for a leaf)
//!   3      u8   flags: bit 0 low bound present, bit 1 high bound present
//!   4      u32  count: entries of a leaf, children of a branch (>= 1)
//!   8      K    low bound, if flagged
//!          K    high bound, if flagged
//!   leaf:  count x K keys, then count x V values
//!   branch: (count - 1) x K separators, then count x u64 child addresses
//!   end-4  u32  CRC-32 of every byte before it
//!
//! commit record:
//!   0      [u8; 4] magic "GBTC"
//!   4      u8   format version (1)
//!   5      u8   level of the root
//!   6      u64  root address
//!   14     u64  checkpoint epoch
//!   22     u64  entry count
//!   30     u32  CRC-32 of bytes 0..30
//! ```
//!
//! A stored tree has no right links: every image is written fully posted
//! (a checkpoint folds unposted splits into their parent's image), so a
//! node's range and right neighbour follow from its parent when it is
//! loaded. The bounds are stored anyway and checked against the parent's
//! on load, which catches a record read from the wrong address.
//!
//! Decoding checks the checksum, every length against the bytes left, key
//! order and bounds, and that nothing trails: corrupt bytes are an error,
//! never a panic and never a malformed node.

use crate::codec::{Codec, DecodeError};
use crate::store::Address;

use super::node::{Entries, Misfit, misfits};

const NODE_FORMAT: u8 = 1;
const COMMIT_MAGIC: &[u8; 4] = b"GBTC";
const COMMIT_FORMAT: u8 = 1;
const LEAF: u8 = 0;
const BRANCH: u8 = 1;

/// A decoded node record, before its children get slots.
pub(crate) struct Decoded<K, V> {
    pub(crate) low: Option<K>,
    pub(crate) high: Option<K>,
    pub(crate) body: DecodedBody<K, V>,
}

pub(crate) enum DecodedBody<K, V> {
    Leaf { keys: Entries<K>, vals: Entries<V> },
    Branch { level: u32, keys: Vec<K>, children: Vec<Address> },
}

/// What the parent says a record must be.
pub(crate) struct Expected<'a, K> {
    pub(crate) level: u32,
    /// `(low, high)`, when the reader knows them.
    pub(crate) bounds: Option<(Option<&'a K>, Option<&'a K>)>,
}

/// The commit record: the root of the last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Commit {
    pub(crate) root: Address,
    pub(crate) level: u32,
    pub(crate) epoch: u64,
    pub(crate) len: u64,
}

/// Why a node cannot be encoded: its level or count does not fit the
/// record's fields (unreachable with capacities `Config` accepts).
pub(crate) type TooLarge = &'static str;

/// Encodes a leaf version.
pub(crate) fn encode_leaf<K: Codec, V: Codec>(
    low: Option<&K>,
    high: Option<&K>,
    keys: &[K],
    vals: &[V],
) -> Result<Vec<u8>, TooLarge> {
    let mut out = header(LEAF, 0, low, high, keys.len())?;
    keys.iter().for_each(|key| key.encode(&mut out));
    vals.iter().for_each(|value| value.encode(&mut out));
    Ok(seal(out))
}

/// Encodes a branch image: `keys.len() + 1 == children.len()`.
pub(crate) fn encode_branch<K: Codec>(
    level: u32,
    low: Option<&K>,
    high: Option<&K>,
    keys: &[K],
    children: &[Address],
) -> Result<Vec<u8>, TooLarge> {
    debug_assert_eq!(keys.len() + 1, children.len());
    let mut out = header(BRANCH, level, low, high, children.len())?;
    keys.iter().for_each(|key| key.encode(&mut out));
    children.iter().for_each(|child| out.extend_from_slice(&child.0.to_le_bytes()));
    Ok(seal(out))
}

fn header<K: Codec>(
    kind: u8,
    level: u32,
    low: Option<&K>,
    high: Option<&K>,
    count: usize,
) -> Result<Vec<u8>, TooLarge> {
    // Levels above 255 would need more than 3^255 leaves; counts above
    // `u32::MAX`, capacities `Config` refuses.
    let level = u8::try_from(level).map_err(|_| "a node above level 255")?;
    let count = u32::try_from(count).map_err(|_| "a node of more than u32::MAX entries")?;
    let mut out = Vec::with_capacity(64 + 16 * count as usize);
    let flags = u8::from(low.is_some()) | u8::from(high.is_some()) << 1;
    out.extend_from_slice(&[NODE_FORMAT, kind, level, flags]);
    out.extend_from_slice(&count.to_le_bytes());
    low.into_iter().chain(high).for_each(|bound| bound.encode(&mut out));
    Ok(out)
}

/// Appends the CRC of everything so far.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The bytes before the CRC, if the CRC matches.
fn unseal(record: &[u8]) -> Result<&[u8], String> {
    let Some(split) = record.len().checked_sub(4) else {
        return Err(format!("{} bytes is too short for a record", record.len()));
    };
    let (body, crc) = record.split_at(split);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    Ok(body)
}

/// Decodes a node record, checking it against what its parent expects.
pub(crate) fn decode_node<K: Codec + Ord, V: Codec>(
    record: &[u8],
    expected: &Expected<'_, K>,
) -> Result<Decoded<K, V>, String> {
    let mut input = unseal(record)?;
    let fixed = take(&mut input, 8)?;
    let (version, kind, level, flags) = (fixed[0], fixed[1], u32::from(fixed[2]), fixed[3]);
    let count = u32::from_le_bytes(fixed[4..8].try_into().expect("4 bytes")) as usize;
    if version != NODE_FORMAT {
        return Err(format!("node format {version}, this build reads format {NODE_FORMAT}"));
    }
    let kind_level_ok = match kind {
        LEAF => level == 0,
        BRANCH => level > 0 && count >= 1,
        _ => return Err(format!("unknown node kind {kind}")),
    };
    if !kind_level_ok || level != expected.level {
        return Err(format!(
            "kind {kind} at level {level} with {count} entries, the parent expects level {}",
            expected.level
        ));
    }
    if flags & !0b11 != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    // Every entry takes at least one byte; refuse counts the record cannot hold
    // before allocating for them.
    if count > input.len() + 1 {
        return Err(format!("count {count} exceeds the {} bytes left", input.len()));
    }
    let low = if flags & 1 != 0 { Some(decode::<K>(&mut input, "low bound")?) } else { None };
    let high = if flags & 2 != 0 { Some(decode::<K>(&mut input, "high bound")?) } else { None };
    if expected.bounds.is_some_and(|(el, eh)| low.as_ref() != el || high.as_ref() != eh) {
        return Err("bounds differ from the parent's separators".into());
    }
    let key_count = if kind == LEAF { count } else { count - 1 };
    let mut keys = Vec::with_capacity(key_count);
    for _ in 0..key_count {
        keys.push(decode::<K>(&mut input, "key")?);
    }
    check_keys(&keys, low.as_ref(), high.as_ref(), kind == BRANCH)?;
    let body = if kind == LEAF {
        let mut vals = Entries::with_capacity(count);
        for _ in 0..count {
            vals.push(decode::<V>(&mut input, "value")?);
        }
        DecodedBody::Leaf { keys: keys.into_iter().collect(), vals }
    } else {
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            let bytes = take(&mut input, 8)?;
            children.push(Address(u64::from_le_bytes(bytes.try_into().expect("8 bytes"))));
        }
        DecodedBody::Branch { level, keys, children }
    };
    if !input.is_empty() {
        return Err(format!("{} bytes trail the node", input.len()));
    }
    Ok(Decoded { low, high, body })
}

/// Keys strictly increasing and inside the node's bounds (`node.rs`).
fn check_keys<K: Ord>(keys: &[K], low: Option<&K>, high: Option<&K>, branch: bool) -> Result<(), String> {
    match misfits(keys, low, high, branch).next() {
        None => Ok(()),
        Some(Misfit::OutOfOrder(..)) => Err("keys out of order".into()),
        Some(Misfit::Below(_) | Misfit::Above(_)) => Err("a key lies outside the node's bounds".into()),
    }
}

pub(crate) fn encode_commit(commit: &Commit) -> Result<Vec<u8>, TooLarge> {
    let level = u8::try_from(commit.level).map_err(|_| "a root above level 255")?;
    let mut out = Vec::with_capacity(34);
    out.extend_from_slice(COMMIT_MAGIC);
    out.extend_from_slice(&[COMMIT_FORMAT, level]);
    out.extend_from_slice(&commit.root.0.to_le_bytes());
    out.extend_from_slice(&commit.epoch.to_le_bytes());
    out.extend_from_slice(&commit.len.to_le_bytes());
    Ok(seal(out))
}

pub(crate) fn decode_commit(record: &[u8]) -> Result<Commit, String> {
    let body = unseal(record)?;
    if body.len() != 30 || &body[..4] != COMMIT_MAGIC {
        return Err("not a ghostbtree commit record".into());
    }
    if body[4] != COMMIT_FORMAT {
        return Err(format!("commit format {}, this build reads format {COMMIT_FORMAT}", body[4]));
    }
    let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let epoch = word(14);
    // The next epoch must exist (found by the decode fuzz target: an epoch
    // of u64::MAX overflowed at open).
    if epoch == u64::MAX {
        return Err("a checkpoint epoch of u64::MAX, which no tree reaches".into());
    }
    Ok(Commit { level: u32::from(body[5]), root: Address(word(6)), epoch, len: word(22) })
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if input.len() < n {
        return Err(format!("truncated: needs {n} more bytes, {} left", input.len()));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn decode<T: Codec>(input: &mut &[u8], what: &str) -> Result<T, String> {
    T::decode(input).map_err(|DecodeError { what: why }| format!("{what}: {why}"))
}

#[cfg(test)]
mod tests {
    //! Records from the store are untrusted: any bytes must decode to the
    //! node that was encoded or to an error, never panic.

    use super::*;
    use proptest::prelude::*;

    fn expected(level: u32) -> Expected<'static, u32> {
        Expected { level, bounds: Some((None, None)) }
    }

    fn leaf_record(keys: &[u32]) -> Vec<u8> {
        let vals: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        encode_leaf::<u32, String>(None, None, keys, &vals).unwrap()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), level in 0u32..3) {
            let _ = decode_node::<u32, String>(&bytes, &expected(level));
            let _ = decode_commit(&bytes);
        }

        #[test]
        fn records_round_trip_and_every_damage_is_caught(
            keys in proptest::collection::btree_set(any::<u32>(), 0..20),
            flip in any::<usize>(),
        ) {
            let keys: Vec<u32> = keys.into_iter().collect();
            let record = leaf_record(&keys);
            let decoded = decode_node::<u32, String>(&record, &expected(0)).unwrap();
            let DecodedBody::Leaf { keys: got, vals } = decoded.body else { panic!("a leaf") };
            prop_assert_eq!(&got[..], &keys[..]);
            prop_assert!(vals.iter().zip(&keys).all(|(v, k)| *v == k.to_string()));
            for cut in 0..record.len() {
                prop_assert!(decode_node::<u32, String>(&record[..cut], &expected(0)).is_err());
            }
            let mut damaged = record.clone();
            damaged[flip % record.len()] ^= 0x20;
            prop_assert!(decode_node::<u32, String>(&damaged, &expected(0)).is_err());
        }
    }

    #[test]
    fn a_record_must_be_what_its_parent_expects() {
        let record = leaf_record(&[1, 2, 3]);
        let wrong_level = decode_node::<u32, String>(&record, &expected(1)).err().unwrap();
        assert!(wrong_level.contains("the parent expects level 1"), "{wrong_level}");
        let low = 2;
        let bounds = Expected { level: 0, bounds: Some((Some(&low), None)) };
        let wrong_bounds = decode_node::<u32, String>(&record, &bounds).err().unwrap();
        assert!(wrong_bounds.contains("bounds"), "{wrong_bounds}");
    }

    #[test]
    fn commit_records_round_trip() {
        let commit = Commit { root: Address(77), level: 3, epoch: 9, len: 1234 };
        assert_eq!(decode_commit(&encode_commit(&commit).unwrap()).unwrap(), commit);
        assert!(decode_commit(b"GBTC not a commit record at all, really").is_err());
        let last = Commit { epoch: u64::MAX, ..commit };
        assert!(decode_commit(&encode_commit(&last).unwrap()).is_err(), "no epoch after it");
    }
}
