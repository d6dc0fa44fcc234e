//! `#[intercept(validate(..))]` with protovalidate (`buf.validate`) rules from the `.proto`
//! (tests/proto/validated/v1/validated.proto), checked by prost-protovalidate through the
//! runtime's and the generator's feature `protovalidate`, on a real tonic server on
//! loopback: each standard rule's exact field path and description in the
//! `google.rpc.BadRequest` details, a client stream whose second message fails, and a
//! hand-written `Validate` impl winning over the rules of the same message.
//!
//! Needs this crate's feature `protovalidate` (its build runs `protoc`, see Cargo.toml):
//! `cargo test -p tonic-intercept-tests --features protovalidate --test protovalidate`, as
//! `.ci/run` does. Without it, the one test below says so.

#[cfg(not(feature = "protovalidate"))]
#[test]
fn needs_the_protovalidate_feature() {
    eprintln!(
        "skipped: tests/protovalidate.rs needs `--features protovalidate` (prost-protovalidate-types \
         runs protoc in its build script); .ci/run runs it"
    );
}

#[cfg(feature = "protovalidate")]
mod with_rules {

    use std::net::SocketAddr;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio_stream::StreamExt;
    use tonic::transport::Channel;
    use tonic::{Code, Request, Response, Status, Streaming};
    use tonic_intercept::Validate;
    use tonic_intercept::tonic_types::StatusExt;
    use tonic_intercept::validate::Violations;
    use tonic_intercept::validate::protovalidate::ProtoValidate;

    #[allow(dead_code, unreachable_pub, clippy::all, clippy::pedantic)]
    mod pb {
        include!(concat!(env!("OUT_DIR"), "/validated/validated.v1.rs"));
    }

    use pb::user_service_client::UserServiceClient;
    use pb::user_service_server::UserServiceServer;
    use pb::{
        Address, BrokenRequest, Chunk, CreateUserReply, CreateUserRequest, Plain, RenameRequest,
        UploadSummary,
    };

    /// The hand-written impl: `RenameRequest` also has `min_len = 3` in the `.proto`, which
    /// this impl does not check; it refuses `admin` instead.
    impl Validate for RenameRequest {
        fn validate(&self, violations: &mut Violations) {
            if self.name == "admin" {
                violations.field("name", "is reserved");
            }
        }
    }

    #[derive(Debug, Default)]
    struct Users {
        /// Request messages the handlers saw (unary requests and stream messages alike).
        seen: Arc<AtomicU64>,
    }

    #[tonic_intercept::intercept(public(*), validate(CreateUser, Upload, Rename, Broken))]
    #[tonic::async_trait]
    impl pb::user_service_server::UserService for Users {
        async fn create_user(
            &self,
            request: Request<CreateUserRequest>,
        ) -> Result<Response<CreateUserReply>, Status> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(CreateUserReply {
                name: request.into_inner().name,
            }))
        }

        async fn upload(
            &self,
            request: Request<Streaming<Chunk>>,
        ) -> Result<Response<UploadSummary>, Status> {
            let mut chunks = pin!(request.into_inner());
            let mut summary = UploadSummary::default();
            while let Some(chunk) = chunks.next().await {
                chunk?;
                self.seen.fetch_add(1, Ordering::SeqCst);
                summary.chunks += 1;
            }
            Ok(Response::new(summary))
        }

        async fn rename(
            &self,
            request: Request<RenameRequest>,
        ) -> Result<Response<CreateUserReply>, Status> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(CreateUserReply {
                name: request.into_inner().name,
            }))
        }

        async fn echo(&self, request: Request<Plain>) -> Result<Response<Plain>, Status> {
            Ok(Response::new(request.into_inner()))
        }

        async fn broken(&self, request: Request<BrokenRequest>) -> Result<Response<Plain>, Status> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(Plain {
                text: request.into_inner().text,
            }))
        }
    }

    async fn serve() -> (SocketAddr, Arc<AtomicU64>) {
        let users = Users::default();
        let seen = users.seen.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(UserServiceServer::new(users))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (addr, seen)
    }

    async fn client(addr: SocketAddr) -> UserServiceClient<Channel> {
        UserServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    }

    /// `(field, description)` of each violation in the status's `google.rpc.BadRequest`.
    fn violations(status: &Status) -> Vec<(String, String)> {
        status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(f, d)| (f.to_string(), d.to_string()))
            .collect()
    }

    /// A request that keeps every rule.
    fn valid() -> CreateUserRequest {
        CreateUserRequest {
            name: "ada".into(),
            age: 36,
            email: "ada@example.com".into(),
            id: "5f0c3b8e-6d0a-4b8f-9a43-2b1a3c4d5e6f".into(),
            address: Some(Address {
                zip: "12345".into(),
            }),
            tags: vec!["math".into(), "engines".into()],
            nickname: "countess".into(),
        }
    }

    /// Calls `CreateUser` with `request` and returns the violations of its refusal.
    async fn refused(
        client: &mut UserServiceClient<Channel>,
        request: CreateUserRequest,
    ) -> Status {
        let status = client.create_user(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        status
    }

    #[tokio::test]
    async fn a_message_that_keeps_every_rule_reaches_the_handler() {
        let (addr, seen) = serve().await;
        let mut client = client(addr).await;
        let reply = client.create_user(valid()).await.unwrap().into_inner();
        assert_eq!(reply.name, "ada");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn each_standard_rule_reports_its_field_path_and_description() {
        let (addr, seen) = serve().await;
        let mut client = client(addr).await;

        let cases: Vec<(CreateUserRequest, Vec<(String, String)>)> = vec![
            (
                CreateUserRequest {
                    name: "al".into(),
                    ..valid()
                },
                pairs(&[("name", "value length must be at least 3 characters")]),
            ),
            (
                CreateUserRequest {
                    name: "augusta-ada".into(),
                    ..valid()
                },
                pairs(&[("name", "value length must be at most 10 characters")]),
            ),
            (
                CreateUserRequest { age: 0, ..valid() },
                pairs(&[(
                    "age",
                    "value must be greater than 0 and less than or equal to 150",
                )]),
            ),
            (
                CreateUserRequest {
                    age: 151,
                    ..valid()
                },
                pairs(&[(
                    "age",
                    "value must be greater than 0 and less than or equal to 150",
                )]),
            ),
            (
                CreateUserRequest {
                    email: "ada-at-example.com".into(),
                    ..valid()
                },
                pairs(&[("email", "must be a valid email address")]),
            ),
            (
                CreateUserRequest {
                    id: "not-a-uuid".into(),
                    ..valid()
                },
                pairs(&[("id", "must be a valid UUID")]),
            ),
            (
                CreateUserRequest {
                    address: None,
                    ..valid()
                },
                pairs(&[("address", "value is required")]),
            ),
            (
                CreateUserRequest {
                    address: Some(Address { zip: "123".into() }),
                    ..valid()
                },
                pairs(&[("address.zip", "must be 5 characters")]),
            ),
            (
                CreateUserRequest {
                    tags: vec![],
                    ..valid()
                },
                pairs(&[("tags", "must have at least 1 items")]),
            ),
            (
                CreateUserRequest {
                    tags: vec!["math".into(), "x".into()],
                    ..valid()
                },
                pairs(&[("tags[1]", "value length must be at least 2 characters")]),
            ),
            (
                CreateUserRequest {
                    nickname: "root".into(),
                    ..valid()
                },
                pairs(&[("nickname", "nickname must not be root")]),
            ),
            (
                CreateUserRequest {
                    nickname: "ada".into(),
                    ..valid()
                },
                pairs(&[("", "name and nickname must differ")]),
            ),
        ];
        let n = cases.len();
        for (request, expected) in cases {
            let status = refused(&mut client, request.clone()).await;
            assert_eq!(violations(&status), expected, "{request:?}");
        }
        // None of the refused messages reached the handler.
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        assert_eq!(n, 12);
    }

    #[tokio::test]
    async fn every_broken_rule_is_reported_in_one_status() {
        let (addr, _seen) = serve().await;
        let mut client = client(addr).await;
        let status = refused(
            &mut client,
            CreateUserRequest {
                name: "al".into(),
                age: -1,
                email: "nope".into(),
                id: String::new(),
                address: None,
                tags: vec!["x".into()],
                nickname: "root".into(),
            },
        )
        .await;
        assert_eq!(
            violations(&status),
            pairs(&[
                ("name", "value length must be at least 3 characters"),
                (
                    "age",
                    "value must be greater than 0 and less than or equal to 150"
                ),
                ("email", "must be a valid email address"),
                ("id", "value is empty, which is not a valid UUID"),
                ("address", "value is required"),
                ("tags[0]", "value length must be at least 2 characters"),
                ("nickname", "nickname must not be root"),
            ])
        );
        assert_eq!(
            status.message(),
            "CreateUser: 7 invalid fields: name: value length must be at least 3 characters; \
         age: value must be greater than 0 and less than or equal to 150; \
         email: must be a valid email address; \
         id: value is empty, which is not a valid UUID; address: value is required; \
         tags[0]: value length must be at least 2 characters; \
         nickname: nickname must not be root"
        );
    }

    #[tokio::test]
    async fn a_client_stream_ends_at_its_first_invalid_message() {
        let (addr, seen) = serve().await;
        let mut client = client(addr).await;
        let chunks = tokio_stream::iter([Chunk { seq: 1 }, Chunk { seq: 0 }, Chunk { seq: 3 }]);
        let status = client.upload(chunks).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            violations(&status),
            pairs(&[("seq", "value must be greater than 0")])
        );
        // Message 1 passed and was handled; message 2 failed; message 3 was never handed on.
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        let chunks = tokio_stream::iter([Chunk { seq: 1 }, Chunk { seq: 2 }]);
        let summary = client.upload(chunks).await.unwrap().into_inner();
        assert_eq!(summary.chunks, 2);
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_hand_written_validate_impl_wins_over_the_rules() {
        let (addr, seen) = serve().await;
        let mut client = client(addr).await;
        // `min_len = 3` in the `.proto` is not what runs: the hand-written impl accepts "al".
        let reply = client
            .rename(RenameRequest { name: "al".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.name, "al");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        // And refuses what it refuses, with its own description.
        let status = client
            .rename(RenameRequest {
                name: "admin".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violations(&status), pairs(&[("name", "is reserved")]));
        assert_eq!(
            status.message(),
            "Rename: 1 invalid field: name: is reserved"
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_rules_are_checkable_without_a_server() {
        let mut violations = Violations::new();
        RenameRequest { name: "al".into() }
            .validate_rules(&mut violations)
            .unwrap();
        let found: Vec<_> = violations.iter().collect();
        assert_eq!(
            found,
            [("name", "value length must be at least 3 characters")]
        );
        let mut violations = Violations::new();
        valid().validate_rules(&mut violations).unwrap();
        assert!(violations.is_empty());
        // A message without rules of its own reports those of the message it holds.
        let mut violations = Violations::new();
        pb::Envelope {
            address: Some(Address { zip: "1".into() }),
        }
        .validate_rules(&mut violations)
        .unwrap();
        let found: Vec<_> = violations.iter().collect();
        assert_eq!(found, [("address.zip", "must be 5 characters")]);
    }

    #[tokio::test]
    async fn an_rpc_without_validate_is_not_checked() {
        let (addr, _seen) = serve().await;
        let mut client = client(addr).await;
        let reply = client
            .echo(Plain {
                text: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.text, "");
    }

    #[tokio::test]
    async fn rules_that_cannot_be_evaluated_end_the_call_with_internal() {
        let (addr, seen) = serve().await;
        let mut client = client(addr).await;
        let status = client
            .broken(BrokenRequest { text: "x".into() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(
            status.message(),
            "Broken: the validation rules of `validated.v1.BrokenRequest` cannot be evaluated"
        );
        assert!(status.get_details_bad_request().is_none());
        assert_eq!(seen.load(Ordering::SeqCst), 0);
    }

    /// Whether a message type implements `ProtoValidate`, by the same autoref specialization
    /// the expansion uses.
    struct Probe<T>(std::marker::PhantomData<T>);

    trait WithRules {
        fn has_rules(&self) -> bool;
    }

    impl<T: ProtoValidate> WithRules for Probe<T> {
        fn has_rules(&self) -> bool {
            true
        }
    }

    trait WithoutRules {
        fn has_rules(&self) -> bool;
    }

    impl<T> WithoutRules for &Probe<T> {
        fn has_rules(&self) -> bool {
            false
        }
    }

    #[test]
    // The explicit borrow is the autoref specialization: without it `WithoutRules` is never
    // reached.
    #[allow(clippy::needless_borrow)]
    fn the_generator_implements_proto_validate_only_for_messages_with_rules() {
        use std::marker::PhantomData;
        // Rules on its fields, in a message CEL rule, or in a message it holds.
        assert!((&Probe::<CreateUserRequest>(PhantomData)).has_rules());
        assert!((&Probe::<Address>(PhantomData)).has_rules());
        assert!((&Probe::<pb::Envelope>(PhantomData)).has_rules());
        assert!((&Probe::<Chunk>(PhantomData)).has_rules());
        assert!((&Probe::<BrokenRequest>(PhantomData)).has_rules());
        // No rules: no impl, so `validate(Echo)` would not compile (tests/ui/fail).
        assert!(!(&Probe::<Plain>(PhantomData)).has_rules());
        assert!(!(&Probe::<CreateUserReply>(PhantomData)).has_rules());
        assert!(!(&Probe::<UploadSummary>(PhantomData)).has_rules());
    }
}
