//! The server side of a call: its lifecycle from the request to the end of the response.

pub(crate) mod call;
pub(crate) mod recover;
pub(crate) mod stream;
