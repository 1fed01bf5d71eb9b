//! Why a directory request was refused: shared by the admin operations,
//! the hub that applies them and the API that maps them to HTTP, so it lives
//! with the directory rather than with any one of them.

/// Why an admin request was refused. Mapped to HTTP in `api/error.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("unknown team {0:?}")]
    UnknownTeam(String),
    #[error("unknown webhook {0:?}")]
    UnknownWebhook(String),
    #[error("{user:?} is not a member of team {team:?}")]
    UnknownMember { team: String, user: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("the plan allows {limit} active users; this would make {wanted}")]
    UserLimit { limit: u64, wanted: u64 },
    #[error("user {0:?} is not active")]
    UserNotActive(String),
}
