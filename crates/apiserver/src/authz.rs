//! Authorization: may this user do this? A layer of its own so that RBAC can replace the
//! current policy without touching handlers.

use crate::authn::UserInfo;
use crate::request::RequestInfo;

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused, with the reason shown to the client.
    Deny(String),
}

/// Decides requests.
pub trait Authorizer: Send + Sync {
    /// Whether `user` may perform `info`.
    fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Decision;
}

/// Every authenticated user may do everything (until RBAC lands); anonymous users nothing.
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, user: &UserInfo, _info: &RequestInfo) -> Decision {
        if user.is_anonymous() {
            Decision::Deny(format!(
                "User \"{}\" cannot access this resource",
                user.name
            ))
        } else {
            Decision::Allow
        }
    }
}
