//! [`StoreError`]: what a store operation tells its caller, one docker-like line each, and how
//! it maps onto gRPC status codes for the API layer.

use crate::ipam::IpamError;

/// Why a store operation failed. `Display` is the message to show the user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The network, endpoint, vtep or node does not exist ("network demo not found").
    #[error("{0}")]
    NotFound(String),
    /// A name or a pinned value is taken ("network with name demo already exists").
    #[error("{0}")]
    AlreadyExists(String),
    /// Other agents kept changing the same records and retrying did not get through; the
    /// operation did nothing and may be tried again.
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (bad name, subnet, gateway, VNI, MTU, address).
    #[error("{0}")]
    Invalid(String),
    /// A resource is used by something else: an overlapping subnet, an address already held,
    /// a network with endpoints, an exhausted pool.
    #[error("{0}")]
    InUse(String),
    /// etcd did not answer in time or refused the connection.
    #[error("etcd at {endpoints} is unreachable: start it or pass --etcd")]
    Unavailable {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// What failed, for logs ("range: no answer within 3s", a transport error...).
        cause: String,
    },
    /// A bug or a corrupt record; the message says which.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<IpamError> for StoreError {
    fn from(e: IpamError) -> Self {
        match e {
            IpamError::AddressIsGateway(_) => StoreError::InUse(e.to_string()),
            _ => StoreError::Invalid(e.to_string()),
        }
    }
}

impl StoreError {
    /// Classifies an etcd-client error: transport failures and timeouts are
    /// [`StoreError::Unavailable`], anything else [`StoreError::Internal`].
    pub(crate) fn from_etcd(e: etcd_client::Error, endpoints: &str, what: &str) -> Self {
        use etcd_client::Error as E;
        use tonic::Code;
        let unavailable = match &e {
            E::TransportError(_) | E::IoError(_) => true,
            E::GRpcStatus(s) => matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ),
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable {
                endpoints: endpoints.to_owned(),
                cause: format!("{what}: {e}"),
            }
        } else {
            StoreError::Internal(format!("etcd {what} failed: {e}"))
        }
    }
}

impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match e {
            StoreError::NotFound(_) => tonic::Status::not_found(msg),
            StoreError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            StoreError::Conflict(_) => tonic::Status::aborted(msg),
            StoreError::Invalid(_) => tonic::Status::invalid_argument(msg),
            StoreError::InUse(_) => tonic::Status::failed_precondition(msg),
            StoreError::Unavailable { .. } => tonic::Status::unavailable(msg),
            StoreError::Internal(_) => tonic::Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = StoreError::Unavailable {
            endpoints: "http://127.0.0.1:2379".into(),
            cause: "range: no answer within 3s".into(),
        };
        assert_eq!(
            e.to_string(),
            "etcd at http://127.0.0.1:2379 is unreachable: start it or pass --etcd"
        );
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let e = StoreError::from(IpamError::InvalidVni(0));
        assert_eq!(
            e.to_string(),
            "invalid vni 0: must be between 1 and 16777215"
        );
        assert!(matches!(e, StoreError::Invalid(_)));
    }
}
