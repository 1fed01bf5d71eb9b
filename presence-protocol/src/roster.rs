//! Roster names: `directory`, `attendants`, `team:<id>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A roster a tab can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Roster {
    /// Every user of the tenant plus the counters (admins only).
    Directory,
    /// Every attendant (user in at least one active CRM team).
    Attendants,
    /// Members and supervisors of one team.
    Team(String),
}

/// The text is not a roster name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterParseError(pub String);

impl fmt::Display for RosterParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown roster {:?}: expected \"directory\", \"attendants\" or \"team:<id>\"",
            self.0
        )
    }
}

impl std::error::Error for RosterParseError {}

impl FromStr for Roster {
    type Err = RosterParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "directory" => Ok(Roster::Directory),
            "attendants" => Ok(Roster::Attendants),
            _ => match s.strip_prefix("team:") {
                Some(id) if !id.is_empty() => Ok(Roster::Team(id.to_owned())),
                _ => Err(RosterParseError(s.to_owned())),
            },
        }
    }
}

impl fmt::Display for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roster::Directory => f.write_str("directory"),
            Roster::Attendants => f.write_str("attendants"),
            Roster::Team(id) => write!(f, "team:{id}"),
        }
    }
}

impl Serialize for Roster {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Roster {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
