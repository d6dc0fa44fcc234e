//! The four shapes of an RPC.

use crate::limits::Fits;

/// Which sides of an RPC stream: the runtime's `tonic_intercept::RpcKind`, seen from the
/// macro and the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStreaming,
    /// One request, a stream of responses.
    ServerStreaming,
    /// Streams both ways.
    BidiStreaming,
}

impl RpcKind {
    /// Every kind, in the order above.
    pub const ALL: [RpcKind; 4] = [
        RpcKind::Unary,
        RpcKind::ClientStreaming,
        RpcKind::ServerStreaming,
        RpcKind::BidiStreaming,
    ];

    /// The kind of an RPC whose requests (`client`) and responses (`server`) stream or not,
    /// as a descriptor's `client_streaming` / `server_streaming` say.
    pub const fn from_streaming(client: bool, server: bool) -> Self {
        match (client, server) {
            (false, false) => RpcKind::Unary,
            (true, false) => RpcKind::ClientStreaming,
            (false, true) => RpcKind::ServerStreaming,
            (true, true) => RpcKind::BidiStreaming,
        }
    }

    /// Whether requests arrive as a stream.
    pub const fn streams_requests(self) -> bool {
        matches!(self, RpcKind::ClientStreaming | RpcKind::BidiStreaming)
    }

    /// Whether responses leave as a stream.
    pub const fn streams_responses(self) -> bool {
        matches!(self, RpcKind::ServerStreaming | RpcKind::BidiStreaming)
    }

    /// Whether either side streams.
    pub const fn streams(self) -> bool {
        !matches!(self, RpcKind::Unary)
    }

    /// The variant of the runtime's `tonic_intercept::RpcKind`: `Unary`,
    /// `ClientStreaming`, `ServerStreaming`, `Bidi`.
    pub const fn runtime_variant(self) -> &'static str {
        match self {
            RpcKind::Unary => "Unary",
            RpcKind::ClientStreaming => "ClientStreaming",
            RpcKind::ServerStreaming => "ServerStreaming",
            RpcKind::BidiStreaming => "Bidi",
        }
    }

    /// The name of the runtime's per-kind entry points (the server guard's and the
    /// client core's methods, tonic's `Grpc` methods): `unary`, `client_streaming`,
    /// `server_streaming`, `bidi`.
    pub const fn call_method(self) -> &'static str {
        match self {
            RpcKind::Unary => "unary",
            RpcKind::ClientStreaming => "client_streaming",
            RpcKind::ServerStreaming => "server_streaming",
            RpcKind::BidiStreaming => "bidi",
        }
    }

    /// How error messages name the kind: `unary`, `client-streaming`, ...
    pub const fn describe(self) -> &'static str {
        match self {
            RpcKind::Unary => "unary",
            RpcKind::ClientStreaming => "client-streaming",
            RpcKind::ServerStreaming => "server-streaming",
            RpcKind::BidiStreaming => "bidi-streaming",
        }
    }

    /// Whether a key that [`Fits`] `fits` can act on an RPC of this kind.
    pub const fn admits(self, fits: Fits) -> bool {
        match fits {
            Fits::AnyRpc => true,
            Fits::RequestStream => self.streams_requests(),
            Fits::ResponseStream => self.streams_responses(),
            Fits::AnyStream => self.streams(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_streaming_flags() {
        for kind in RpcKind::ALL {
            assert_eq!(
                RpcKind::from_streaming(kind.streams_requests(), kind.streams_responses()),
                kind
            );
        }
        assert_eq!(
            RpcKind::from_streaming(true, false),
            RpcKind::ClientStreaming
        );
    }

    #[test]
    fn names_for_the_runtime_and_for_people() {
        let names: Vec<_> = RpcKind::ALL
            .iter()
            .map(|k| (k.runtime_variant(), k.call_method(), k.describe()))
            .collect();
        assert_eq!(
            names,
            [
                ("Unary", "unary", "unary"),
                ("ClientStreaming", "client_streaming", "client-streaming"),
                ("ServerStreaming", "server_streaming", "server-streaming"),
                ("Bidi", "bidi", "bidi-streaming"),
            ]
        );
    }

    #[test]
    fn admits_keys_by_side() {
        use RpcKind::*;
        let admitted = |fits| {
            RpcKind::ALL
                .into_iter()
                .filter(|k| k.admits(fits))
                .collect::<Vec<_>>()
        };
        assert_eq!(admitted(Fits::AnyRpc), RpcKind::ALL);
        assert_eq!(
            admitted(Fits::RequestStream),
            [ClientStreaming, BidiStreaming]
        );
        assert_eq!(
            admitted(Fits::ResponseStream),
            [ServerStreaming, BidiStreaming]
        );
        assert_eq!(
            admitted(Fits::AnyStream),
            [ClientStreaming, ServerStreaming, BidiStreaming]
        );
    }
}
