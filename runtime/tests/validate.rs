//! `Validate`: valid messages pass without allocating; invalid ones end the call with
//! `INVALID_ARGUMENT` and `google.rpc.BadRequest` details that decode to the violations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tonic::{Code, Request};
use tonic_intercept::tonic_types::StatusExt;
use tonic_intercept::validate::Violations;
use tonic_intercept::{Call, Rpc, Validate};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    #[prost(string, tag = "1")]
    pub zip: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateUserRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub email: String,
    #[prost(message, optional, tag = "3")]
    pub address: Option<Address>,
    #[prost(message, repeated, tag = "4")]
    pub previous: Vec<Address>,
}

impl Validate for Address {
    fn validate(&self, violations: &mut Violations) {
        if self.zip.len() != 5 {
            violations.field("zip", "must have 5 digits");
        }
    }
}

impl Validate for CreateUserRequest {
    fn validate(&self, violations: &mut Violations) {
        if self.name.is_empty() {
            violations.field("name", "must not be empty");
        }
        if !self.email.contains('@') {
            violations.field("email", "must contain @");
        }
        violations.nested("address", &self.address);
        violations.each("previous", &self.previous);
    }
}

tonic_intercept::__doc_rpc!(
    CreateUser,
    "users.v1.UserService",
    "CreateUser",
    Unary,
    CreateUserRequest,
    ()
);

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn call() -> Call {
    Call::start(&CreateUser::DESCRIPTOR, &Request::new(()), None)
}

fn valid() -> CreateUserRequest {
    CreateUserRequest {
        name: "Ada".into(),
        email: "ada@example.com".into(),
        address: Some(Address {
            zip: "12345".into(),
        }),
        previous: vec![Address {
            zip: "54321".into(),
        }],
    }
}

#[test]
fn a_valid_message_passes_without_allocating() {
    let call = call();
    let request = valid();
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        tonic_intercept::__private::validate(&call, &request).unwrap();
    }
    assert_eq!(ALLOCATIONS.with(Cell::get) - before, 0);
}

#[test]
fn an_invalid_message_is_invalid_argument_with_bad_request_details() {
    let request = CreateUserRequest {
        name: String::new(),
        email: "ada".into(),
        ..valid()
    };
    let status = tonic_intercept::__private::validate(&call(), &request).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "CreateUser: 2 invalid fields: name: must not be empty; email: must contain @"
    );
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    let found: Vec<(&str, &str)> = bad_request
        .field_violations
        .iter()
        .map(|v| (v.field.as_str(), v.description.as_str()))
        .collect();
    assert_eq!(
        found,
        [("name", "must not be empty"), ("email", "must contain @")]
    );
}

#[test]
fn nested_and_repeated_fields_have_paths() {
    let request = CreateUserRequest {
        address: Some(Address { zip: "1".into() }),
        previous: vec![
            Address {
                zip: "12345".into(),
            },
            Address { zip: "x".into() },
        ],
        ..valid()
    };
    let status = tonic_intercept::__private::validate(&call(), &request).unwrap_err();
    assert_eq!(
        status.message(),
        "CreateUser: 2 invalid fields: address.zip: must have 5 digits; \
         previous[1].zip: must have 5 digits"
    );
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["address.zip", "previous[1].zip"]);
}

#[test]
fn violations_collect_in_order() {
    let mut v = Violations::new();
    assert!(v.is_empty());
    v.field("a", "one")
        .scope("b", |v| {
            v.field("c", "two");
            v.field("", "three");
        })
        .field("d.e", "four");
    assert_eq!(v.len(), 4);
    let all: Vec<_> = v.iter().collect();
    assert_eq!(
        all,
        [
            ("a", "one"),
            ("b.c", "two"),
            ("b", "three"),
            ("d.e", "four")
        ]
    );
}

#[test]
fn one_violation_reads_singular_and_long_lists_are_cut() {
    let status = Violations::new()
        .field("name", "must not be empty")
        .clone()
        .into_status("CreateUser");
    assert_eq!(
        status.message(),
        "CreateUser: 1 invalid field: name: must not be empty"
    );

    let mut many = Violations::new();
    for i in 0..12 {
        many.field(format!("f{i}"), "bad");
    }
    let status = many.into_status("CreateUser");
    assert!(
        status.message().ends_with("f9: bad; and 2 more"),
        "{}",
        status.message()
    );
    // The details carry every violation.
    assert_eq!(
        status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .len(),
        12
    );
}
