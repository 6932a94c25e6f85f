//! The HTTP surface: routes, middleware, and the mapping of errors to
//! responses. Handlers live in [`proxy`] (the request path) and [`meta`].

pub mod auth;
mod cached;
pub use auth::bearer;
pub mod error;
pub mod meta;
pub mod proxy;
pub mod request_id;
mod service;

pub use service::{Conn, Service};

pub use crate::app::AppState;
