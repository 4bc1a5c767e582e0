//! Key and value codecs: how keys and values become bytes on storage.
//!
//! A persistent tree needs `K: Codec` and `V: Codec`. Encodings are explicit
//! little-endian and self-delimiting (a decoder knows where a value ends), so
//! nodes can pack them back to back. Decoding arbitrary, truncated or
//! malicious bytes returns an error and never panics.

use std::fmt;
use std::sync::Arc;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What was being decoded, and what was wrong.
    pub what: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for DecodeError {}

/// A type that can be stored: encoded to bytes and decoded back.
///
/// `decode` reads one value from the front of `input` and advances it past
/// the bytes it used. It must return an error (never panic) for bytes that
/// `encode` could not have produced. After an error, how far `input` has
/// advanced is unspecified.
pub trait Codec: Sized {
    /// The length of every encoding, if all have the same (fixed-width
    /// types): a lookup in a stored node then jumps to the middle key
    /// instead of decoding its way there. A type that sets it must encode
    /// every value in exactly that many bytes.
    const WIDTH: Option<usize> = None;

    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value from the front of `input`, advancing it.
    fn decode(input: &mut &[u8]) -> Result<Self, DecodeError>;

    /// Reads `count` values from the front of `input` into `out`, as
    /// `count` calls of [`decode`](Codec::decode) would (a node's keys or
    /// values, back to back). Fixed-width types override it to read them
    /// all in one pass: a node load decodes hundreds of them.
    fn decode_into<E: Extend<Self>>(input: &mut &[u8], count: usize, out: &mut E) -> Result<(), DecodeError> {
        let mut failed = None;
        out.extend((0..count).map_while(|_| Self::decode(input).map_err(|error| failed = Some(error)).ok()));
        failed.map_or(Ok(()), Err)
    }
}

/// Removes the first `n` bytes of `input` and returns them.
fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
    if n > input.len() {
        return Err(DecodeError { what: format!("{what}: needs {n} bytes, {} left", input.len()) });
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

/// Reads `N` bytes as an array.
fn take_array<const N: usize>(input: &mut &[u8], what: &str) -> Result<[u8; N], DecodeError> {
    let Some((head, rest)) = input.split_first_chunk::<N>() else {
        return Err(DecodeError { what: format!("{what}: needs {N} bytes, {} left", input.len()) });
    };
    *input = rest;
    Ok(*head)
}

/// Appends `v` as an unsigned LEB128 varint: 7 bits a byte, low bits first,
/// high bit set on every byte but the last.
fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint written by [`write_varint`], rejecting encodings it would
/// not have produced (trailing zero groups) and values past `u64::MAX`.
fn read_varint(input: &mut &[u8], what: &str) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(DecodeError { what: format!("{what}: length prefix cut short after {i} bytes") });
        };
        *input = rest;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(DecodeError { what: format!("{what}: length prefix overflows u64") });
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(DecodeError { what: format!("{what}: length prefix is overlong (not minimal)") });
            }
            return Ok(v);
        }
    }
    unreachable!("the tenth byte either ends the varint or overflows")
}

/// Appends a length prefix.
fn write_len(len: usize, out: &mut Vec<u8>) {
    write_varint(len as u64, out);
}

/// Reads a length prefix and the bytes it covers, checking the length
/// against the input before anything is allocated.
fn read_prefixed<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a [u8], DecodeError> {
    let len = read_varint(input, what)?;
    match usize::try_from(len) {
        Ok(len) if len <= input.len() => take(input, len, what),
        _ => {
            Err(DecodeError { what: format!("{what}: length {len} exceeds the {} bytes left", input.len()) })
        }
    }
}

/// Reads a length-prefixed UTF-8 string.
fn read_str<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a str, DecodeError> {
    let bytes = read_prefixed(input, what)?;
    std::str::from_utf8(bytes).map_err(|e| DecodeError {
        what: format!("{what}: invalid UTF-8 at byte {} of {}", e.valid_up_to(), bytes.len()),
    })
}

macro_rules! fixed_width {
    ($($t:ty)*) => {$(
        /// Fixed width, little-endian.
        impl Codec for $t {
            const WIDTH: Option<usize> = Some(size_of::<$t>());

            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(take_array(input, stringify!($t))?))
            }

            fn decode_into<E: Extend<Self>>(
                input: &mut &[u8],
                count: usize,
                out: &mut E,
            ) -> Result<(), DecodeError> {
                const W: usize = size_of::<$t>();
                let Some(len) = count.checked_mul(W).filter(|&len| len <= input.len()) else {
                    return Err(DecodeError {
                        what: format!(
                            concat!(stringify!($t), ": {} of them need {} bytes each, {} left"),
                            count,
                            W,
                            input.len()
                        ),
                    });
                };
                let bytes = take(input, len, stringify!($t))?;
                out.extend(bytes.chunks_exact(W).map(|chunk| {
                    <$t>::from_le_bytes(chunk.try_into().expect("chunks of the width"))
                }));
                Ok(())
            }
        }
    )*};
}

fixed_width!(u8 u16 u32 u64 u128 i8 i16 i32 i64 i128 f32 f64);

macro_rules! pointer_sized {
    ($($t:ty => $wide:ty),*) => {$(
        /// 8 bytes little-endian on every platform; a value that does not fit
        /// this platform's width fails to decode.
        impl Codec for $t {
            const WIDTH: Option<usize> = Some(8);

            fn encode(&self, out: &mut Vec<u8>) {
                (*self as $wide).encode(out);
            }

            fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
                let wide = <$wide>::from_le_bytes(take_array(input, stringify!($t))?);
                <$t>::try_from(wide).map_err(|_| DecodeError {
                    what: format!(concat!(stringify!($t), ": {} does not fit in {} bits"), wide, <$t>::BITS),
                })
            }
        }
    )*};
}

pointer_sized!(usize => u64, isize => i64);

/// One byte, 0 or 1.
impl Codec for bool {
    const WIDTH: Option<usize> = Some(1);

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }

    fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        match take(input, 1, "bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError { what: format!("bool: byte {b} is not 0 or 1") }),
        }
    }
}

/// Zero bytes (the value of a set).
impl Codec for () {
    fn encode(&self, _out: &mut Vec<u8>) {}

    fn decode(_input: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok(())
    }
}

macro_rules! length_prefixed {
    ($($t:ty: $name:literal as $slice:ty, $read:ident;)*) => {$(
        /// Varint length, then the bytes (string types: valid UTF-8).
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                let bytes: &$slice = self;
                let bytes: &[u8] = bytes.as_ref();
                write_len(bytes.len(), out);
                out.extend_from_slice(bytes);
            }

            fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
                Ok(<$t>::from($read(input, $name)?))
            }
        }
    )*};
}

length_prefixed! {
    String: "String" as str, read_str;
    Arc<str>: "Arc<str>" as str, read_str;
    Vec<u8>: "Vec<u8>" as [u8], read_prefixed;
    Box<[u8]>: "Box<[u8]>" as [u8], read_prefixed;
    Arc<[u8]>: "Arc<[u8]>" as [u8], read_prefixed;
}

/// The `N` bytes as they are, no prefix.
impl<const N: usize> Codec for [u8; N] {
    const WIDTH: Option<usize> = Some(N);

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        let Some((head, rest)) = input.split_first_chunk::<N>() else {
            return Err(DecodeError { what: format!("[u8; {N}]: needs {N} bytes, {} left", input.len()) });
        };
        *input = rest;
        Ok(*head)
    }
}

/// `A`, then `B`.
impl<A: Codec, B: Codec> Codec for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }

    fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok((A::decode(input)?, B::decode(input)?))
    }
}

/// A tag byte, 0 for `None` or 1 for `Some`, then the value.
impl<T: Codec> Codec for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }

    fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        match take(input, 1, "Option")?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode(input)?)),
            b => Err(DecodeError { what: format!("Option: tag {b} is not 0 or 1") }),
        }
    }
}

/// Stores any serde type: `Serde(value)` is a key or value encoded with
/// [postcard](https://docs.rs/postcard) behind a varint length.
///
/// Its `Ord` (and `Eq`, `Hash`) are `T`'s, so it is a key when `T: Ord`; the
/// tree orders keys by `Ord`, never by their bytes.
///
/// # Panics
///
/// `encode` panics if `T`'s `Serialize` fails, e.g. on a sequence whose
/// length is not known up front, which postcard cannot write.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Serde<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec for Serde<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        let bytes = postcard::to_stdvec(&self.0)
            .unwrap_or_else(|e| panic!("Serde: {} did not serialize: {e}", std::any::type_name::<T>()));
        write_len(bytes.len(), out);
        out.extend_from_slice(&bytes);
    }

    fn decode(input: &mut &[u8]) -> Result<Self, DecodeError> {
        let bytes = read_prefixed(input, "Serde")?;
        match postcard::take_from_bytes(bytes) {
            Ok((value, [])) => Ok(Serde(value)),
            Ok((_, rest)) => {
                Err(DecodeError { what: format!("Serde: {} bytes left over after the value", rest.len()) })
            }
            Err(e) => Err(DecodeError { what: format!("Serde: postcard: {e}") }),
        }
    }
}
