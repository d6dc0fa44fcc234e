//! `protoc-gen-tonic-intercept`: the protoc / buf plugin of [tonic-intercept]. It writes what
//! `tonic_intercept_build::configure().compile_protos(..)` writes in a `build.rs`, byte for
//! byte: prost's messages, tonic's clients and servers, and the `<service>_intercept`
//! module of typed per-RPC types, with the policy of the `tonic_intercept.v1` options.
//!
//! ```text
//! cargo install protoc-gen-tonic-intercept
//! ```
//!
//! # buf
//!
//! ```yaml
//! # buf.gen.yaml
//! version: v2
//! plugins:
//!   - local: protoc-gen-tonic-intercept
//!     out: src/gen
//!     # One request for the whole module: one complete file per package, one include file.
//!     strategy: all
//!     opt:
//!       - include_file=mod.rs
//!       - file_descriptor_set
//! ```
//!
//! `buf generate` writes `src/gen/<package>.rs` for each package, `src/gen/mod.rs`, and
//! `src/gen/file_descriptor_set.bin` (for server reflection); `mod gen;` in `src/lib.rs`
//! brings them in as `gen::<package path>`.
//!
//! Files that `import "tonic_intercept/v1/options.proto";` need that file in the buf
//! module (or a dependency). Write the copy that matches this plugin with
//!
//! ```text
//! protoc-gen-tonic-intercept --print-options-proto > proto/tonic_intercept/v1/options.proto
//! ```
//!
//! The plugin never generates code for it.
//!
//! # protoc
//!
//! ```text
//! protoc -I proto -I <dir holding tonic_intercept/v1/options.proto> \
//!   --tonic-intercept_out=src/gen --tonic-intercept_opt=include_file=mod.rs \
//!   proto/catalog/v1/catalog.proto
//! ```
//!
//! (`--plugin=protoc-gen-tonic-intercept=<path>` when the binary is not on `PATH`.)
//!
//! # Parameters
//!
//! `build_client=false`, `build_server=false`, `intercept_types=false`,
//! `file_descriptor_set`, `include_file=<name>`, and the builder's code options by name
//! (`extern_path=.common.v1=::common::v1`, `bytes=.`, `type_attribute=..`); an unknown one
//! is an error. Their meaning,
//! the output files and the errors are documented in [`tonic_intercept_build::plugin`].
//!
//! [tonic-intercept]: https://docs.rs/tonic-intercept

#![warn(missing_docs, unreachable_pub)]

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

const USAGE: &str = "\
protoc-gen-tonic-intercept: a protoc plugin; it reads a CodeGeneratorRequest on stdin.

Run it through protoc or buf:
  protoc --tonic-intercept_out=src/gen [--tonic-intercept_opt=PARAMS] FILE.proto...
  buf generate   (buf.gen.yaml: `- local: protoc-gen-tonic-intercept`)

PARAMS (comma-separated): build_client=false, build_server=false, intercept_types=false,
  file_descriptor_set, include_file=NAME, and tonic_intercept_build::Builder's code
  options by name (extern_path=.PKG=::RUST, bytes=., type_attribute=.PATH=ATTR, ...;
  a comma inside a value is written \\,)

Options:
  --print-options-proto  print tonic_intercept/v1/options.proto, for your proto includes
  -V, --version          print the version
  -h, --help             print this
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if let Some(arg) = args.next() {
        let text = match arg.as_str() {
            "--print-options-proto" => tonic_intercept_build::OPTIONS_PROTO.to_owned(),
            "-V" | "--version" => {
                format!("protoc-gen-tonic-intercept {}\n", env!("CARGO_PKG_VERSION"))
            }
            "-h" | "--help" => USAGE.to_owned(),
            other => {
                eprintln!("protoc-gen-tonic-intercept: unknown argument `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        return write_out(text.as_bytes());
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut request = Vec::new();
    if let Err(e) = stdin.read_to_end(&mut request) {
        eprintln!("protoc-gen-tonic-intercept: cannot read the request from stdin: {e}");
        return ExitCode::FAILURE;
    }
    // Errors in the `.proto` or the parameters travel in the response, as protoc expects.
    write_out(&tonic_intercept_build::plugin::respond(&request))
}

fn write_out(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protoc-gen-tonic-intercept: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
