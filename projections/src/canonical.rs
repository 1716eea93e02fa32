//! A serde `Deserializer` for exactly the msgpack form `Envelope::encode` writes (rmp-serde's
//! compact form), and for nothing else. It knows no event: the serde derives in `event.rs` stay
//! the one description of the schema, and this reader only knows msgpack's markers.
//!
//! Why it exists: rmp-serde is general (any reader, every form it has ever written, a message for
//! every error), which costs about a third of the replay time on ordinary records. This reader
//! answers "not canonical" for anything it does not expect, without building a message, and the
//! caller ([`crate::decode::decode_envelope`]) then asks rmp-serde, which gives the answer and the
//! error. So it only has to be right about what it accepts, never about what it refuses.
//!
//! What it accepts: structs as arrays of at most as many elements as the struct has fields (the
//! derive fills `#[serde(default)]` fields missing from an older record, or fails as rmp-serde
//! would); enums with fields as one-entry maps from the variant name to the fields; strings as
//! msgpack `str` with valid UTF-8; integers of any msgpack width (the visitors range-check them,
//! as they do behind rmp-serde); `nil` as `None`; booleans; arrays and maps. Everything else —
//! floats, `bin`, extensions, unit variants, newtype structs, `deserialize_any` — is refused.

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

/// "Not in the canonical form, or damaged": carries nothing, because the caller asks rmp-serde
/// for the real error and building a message here would be wasted work on the fast path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotCanonical;

impl fmt::Display for NotCanonical {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("payload is not in the canonical envelope encoding")
    }
}

impl std::error::Error for NotCanonical {}

impl de::Error for NotCanonical {
    fn custom<T: fmt::Display>(_message: T) -> NotCanonical {
        NotCanonical
    }
}

type Result<T> = std::result::Result<T, NotCanonical>;

/// Deserializes a `T` from the whole of `bytes`. Trailing bytes are refused (rmp-serde ignores
/// them; that judgement is left to it).
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    let mut reader = CanonicalReader { bytes, position: 0 };
    let value = T::deserialize(&mut reader)?;
    if reader.position != bytes.len() {
        return Err(NotCanonical);
    }
    Ok(value)
}

struct CanonicalReader<'de> {
    bytes: &'de [u8],
    position: usize,
}

impl<'de> CanonicalReader<'de> {
    #[inline]
    fn byte(&mut self) -> Result<u8> {
        let byte = *self.bytes.get(self.position).ok_or(NotCanonical)?;
        self.position += 1;
        Ok(byte)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    #[inline]
    fn take(&mut self, len: usize) -> Result<&'de [u8]> {
        let end = self.position.checked_add(len).ok_or(NotCanonical)?;
        let taken = self.bytes.get(self.position..end).ok_or(NotCanonical)?;
        self.position = end;
        Ok(taken)
    }

    #[inline]
    fn big_endian<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| NotCanonical)
    }

    #[inline]
    fn array_len(&mut self) -> Result<usize> {
        match self.byte()? {
            marker @ 0x90..=0x9f => Ok(usize::from(marker & 0x0f)),
            0xdc => Ok(usize::from(u16::from_be_bytes(self.big_endian()?))),
            0xdd => Ok(u32::from_be_bytes(self.big_endian()?) as usize),
            _ => Err(NotCanonical),
        }
    }

    #[inline]
    fn map_len(&mut self) -> Result<usize> {
        match self.byte()? {
            marker @ 0x80..=0x8f => Ok(usize::from(marker & 0x0f)),
            0xde => Ok(usize::from(u16::from_be_bytes(self.big_endian()?))),
            0xdf => Ok(u32::from_be_bytes(self.big_endian()?) as usize),
            _ => Err(NotCanonical),
        }
    }

    #[inline]
    fn str(&mut self) -> Result<&'de str> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.big_endian()?)),
            0xdb => u32::from_be_bytes(self.big_endian()?) as usize,
            _ => return Err(NotCanonical),
        };
        std::str::from_utf8(self.take(len)?).map_err(|_| NotCanonical)
    }

    /// Any msgpack integer, handed to the visitor as the widest type of its sign; the visitor
    /// range-checks it for the field's type.
    #[inline]
    fn integer<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            marker @ 0x00..=0x7f => visitor.visit_u64(u64::from(marker)),
            marker @ 0xe0..=0xff => visitor.visit_i64(i64::from(marker as i8)),
            0xcc => visitor.visit_u64(u64::from(self.byte()?)),
            0xcd => visitor.visit_u64(u64::from(u16::from_be_bytes(self.big_endian()?))),
            0xce => visitor.visit_u64(u64::from(u32::from_be_bytes(self.big_endian()?))),
            0xcf => visitor.visit_u64(u64::from_be_bytes(self.big_endian()?)),
            0xd0 => visitor.visit_i64(i64::from(self.byte()? as i8)),
            0xd1 => visitor.visit_i64(i64::from(i16::from_be_bytes(self.big_endian()?))),
            0xd2 => visitor.visit_i64(i64::from(i32::from_be_bytes(self.big_endian()?))),
            0xd3 => visitor.visit_i64(i64::from_be_bytes(self.big_endian()?)),
            _ => Err(NotCanonical),
        }
    }

    /// An array of `len` elements for `visitor.visit_seq`, refused unless the visitor took them all.
    fn elements<V: Visitor<'de>>(&mut self, len: usize, visitor: V) -> Result<V::Value> {
        let mut elements = Elements { reader: self, remaining: len };
        let value = visitor.visit_seq(&mut elements)?;
        if elements.remaining != 0 {
            return Err(NotCanonical);
        }
        Ok(value)
    }

    /// A struct's fields as an array: no more elements than `n_fields`.
    fn fields<V: Visitor<'de>>(&mut self, n_fields: usize, visitor: V) -> Result<V::Value> {
        let len = self.array_len()?;
        if len > n_fields {
            return Err(NotCanonical);
        }
        self.elements(len, visitor)
    }
}

/// The types the schema does not use: refused, so the caller falls back to rmp-serde.
macro_rules! refuse {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
            Err(NotCanonical)
        })*
    };
}

/// The integer types: each reads any msgpack integer and lets the visitor range-check it.
macro_rules! integers {
    ($($method:ident)*) => {
        $(#[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.integer(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for &mut CanonicalReader<'de> {
    type Error = NotCanonical;

    refuse!(deserialize_any deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_identifier deserialize_ignored_any);

    integers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0xc2 => visitor.visit_bool(false),
            0xc3 => visitor.visit_bool(true),
            _ => Err(NotCanonical),
        }
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek() == Some(0xc0) {
            self.position += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, _visitor: V) -> Result<V::Value> {
        Err(NotCanonical)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, _visitor: V) -> Result<V::Value> {
        Err(NotCanonical)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.array_len()?;
        self.elements(len, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        if self.array_len()? != len {
            return Err(NotCanonical);
        }
        self.elements(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.map_len()?;
        let mut entries = Entries { reader: self, remaining: len };
        let value = visitor.visit_map(&mut entries)?;
        if entries.remaining != 0 {
            return Err(NotCanonical);
        }
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.fields(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if self.map_len()? != 1 {
            return Err(NotCanonical);
        }
        visitor.visit_enum(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

struct Elements<'a, 'de> {
    reader: &'a mut CanonicalReader<'de>,
    remaining: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = NotCanonical;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Never trust a length for an allocation: each element takes at least one byte.
        Some(self.remaining.min(self.reader.bytes.len() - self.reader.position))
    }
}

struct Entries<'a, 'de> {
    reader: &'a mut CanonicalReader<'de>,
    remaining: usize,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = NotCanonical;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.reader)
    }

    fn size_hint(&self) -> Option<usize> {
        // Each entry takes at least two bytes.
        Some(self.remaining.min((self.reader.bytes.len() - self.reader.position) / 2))
    }
}

/// The variant of an enum: its name (a `str` key) picks the variant, then its fields follow.
impl<'de> de::EnumAccess<'de> for &mut CanonicalReader<'de> {
    type Error = NotCanonical;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let name = de::value::BorrowedStrDeserializer::<NotCanonical>::new(self.str()?);
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut CanonicalReader<'de> {
    type Error = NotCanonical;

    fn unit_variant(self) -> Result<()> {
        // rmp-serde writes a unit variant as a bare string, never as a one-entry map.
        Err(NotCanonical)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        self.fields(fields.len(), visitor)
    }
}
