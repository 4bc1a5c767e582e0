//! `Codec` impls: round trips, truncation, garbage input and error messages.

use std::fmt::Debug;
use std::sync::Arc;

use ghostbtree::{Codec, DecodeError};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn encode<T: Codec>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

fn decode_all<T: Codec>(mut input: &[u8]) -> Result<T, DecodeError> {
    let v = T::decode(&mut input)?;
    assert!(input.is_empty(), "{} bytes left over", input.len());
    Ok(v)
}

fn err<T: Codec + Debug>(bytes: &[u8]) -> String {
    T::decode(&mut &bytes[..]).expect_err("decoded invalid bytes").to_string()
}

/// Encodes `v` after some existing bytes and decodes it back with trailing
/// bytes present, checking it reads exactly its own encoding, and that every
/// strict prefix of the encoding fails. Returns the decoded value.
fn roundtrip<T: Codec>(v: &T) -> Result<T, TestCaseError> {
    let mut buf = vec![0xAA];
    v.encode(&mut buf);
    prop_assert_eq!(buf[0], 0xAA, "encode must append");
    let end = buf.len();
    buf.extend_from_slice(&[0xBB, 0xCC]);
    let mut input = &buf[1..];
    let back = T::decode(&mut input).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(input, &[0xBB, 0xCC][..], "decode must consume exactly the encoding");
    let enc = &buf[1..end];
    for n in 0..enc.len() {
        prop_assert!(T::decode(&mut &enc[..n]).is_err(), "prefix {n}/{} of {enc:?} decoded", enc.len());
    }
    Ok(back)
}

fn rt<T: Codec + PartialEq + Debug>(v: T) -> Result<(), TestCaseError> {
    let back = roundtrip(&v)?;
    prop_assert_eq!(&back, &v);
    if let Some(width) = T::WIDTH {
        prop_assert_eq!(encode(&v).len(), width, "WIDTH says every encoding of {:?} has {} bytes", v, width);
    }
    Ok(())
}

/// Encodes all of `vs` back to back and decodes them in sequence.
fn rt_seq<T: Codec + PartialEq + Debug>(vs: Vec<T>) -> Result<(), TestCaseError> {
    let mut buf = Vec::new();
    for v in &vs {
        v.encode(&mut buf);
    }
    let mut input = &buf[..];
    for v in &vs {
        let back = T::decode(&mut input).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
        prop_assert_eq!(&back, v);
    }
    prop_assert!(input.is_empty());
    // All at once, as a node's keys or values are decoded.
    let mut all = Vec::new();
    let mut input = &buf[..];
    T::decode_into(&mut input, vs.len(), &mut all)
        .map_err(|e| TestCaseError::fail(format!("decode_into: {e}")))?;
    prop_assert_eq!(&all, &vs);
    prop_assert!(input.is_empty());
    if !buf.is_empty() {
        prop_assert!(
            T::decode_into(&mut &buf[..buf.len() - 1], vs.len(), &mut Vec::new()).is_err(),
            "cut short"
        );
    }
    Ok(())
}

/// Decoding garbage returns Ok or Err without panicking; what it accepts is
/// canonical: re-encoding gives back exactly the bytes it consumed.
fn garbage<T: Codec>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut input = bytes;
    if let Ok(v) = T::decode(&mut input) {
        let used = &bytes[..bytes.len() - input.len()];
        prop_assert_eq!(encode(&v), used);
    }
    Ok(())
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Mostly short, sometimes past one and two varint bytes of length.
    prop_oneof![4 => vec(any::<u8>(), 0..20), 1 => vec(any::<u8>(), 100..20_000)]
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![4 => any::<String>(), 1 => "\\PC{100,300}"]
}

macro_rules! roundtrips {
    ($($name:ident: $t:ty = $strategy:expr;)*) => {
        mod roundtrip {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(256))]
                $(
                    #[test]
                    fn $name(v in $strategy, vs in vec($strategy, 0..8)) {
                        rt::<$t>(v)?;
                        rt_seq::<$t>(vs)?;
                    }
                )*
            }
        }
    };
}

roundtrips! {
    u8_: u8 = any::<u8>();
    u16_: u16 = any::<u16>();
    u32_: u32 = any::<u32>();
    u64_: u64 = any::<u64>();
    u128_: u128 = any::<u128>();
    usize_: usize = any::<usize>();
    i8_: i8 = any::<i8>();
    i16_: i16 = any::<i16>();
    i32_: i32 = any::<i32>();
    i64_: i64 = any::<i64>();
    i128_: i128 = any::<i128>();
    isize_: isize = any::<isize>();
    bool_: bool = any::<bool>();
    unit: () = Just(());
    string: String = any_string();
    vec_u8: Vec<u8> = any_bytes();
    array_0: [u8; 0] = Just([]);
    array_5: [u8; 5] = any::<[u8; 5]>();
    array_32: [u8; 32] = any::<[u8; 32]>();
    box_u8: Box<[u8]> = any_bytes().prop_map(Box::from);
    arc_str: Arc<str> = any_string().prop_map(Arc::from);
    arc_u8: Arc<[u8]> = any_bytes().prop_map(Arc::from);
    pair: (u32, String) = any::<(u32, String)>();
    nested_pair: ((u8, Arc<str>), (Option<i64>, [u8; 3])) =
        (any::<u8>(), any_string().prop_map(Arc::from), any::<Option<i64>>(), any::<[u8; 3]>())
            .prop_map(|(a, b, c, d)| ((a, b), (c, d)));
    option_u64: Option<u64> = any::<Option<u64>>();
    option_bytes: Option<Vec<u8>> = proptest::option::of(any_bytes());
    option_unit: Option<()> = any::<Option<()>>();
    option_option: Option<Option<bool>> = any::<Option<Option<bool>>>();
    set_entry: (Arc<[u8]>, ()) = any_bytes().prop_map(|b| (Arc::from(b), ()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Floats round-trip bit for bit, NaN payloads and signed zeros included.
    #[test]
    fn floats(a in any::<u32>(), b in any::<u64>(), c in any::<f32>(), d in any::<f64>()) {
        for x in [f32::from_bits(a), c] {
            prop_assert_eq!(roundtrip(&x)?.to_bits(), x.to_bits());
        }
        for x in [f64::from_bits(b), d] {
            prop_assert_eq!(roundtrip(&x)?.to_bits(), x.to_bits());
        }
    }

    /// Values of different types back to back decode in sequence.
    #[test]
    fn mixed_sequence(
        a in any::<u16>(),
        b in any_string(),
        c in any::<Option<i32>>(),
        d in any_bytes(),
        e in any::<bool>(),
        f in any::<[u8; 4]>(),
    ) {
        let mut buf = Vec::new();
        a.encode(&mut buf);
        b.encode(&mut buf);
        c.encode(&mut buf);
        d.encode(&mut buf);
        e.encode(&mut buf);
        f.encode(&mut buf);
        ().encode(&mut buf);
        let mut input = &buf[..];
        prop_assert_eq!(u16::decode(&mut input)?, a);
        prop_assert_eq!(String::decode(&mut input)?, b);
        prop_assert_eq!(Option::<i32>::decode(&mut input)?, c);
        prop_assert_eq!(Vec::<u8>::decode(&mut input)?, d);
        prop_assert_eq!(bool::decode(&mut input)?, e);
        prop_assert_eq!(<[u8; 4]>::decode(&mut input)?, f);
        <()>::decode(&mut input)?;
        prop_assert!(input.is_empty());
    }

    /// The byte-string types share one encoding, as do the string types.
    #[test]
    fn shared_encodings(b in any_bytes(), s in any_string()) {
        let e = encode(&b);
        prop_assert_eq!(&encode(&Box::<[u8]>::from(&b[..])), &e);
        prop_assert_eq!(&encode(&Arc::<[u8]>::from(&b[..])), &e);
        let e = encode(&s);
        prop_assert_eq!(&encode(&Arc::<str>::from(&s[..])), &e);
        prop_assert_eq!(&encode(&s.as_bytes().to_vec()), &e);
    }

    /// Arbitrary bytes never panic a decoder.
    #[test]
    fn garbage_never_panics(b in vec(any::<u8>(), 0..64)) {
        garbage::<u8>(&b)?;
        garbage::<u64>(&b)?;
        garbage::<i128>(&b)?;
        garbage::<usize>(&b)?;
        garbage::<isize>(&b)?;
        garbage::<f64>(&b)?;
        garbage::<bool>(&b)?;
        garbage::<()>(&b)?;
        garbage::<String>(&b)?;
        garbage::<Vec<u8>>(&b)?;
        garbage::<Box<[u8]>>(&b)?;
        garbage::<Arc<str>>(&b)?;
        garbage::<Arc<[u8]>>(&b)?;
        garbage::<[u8; 5]>(&b)?;
        garbage::<(u32, String)>(&b)?;
        garbage::<Option<Vec<u8>>>(&b)?;
        garbage::<Option<(bool, Arc<str>)>>(&b)?;
    }

    /// Garbage biased to look like a short length prefix followed by data.
    #[test]
    fn garbage_with_small_prefix(len in 0u8..40, b in vec(any::<u8>(), 0..48)) {
        let mut input = vec![len];
        input.extend_from_slice(&b);
        garbage::<String>(&input)?;
        garbage::<Arc<str>>(&input)?;
        garbage::<Vec<u8>>(&input)?;
        garbage::<(Vec<u8>, Option<String>)>(&input)?;
    }
}

#[test]
fn varint_lengths() {
    // The length prefix is LEB128: one byte below 128, two below 16384.
    for (len, prefix) in [(0, &[0x00][..]), (127, &[0x7f]), (128, &[0x80, 0x01]), (300, &[0xac, 0x02])] {
        let enc = encode(&vec![7u8; len]);
        assert_eq!(&enc[..prefix.len()], prefix, "length {len}");
        assert_eq!(enc.len(), prefix.len() + len);
    }
    assert_eq!(encode(&"hé".to_string()), [3, b'h', 0xc3, 0xa9]);
}

#[test]
fn fixed_encodings() {
    assert_eq!(encode(&0x0102_0304u32), [4, 3, 2, 1]);
    assert_eq!(encode(&-2i16), [0xfe, 0xff]);
    assert_eq!(encode(&1usize), [1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(encode(&-1isize), [0xff; 8]);
    assert_eq!(encode(&1.0f32), 1.0f32.to_le_bytes());
    assert_eq!(encode(&true), [1]);
    assert_eq!(encode(&()), [0u8; 0]);
    assert_eq!(encode(&[9u8, 8, 7]), [9, 8, 7]);
    assert_eq!(encode(&Some(5u8)), [1, 5]);
    assert_eq!(encode(&None::<u8>), [0]);
    assert_eq!(encode(&(1u8, 2u16)), [1, 2, 0]);
}

#[test]
fn overlong_and_overflowing_varints() {
    // 0 and 1 with a redundant zero group.
    assert!(err::<Vec<u8>>(&[0x80, 0x00]).contains("overlong"));
    assert!(err::<String>(&[0x81, 0x00, 0x00]).contains("overlong"));
    // Ten bytes whose last carries bits past 64.
    let mut over = vec![0xff; 9];
    over.push(0x02);
    assert!(err::<Vec<u8>>(&over).contains("overflows"));
    // Eleven bytes: continuation on the tenth.
    let mut long = vec![0x80; 10];
    long.push(0x01);
    assert!(err::<Vec<u8>>(&long).contains("overflows"));
    // Cut short inside the prefix.
    assert_eq!(err::<Vec<u8>>(&[0x80]), "Vec<u8>: length prefix cut short after 1 bytes");
    assert_eq!(err::<Vec<u8>>(&[]), "Vec<u8>: length prefix cut short after 0 bytes");
}

#[test]
fn huge_length_does_not_allocate() {
    // u64::MAX as a length: allocating it would abort the test process.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    max.extend_from_slice(&[1, 2, 3]);
    let msg = err::<Vec<u8>>(&max);
    assert_eq!(msg, "Vec<u8>: length 18446744073709551615 exceeds the 3 bytes left");
    assert!(err::<String>(&max).starts_with("String: length 18446744073709551615"));
    assert!(err::<Arc<[u8]>>(&max).starts_with("Arc<[u8]>: length"));
    assert!(err::<Box<[u8]>>(&max).starts_with("Box<[u8]>: length"));
    assert!(err::<Arc<str>>(&max).starts_with("Arc<str>: length"));

    let mut mid = vec![0xc0, 0x84, 0x3d]; // 1_000_000 as LEB128
    mid.extend_from_slice(&[0; 12]);
    assert_eq!(err::<String>(&mid), "String: length 1000000 exceeds the 12 bytes left");
}

#[test]
fn invalid_utf8() {
    let bad = [3, b'a', 0xc3, 0x28];
    assert_eq!(err::<String>(&bad), "String: invalid UTF-8 at byte 1 of 3");
    assert!(err::<Arc<str>>(&bad).starts_with("Arc<str>: invalid UTF-8"));
    // The same bytes are a fine Vec<u8>.
    assert_eq!(decode_all::<Vec<u8>>(&bad).unwrap(), [b'a', 0xc3, 0x28]);
    // A code point cut by the length.
    assert!(err::<String>(&[1, 0xc3, 0xa9]).contains("invalid UTF-8"));
}

#[test]
fn bad_tags() {
    assert_eq!(err::<bool>(&[7]), "bool: byte 7 is not 0 or 1");
    assert_eq!(err::<bool>(&[]), "bool: needs 1 bytes, 0 left");
    assert_eq!(err::<Option<u8>>(&[2, 0]), "Option: tag 2 is not 0 or 1");
    assert_eq!(err::<Option<u8>>(&[]), "Option: needs 1 bytes, 0 left");
    // The inner type names itself.
    assert_eq!(err::<Option<u32>>(&[1, 0, 0]), "u32: needs 4 bytes, 2 left");
    assert_eq!(err::<Option<bool>>(&[1, 9]), "bool: byte 9 is not 0 or 1");
}

#[test]
fn short_fixed_width() {
    assert_eq!(err::<u32>(&[1, 2]), "u32: needs 4 bytes, 2 left");
    assert_eq!(err::<i128>(&[0; 15]), "i128: needs 16 bytes, 15 left");
    assert_eq!(err::<usize>(&[0; 4]), "usize: needs 8 bytes, 4 left");
    assert_eq!(err::<f64>(&[]), "f64: needs 8 bytes, 0 left");
    assert_eq!(err::<[u8; 5]>(&[1, 2]), "[u8; 5]: needs 5 bytes, 2 left");
    assert_eq!(err::<(u8, u16)>(&[1, 2]), "u16: needs 2 bytes, 1 left");
    assert!(decode_all::<[u8; 0]>(&[]).is_ok());
}

#[cfg(target_pointer_width = "32")]
#[test]
fn usize_too_wide() {
    assert_eq!(err::<usize>(&[0, 0, 0, 0, 1, 0, 0, 0]), "usize: 4294967296 does not fit in 32 bits");
}

#[test]
fn decode_error_is_an_error() {
    let e: Box<dyn std::error::Error> = Box::new(bool::decode(&mut &[3u8][..]).unwrap_err());
    assert_eq!(e.to_string(), "bool: byte 3 is not 0 or 1");
}

#[cfg(feature = "serde")]
mod serde_wrapper {
    use super::*;
    use ghostbtree::Serde;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
    struct Point {
        name: String,
        x: i32,
        y: u64,
        tags: Vec<String>,
        hidden: Option<bool>,
    }

    fn point() -> impl Strategy<Value = Point> {
        (any::<String>(), any::<i32>(), any::<u64>(), vec(any::<String>(), 0..4), any::<Option<bool>>())
            .prop_map(|(name, x, y, tags, hidden)| Point { name, x, y, tags, hidden })
    }

    #[test]
    fn derived_struct() {
        let p =
            Point { name: "origin".into(), x: -3, y: 1 << 40, tags: vec!["a".into()], hidden: Some(true) };
        let enc = encode(&Serde(p.clone()));
        assert_eq!(enc[0] as usize, enc.len() - 1, "one-byte length prefix, then postcard");
        assert_eq!(decode_all::<Serde<Point>>(&enc).unwrap(), Serde(p));
    }

    #[test]
    fn ord_is_the_inner_ord() {
        let a = Serde((1u32, "b".to_string()));
        let b = Serde((2u32, "a".to_string()));
        assert!(a < b);
        assert_eq!(Serde(5u8).cmp(&Serde(5u8)), std::cmp::Ordering::Equal);
    }

    #[test]
    fn errors() {
        // A valid postcard u8 with an extra byte inside the prefix.
        assert_eq!(err::<Serde<u8>>(&[2, 7, 0]), "Serde: 1 bytes left over after the value");
        assert!(err::<Serde<bool>>(&[1, 9]).starts_with("Serde: postcard: "));
        assert_eq!(err::<Serde<u8>>(&[5, 1]), "Serde: length 5 exceeds the 1 bytes left");
    }

    /// A sequence of unknown length, which postcard cannot write.
    struct Unsized;

    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq((0..3).filter(|_| true))
        }
    }

    impl<'de> Deserialize<'de> for Unsized {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Ok(Unsized)
        }
    }

    #[test]
    #[should_panic(expected = "did not serialize")]
    fn serialize_failure_panics() {
        encode(&Serde(Unsized));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn roundtrips(p in point(), ps in vec(point(), 0..4), t in any::<(u64, String, Vec<u8>)>()) {
            rt(Serde(p))?;
            rt_seq(ps.into_iter().map(Serde).collect())?;
            rt(Serde(t.clone()))?;
            rt((Serde(t), 7u8))?;
        }

        #[test]
        fn garbage_never_panics(b in vec(any::<u8>(), 0..64)) {
            // Not `garbage`: postcard accepts some non-canonical bytes.
            let _ = Serde::<Point>::decode(&mut &b[..]);
            let _ = Serde::<(u64, String, Vec<u8>)>::decode(&mut &b[..]);
            let _ = Serde::<Vec<Option<u32>>>::decode(&mut &b[..]);
        }
    }
}
