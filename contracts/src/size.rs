//! Sizes and rates written as the CLI writes them (`2M`, `512K`, `10M`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes (or bytes per second, for the rate limits), read from either a JSON integer or
/// the CLI's text form: digits with an optional `K`, `M` or `G` suffix (binary: 1K = 1024),
/// case-insensitive.
///
/// Job files and tasks then use the same spelling as `--max-segment-size 2M` on a command line. It
/// serializes back to text with the largest exact suffix (`2097152` is written `"2M"`), so a task
/// reads as its author wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses the CLI's text form, exactly as `freezer-worker --max-segment-size` does.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let (num, mult) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let m = match c.to_ascii_uppercase() {
                    'K' => 1u64 << 10,
                    'M' => 1 << 20,
                    'G' => 1 << 30,
                    _ => return Err(format!("unknown size suffix in {s:?} (use K, M or G)")),
                };
                (&t[..i], m)
            }
            _ => (t, 1),
        };
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?} (digits with an optional K, M or G)"))
    }

    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, suffix) in [(30, 'G'), (20, 'M'), (10, 'K')] {
            if n != 0 && n.trailing_zeros() >= shift {
                return write!(f, "{}{suffix}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ByteSize::parse(s)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes, or text such as \"2M\", \"512K\", \"1G\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("size {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Bytes: an integer, or digits with an optional K, M or G suffix \
                            (binary multiples), as on the command line.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+[KkMmGg]?\\s*$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_like_the_cli() {
        assert_eq!(ByteSize::parse("4M"), Ok(ByteSize(4 << 20)));
        assert_eq!(ByteSize::parse("512k"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("1000"), Ok(ByteSize(1000)));
        assert_eq!(ByteSize::parse("1G"), Ok(ByteSize(1 << 30)));
        for bad in ["3X", "", "M", "-1", "1.5M", "99999999999999999999G"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_read_numbers_or_text_and_write_text() {
        let s: ByteSize = serde_json::from_value(json!("10M")).unwrap();
        assert_eq!(s, ByteSize(10 << 20));
        assert_eq!(serde_json::to_value(s).unwrap(), json!("10M"));
        let n: ByteSize = serde_json::from_value(json!(2_097_152)).unwrap();
        assert_eq!(serde_json::to_value(n).unwrap(), json!("2M"));
        let odd: ByteSize = serde_json::from_value(json!(1000)).unwrap();
        assert_eq!(serde_json::to_value(odd).unwrap(), json!("1000"));
        assert_eq!(ByteSize(0).to_string(), "0");
        assert!(serde_json::from_value::<ByteSize>(json!(-1)).is_err());
        assert!(serde_json::from_value::<ByteSize>(json!(1.5)).is_err());
        assert!(serde_json::from_value::<ByteSize>(json!("ten")).is_err());
    }
}
