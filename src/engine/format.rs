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

/// Whether a node record's own CRC is checked when it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Crc {
    Check,
    /// The store checked the bytes it returned against a checksum of its
    /// own that covers the whole record (`Store::checks_records`: a file
    /// store's frame CRC): a second pass over the same bytes finds nothing
    /// the first did not (it was ~4 % of a random read through the cache).
    Trusted,
}

/// The bytes before the CRC, if the CRC matches.
fn unseal(record: &[u8]) -> Result<&[u8], String> {
    unseal_with(record, Crc::Check)
}

/// The bytes before the CRC, checked unless `crc` trusts them.
fn unseal_with(record: &[u8], crc: Crc) -> Result<&[u8], String> {
    let Some(split) = record.len().checked_sub(4) else {
        return Err(format!("{} bytes is too short for a record", record.len()));
    };
    let (body, stored) = record.split_at(split);
    if crc == Crc::Trusted {
        return Ok(body);
    }
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
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
    crc: Crc,
) -> Result<Decoded<K, V>, String> {
    let mut input = unseal_with(record, crc)?;
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
    let body = if kind == LEAF {
        let mut keys = Entries::with_capacity(count);
        decode_into(&mut input, count, &mut keys, "key")?;
        check_keys(&keys, low.as_ref(), high.as_ref(), false)?;
        let mut vals = Entries::with_capacity(count);
        decode_into(&mut input, count, &mut vals, "value")?;
        DecodedBody::Leaf { keys, vals }
    } else {
        let mut keys = Vec::with_capacity(count - 1);
        decode_into(&mut input, count - 1, &mut keys, "key")?;
        check_keys(&keys, low.as_ref(), high.as_ref(), true)?;
        // `count` is at most the record's length: no overflow.
        let bytes = take(&mut input, count * 8)?;
        let children = bytes
            .chunks_exact(8)
            .map(|chunk| Address(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))))
            .collect();
        DecodedBody::Branch { level, keys, children }
    };
    if !input.is_empty() {
        return Err(format!("{} bytes trail the node", input.len()));
    }
    Ok(Decoded { low, high, body })
}

/// Looks a key up in a leaf record without building the node (a read
/// through the cache: `through.rs`). `cmp` orders a stored key against the
/// key sought. `Ok(None)`: the key lies outside the leaf's bounds (the
/// caller loads the node as usual); `Ok(Some(value))` otherwise.
///
/// The checksum, the header and every length are checked as by
/// [`decode_node`], but only the keys a binary search visits are decoded
/// (all keys up to the one sought, for a type without a fixed width), and
/// key order is not checked: damaged bytes whose checksum holds can give a
/// wrong answer here, never a panic.
pub(crate) fn search_leaf<K: Codec, V: Codec>(
    record: &[u8],
    crc: Crc,
    cmp: &mut dyn FnMut(&K) -> std::cmp::Ordering,
) -> Result<Option<Option<V>>, String> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let mut input = unseal_with(record, crc)?;
    let fixed = take(&mut input, 8)?;
    let (version, kind, level, flags) = (fixed[0], fixed[1], fixed[2], fixed[3]);
    let count = u32::from_le_bytes(fixed[4..8].try_into().expect("4 bytes")) as usize;
    if version != NODE_FORMAT {
        return Err(format!("node format {version}, this build reads format {NODE_FORMAT}"));
    }
    if kind != LEAF || level != 0 {
        return Err(format!("kind {kind} at level {level}, the parent expects a leaf"));
    }
    if flags & !0b11 != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    if count > input.len() + 1 {
        return Err(format!("count {count} exceeds the {} bytes left", input.len()));
    }
    if flags & 1 != 0 && cmp(&decode::<K>(&mut input, "low bound")?) == Greater {
        return Ok(None); // below the leaf
    }
    if flags & 2 != 0 && cmp(&decode::<K>(&mut input, "high bound")?) != Greater {
        return Ok(None); // at or past its high bound
    }
    let found = match K::WIDTH {
        Some(width) => {
            let keys = take(&mut input, array_len(count, width)?)?;
            let (mut lo, mut hi) = (0, count);
            let mut found = None;
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match cmp(&decode::<K>(&mut &keys[mid * width..], "key")?) {
                    Less => lo = mid + 1,
                    Greater => hi = mid,
                    Equal => {
                        found = Some(mid);
                        break;
                    }
                }
            }
            found
        }
        None => {
            let mut found = None;
            for i in 0..count {
                let key = decode::<K>(&mut input, "key")?;
                if found.is_none() && cmp(&key) == Equal {
                    found = Some(i); // the values start after the last key
                }
            }
            found
        }
    };
    let Some(i) = found else { return Ok(Some(None)) };
    let value = match V::WIDTH {
        Some(width) => {
            let vals = take(&mut input, array_len(count, width)?)?;
            decode::<V>(&mut &vals[i * width..], "value")?
        }
        None => {
            for _ in 0..i {
                decode::<V>(&mut input, "value")?;
            }
            decode::<V>(&mut input, "value")?
        }
    };
    Ok(Some(Some(value)))
}

/// The bytes of `count` items of `width` bytes each.
fn array_len(count: usize, width: usize) -> Result<usize, String> {
    count.checked_mul(width).ok_or_else(|| format!("{count} items of {width} bytes overflow"))
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
    // The next epochs must exist (found by the decode fuzz target: an epoch
    // of u64::MAX overflowed at open, u64::MAX - 1 at the next checkpoint).
    // A tree checkpointing a million times a second reaches 2^63 in 290,000
    // years: past it is damage, as for the superblock's sequence number.
    if epoch > 1 << 63 {
        return Err(format!("a checkpoint epoch of {epoch}, past 2^63, which no tree reaches"));
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

fn decode_into<T: Codec>(
    input: &mut &[u8],
    count: usize,
    out: &mut impl Extend<T>,
    what: &str,
) -> Result<(), String> {
    T::decode_into(input, count, out).map_err(|DecodeError { what: why }| format!("{what}: {why}"))
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
            let _ = decode_node::<u32, String>(&bytes, &expected(level), Crc::Check);
            // As a store that checked them would hand them over: no CRC to stop them.
            let _ = decode_node::<u32, String>(&bytes, &expected(level), Crc::Trusted);
            let _ = decode_commit(&bytes);
        }

        #[test]
        fn records_round_trip_and_every_damage_is_caught(
            keys in proptest::collection::btree_set(any::<u32>(), 0..20),
            flip in any::<usize>(),
        ) {
            let keys: Vec<u32> = keys.into_iter().collect();
            let record = leaf_record(&keys);
            let decoded = decode_node::<u32, String>(&record, &expected(0), Crc::Check).unwrap();
            let DecodedBody::Leaf { keys: got, vals } = decoded.body else { panic!("a leaf") };
            prop_assert_eq!(&got[..], &keys[..]);
            prop_assert!(vals.iter().zip(&keys).all(|(v, k)| *v == k.to_string()));
            for cut in 0..record.len() {
                prop_assert!(decode_node::<u32, String>(&record[..cut], &expected(0), Crc::Check).is_err());
            }
            let mut damaged = record.clone();
            damaged[flip % record.len()] ^= 0x20;
            prop_assert!(decode_node::<u32, String>(&damaged, &expected(0), Crc::Check).is_err());
        }
    }

    /// `search_leaf` against a lookup in the decoded node, for every key
    /// around the stored ones, with fixed-width keys and values (binary
    /// search, values by index) and with variable-width ones (decoding).
    fn search_agrees<K, V>(low: Option<K>, high: Option<K>, keys: &[K], vals: &[V], probes: &[K])
    where
        K: Codec + Ord + Clone + std::fmt::Debug,
        V: Codec + PartialEq + std::fmt::Debug,
    {
        let record = encode_leaf(low.as_ref(), high.as_ref(), keys, vals).unwrap();
        for probe in probes {
            let got = search_leaf::<K, V>(&record, Crc::Check, &mut |stored: &K| stored.cmp(probe)).unwrap();
            let inside =
                low.as_ref().is_none_or(|low| probe >= low) && high.as_ref().is_none_or(|high| probe < high);
            let want = inside.then(|| keys.iter().position(|k| k == probe).map(|i| &vals[i]));
            assert_eq!(got.as_ref().map(Option::as_ref), want, "probe {probe:?} in {keys:?}");
        }
    }

    proptest! {
        #[test]
        #[cfg_attr(miri, ignore = "slow under Miri, and no unsafe code")]
        fn searching_a_record_agrees_with_decoding_it(
            keys in proptest::collection::btree_set(10u32..1000, 0..40),
            below in 0u32..10,
            above in 0u32..10,
            bounded in any::<(bool, bool)>(),
            flip in any::<usize>(),
        ) {
            let keys: Vec<u32> = keys.into_iter().collect();
            let low = bounded.0.then(|| keys.first().copied().unwrap_or(10) - below);
            let high = bounded.1.then(|| keys.last().copied().unwrap_or(10) + 1 + above);
            let probes: Vec<u32> = (0..1012).collect();
            let vals: Vec<u64> = keys.iter().map(|&k| u64::from(k) * 7).collect();
            search_agrees(low, high, &keys, &vals, &probes);
            let strings: Vec<String> = keys.iter().map(|k| format!("v{k}")).collect();
            search_agrees(low, high, &keys, &strings, &probes);
            let text = |k: &u32| format!("{k:04}");
            let (tkeys, tprobes): (Vec<String>, Vec<String>) = (keys.iter().map(text).collect(), probes.iter().map(text).collect());
            search_agrees(low.as_ref().map(text), high.as_ref().map(text), &tkeys, &vals, &tprobes);
            search_agrees(low.as_ref().map(text), high.as_ref().map(text), &tkeys, &strings, &tprobes);
            // Damage: an error (the checksum), never a panic.
            let record = encode_leaf::<u32, String>(low.as_ref(), high.as_ref(), &keys, &strings).unwrap();
            let mut damaged = record.clone();
            damaged[flip % record.len()] ^= 0x20;
            prop_assert!(search_leaf::<u32, String>(&damaged, Crc::Check, &mut |k: &u32| k.cmp(&500)).is_err());
            for cut in 0..record.len() {
                prop_assert!(search_leaf::<u32, String>(&record[..cut], Crc::Check, &mut |k: &u32| k.cmp(&500)).is_err());
            }
        }

        #[test]
        #[cfg_attr(miri, ignore = "slow under Miri, and no unsafe code")]
        fn searching_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), probe in any::<u32>()) {
            let _ = search_leaf::<u32, u64>(&bytes, Crc::Check, &mut |k: &u32| k.cmp(&probe));
            let _ = search_leaf::<String, String>(&bytes, Crc::Check, &mut |k: &String| k.as_str().cmp("k"));
            let _ = search_leaf::<u32, u64>(&bytes, Crc::Trusted, &mut |k: &u32| k.cmp(&probe));
            let _ = search_leaf::<String, String>(&bytes, Crc::Trusted, &mut |k: &String| k.as_str().cmp("k"));
            // With a valid checksum, so the fields are what gets tested.
            let _ = search_leaf::<u32, u64>(&seal(bytes.clone()), Crc::Check, &mut |k: &u32| k.cmp(&probe));
            let _ = search_leaf::<u64, String>(&seal(bytes), Crc::Check, &mut |k: &u64| k.cmp(&u64::from(probe)));
        }
    }

    #[test]
    fn only_leaves_are_searched() {
        let branch =
            encode_branch::<u32>(1, None, None, &[5], &[Address(16 << 24), Address(32 << 24)]).unwrap();
        let err = search_leaf::<u32, u64>(&branch, Crc::Check, &mut |k: &u32| k.cmp(&5)).unwrap_err();
        assert!(err.contains("expects a leaf"), "{err}");
    }

    #[test]
    fn a_record_must_be_what_its_parent_expects() {
        let record = leaf_record(&[1, 2, 3]);
        let wrong_level = decode_node::<u32, String>(&record, &expected(1), Crc::Check).err().unwrap();
        assert!(wrong_level.contains("the parent expects level 1"), "{wrong_level}");
        let low = 2;
        let bounds = Expected { level: 0, bounds: Some((Some(&low), None)) };
        let wrong_bounds = decode_node::<u32, String>(&record, &bounds, Crc::Check).err().unwrap();
        assert!(wrong_bounds.contains("bounds"), "{wrong_bounds}");
    }

    #[test]
    fn commit_records_round_trip() {
        let commit = Commit { root: Address(77), level: 3, epoch: 9, len: 1234 };
        assert_eq!(decode_commit(&encode_commit(&commit).unwrap()).unwrap(), commit);
        assert!(decode_commit(b"GBTC not a commit record at all, really").is_err());
        for epoch in [u64::MAX, u64::MAX - 1, (1 << 63) + 1] {
            let late = Commit { epoch, ..commit };
            assert!(
                decode_commit(&encode_commit(&late).unwrap()).is_err(),
                "epoch {epoch}: too few after it"
            );
        }
        let latest = Commit { epoch: 1 << 63, ..commit };
        assert_eq!(decode_commit(&encode_commit(&latest).unwrap()).unwrap(), latest);
    }
}
