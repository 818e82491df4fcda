//! Stateless Conduit API.
