//! Identifiers: jobs, job vertices and operators.
//!
//! All are 128-bit values printed as 32 lowercase hex digits, the format Flink's REST API uses.
//! Operator ids are *stable*: they come from the user's `uid` or from the topology, never from
//! memory addresses or hash-map order, because checkpoints and savepoints address state by them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u128);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                $name(uuid::Uuid::new_v4().as_u128())
            }

            /// The id derived from `bytes` with a fixed hash (XXH3-128, seed 0).
            pub fn from_hash(bytes: &[u8]) -> Self {
                $name(xxhash_rust::xxh3::xxh3_128(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:032x})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                if s.len() != 32 {
                    return Err(format!("expected 32 hex digits, got '{s}'"));
                }
                u128::from_str_radix(s, 16)
                    .map($name)
                    .map_err(|_| format!("expected 32 hex digits, got '{s}'"))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    s.serialize_u128(self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    u128::deserialize(d).map($name)
                }
            }
        }
    };
}

hex_id!(
    /// Identifies one job submission.
    JobId
);
hex_id!(
    /// Identifies a vertex of the JobGraph (a chain of operators). Equal to its head operator's id.
    JobVertexId
);
hex_id!(
    /// Identifies an operator, stably across runs, builds and releases.
    OperatorId
);

impl OperatorId {
    /// The id Flink-style `uid("...")` maps to: a fixed hash of the uid's bytes.
    pub fn from_uid(uid: &str) -> Self {
        OperatorId::from_hash(uid.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_roundtrip_as_hex() {
        let id = JobId::random();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<JobId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<JobId>(&json).unwrap(), id);
        assert!("xyz".parse::<JobId>().is_err());
    }

    #[test]
    fn uid_hash_is_stable() {
        // Pinned: a change here would orphan every savepoint taken with a uid.
        // Computed with the reference XXH3 implementation (python-xxhash).
        assert_eq!(
            OperatorId::from_uid("my-source").to_string(),
            "4f08d5b2b7b57487f21f78c0ec4accf1"
        );
        assert_eq!(OperatorId::from_uid("a"), OperatorId::from_uid("a"));
        assert_ne!(OperatorId::from_uid("a"), OperatorId::from_uid("b"));
    }
}
