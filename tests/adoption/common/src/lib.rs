//! Types shared by the services of the adoption test crate: `common.v1`, generated here
//! once and named by the services' `build.rs` with `extern_path(".common.v1", ...)`.

/// The `common` protobuf packages.
pub mod common {
    /// `common.v1`.
    pub mod v1 {
        #![allow(missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/common.v1.rs"));

        impl Money {
            /// `units` whole units of `currency_code`.
            pub fn new(currency_code: &str, units: i64) -> Self {
                Money {
                    currency_code: currency_code.to_owned(),
                    units,
                    nanos: 0,
                }
            }
        }
    }
}
