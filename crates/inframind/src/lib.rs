//! InfraMind.
#![allow(missing_docs)]
pub mod proto {
    tonic::include_proto!("sentinel.inframind.v1");
}
