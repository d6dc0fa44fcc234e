#!/usr/bin/env bash
# Build cost of tonic-intercept-build against plain tonic-prost-build.
#
# What it answers: how much longer does a crate take to rebuild when its build.rs uses
# `tonic_intercept_build::configure().compile_protos(..)` instead of protox +
# `tonic_prost_build::configure().compile_fds(..)`, on one big proto: package `big.v1`,
# SERVICES services (default 50) x 10 RPCs (4 unary, 2 server-streaming,
# 2 client-streaming, 2 bidi), shared messages plus a Request/Response/Item triple per
# service, and comments on every service and RPC. Target: intercept/plain <= 1.25.
#
# Usage (from anywhere; nothing in the repository is written):
#
#     bash bench/build-cost/run.sh
#
# Environment knobs (defaults in brackets):
#   BUILD_COST_DIR    scratch dir for big.proto and the two throwaway crates
#                     [/tmp/tonic-intercept-build-cost]; it is recreated on every run
#   CARGO_TARGET_DIR  target dir shared by both crates [/tmp/build-cost-target]; kept
#                     between runs so the dependencies stay warm
#   REPS              repetitions of every measurement; the minimum is reported [5]
#   PROFILES          "debug", "release" or both ["debug release"]; "release" is cargo's
#                     default release profile of a user's crate (the scratch crates are
#                     stand-alone workspaces: the workspace's `bench-lto` profile, which the
#                     runtime benchmarks use, does not apply here)
#   SCENARIOS         which rebuilds to time ["proto lib gen"]:
#                       proto   touch proto/big.proto: the build script runs again, then
#                               the crate compiles (the number the 25 % target is about)
#                       lib     touch src/lib.rs: the crate compiles, build script not rerun
#                               (isolates rustc on the generated code)
#                       check   touch proto/big.proto, `cargo check` (build script +
#                               rustc front end only, no codegen)
#                       gen     run the already built build-script binary by hand
#                               (OUT_DIR in the scratch dir): the generator alone, no
#                               cargo, no rustc (build scripts are unoptimised in both
#                               profiles: cargo's default build-override is opt-level 0)
#                       buildrs touch build.rs: build script recompiled + relinked + run,
#                               then the crate compiles
#   SERVICES          number of services [50]
#   CARGO_INCREMENTAL [0]: incremental compilation is off so every rebuild compiles the
#                     whole generated file, as after a real .proto change. With it on,
#                     touching a file whose generated code does not change is mostly
#                     served from the incremental cache and measures nothing useful.
#
# Method:
#   * Dependencies (tonic, prost, protox, tonic-intercept, ...) are built once first;
#     each measurement is a `cargo build` of one crate whose dependencies are fresh, so
#     it times only that crate's build script and/or its compilation (plus cargo's
#     own fingerprint check, a few hundredths of a second, the same for both).
#   * CPU time = user + sys of cargo and all the processes it waited for (rustc, the
#     build script), from bash's `time`. CPU time is what is compared, because the
#     machine is shared and wall time depends on what else runs. Wall time is printed
#     for information only.
#   * The two crates are measured alternately (plain, intercept, plain, ...) so that a
#     burst of load from elsewhere hits both; every run checks that cargo really
#     recompiled the crate. Raw samples go to $BUILD_COST_DIR/samples.tsv.
#   * Both crates have the same dependencies: tonic (default features + "gzip", because
#     tonic-intercept enables "gzip" on tonic and the plain crate should compile
#     against the very same tonic), tonic-prost, prost; the intercept crate adds
#     tonic-intercept (path dependency), which the generated code names. The
#     workspace's Cargo.lock is copied in so both crates resolve the versions the
#     project uses. The proto sits in proto/ (include dir "proto") so that the
#     include-dir `rerun-if-changed` does not cover src/lib.rs.
#   * Generated code size: lines of $OUT_DIR/big.v1.rs, split into the lines inside
#     `pub mod *_client`, `*_server` and `*_intercept` modules and everything else
#     (prost messages, module doc comments, blank lines: "msgs/other").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRATCH="${BUILD_COST_DIR:-/tmp/tonic-intercept-build-cost}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/build-cost-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
REPS="${REPS:-5}"
PROFILES="${PROFILES:-debug release}"
SCENARIOS="${SCENARIOS:-proto lib gen}"
SERVICES="${SERVICES:-50}"
CRATES=(plain intercept)

case "$SCRATCH" in /|"$REPO"|"$REPO"/*) echo "refusing scratch dir $SCRATCH" >&2; exit 2;; esac
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH" "$CARGO_TARGET_DIR"
LOG="$SCRATCH/cargo.log"
: >"$LOG"

# ---------------------------------------------------------------- 1. big.proto
gen_proto() {
    local s n
    cat <<'EOF'
// Generated by bench/build-cost/run.sh: a large API to measure code-generation cost.
syntax = "proto3";

package big.v1;

// Shared: an empty message.
message Empty {}

// Shared: how a client pages through a list.
message PageRequest {
  uint32 page_size = 1;
  string page_token = 2;
}

// Shared: outcome of an operation.
message Status {
  int32 code = 1;
  string message = 2;
  repeated string details = 3;
}

// Shared: free-form request metadata.
message Metadata {
  map<string, string> labels = 1;
  int64 created_at_unix_ms = 2;
  string trace_id = 3;
}

// Shared: a piece of a byte stream.
message Chunk {
  bytes data = 1;
  uint64 offset = 2;
  bool last = 3;
}

// Shared: scheduling priority.
enum Priority {
  PRIORITY_UNSPECIFIED = 0;
  PRIORITY_LOW = 1;
  PRIORITY_NORMAL = 2;
  PRIORITY_HIGH = 3;
}
EOF
    for ((n = 0; n < SERVICES; n++)); do
        s=$(printf 'Service%02d' "$n")
        cat <<EOF

// ---- ${s}

// One record managed by ${s}.
message ${s}Item {
  string id = 1;
  string name = 2;
  Priority priority = 3;
  Metadata metadata = 4;
  repeated string tags = 5;
  oneof payload {
    string text = 6;
    bytes blob = 7;
    int64 number = 8;
  }
}

// Request of ${s}.
message ${s}Request {
  string id = 1;
  PageRequest page = 2;
  Metadata metadata = 3;
  ${s}Item item = 4;
  repeated string field_mask = 5;
}

// Response of ${s}.
message ${s}Response {
  Status status = 1;
  repeated ${s}Item items = 2;
  string next_page_token = 3;
  uint64 total = 4;
}

// ${s} manages ${s}Item records.
//
// It has ten RPCs of all four kinds.
service ${s} {
  // Fetches one item by id.
  rpc GetItem(${s}Request) returns (${s}Response) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  // Lists items, one page at a time.
  rpc ListItems(${s}Request) returns (${s}Response) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  // Creates or replaces an item.
  rpc PutItem(${s}Request) returns (${s}Response) {
    option idempotency_level = IDEMPOTENT;
  }
  // Deletes an item; answers with nothing.
  rpc DeleteItem(${s}Request) returns (Empty);
  // Streams every change to the matching items.
  rpc WatchItems(${s}Request) returns (stream ${s}Response);
  // Downloads an item's blob in chunks.
  rpc Download(${s}Request) returns (stream Chunk);
  // Uploads a blob in chunks.
  rpc Upload(stream Chunk) returns (${s}Response);
  // Creates many items from a stream of requests.
  rpc BatchPut(stream ${s}Request) returns (Status);
  // Two-way synchronisation of items.
  rpc Sync(stream ${s}Request) returns (stream ${s}Response);
  // Raw two-way byte pipe.
  rpc Pipe(stream Chunk) returns (stream Chunk);
}
EOF
    done
}

# ---------------------------------------------------------------- 2. the two crates
make_crate() {
    local kind=$1 dir="$SCRATCH/$1"
    mkdir -p "$dir/src" "$dir/proto"
    cp "$SCRATCH/big.proto" "$dir/proto/big.proto"
    cp "$REPO/Cargo.lock" "$dir/Cargo.lock"
    echo 'pub mod pb { tonic::include_proto!("big.v1"); }' >"$dir/src/lib.rs"
    {
        cat <<EOF
[package]
name = "bench_$kind"
version = "0.0.0"
edition = "2024"
publish = false

# Stand-alone: do not join the tonic-intercept workspace.
[workspace]

[dependencies]
tonic = { version = "=0.14.9", features = ["gzip"] }
tonic-prost = "=0.14.9"
prost = "=0.14.4"
EOF
        if [[ $kind == plain ]]; then
            cat <<'EOF'

[build-dependencies]
tonic-prost-build = "=0.14.9"
protox = "=0.10.0"
EOF
        else
            cat <<EOF
tonic-intercept = { path = "$REPO/runtime" }

[build-dependencies]
tonic-intercept-build = { path = "$REPO/codegen" }
EOF
        fi
    } >"$dir/Cargo.toml"
    if [[ $kind == plain ]]; then
        cat >"$dir/build.rs" <<'EOF'
fn main() {
    // The same rerun-if-changed lines tonic-intercept-build prints.
    println!("cargo:rerun-if-changed=proto/big.proto");
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/big.proto"], ["proto"]).expect("protox");
    tonic_prost_build::configure().compile_fds(fds).expect("tonic-prost-build");
}
EOF
    else
        cat >"$dir/build.rs" <<'EOF'
fn main() -> Result<(), tonic_intercept_build::Error> {
    tonic_intercept_build::configure().compile_protos(&["proto/big.proto"], &["proto"])
}
EOF
    fi
}

profile_flag() { [[ $1 == release ]] && echo --release || true; }

# cargo build|check for one crate; appends to $LOG, dies with the log tail on failure.
cargo_run() { # kind profile subcommand [extra cargo args...]
    local kind=$1 profile=$2 sub=$3
    shift 3
    # shellcheck disable=SC2046
    if ! cargo "$sub" $(profile_flag "$profile") --manifest-path "$SCRATCH/$kind/Cargo.toml" "$@" >>"$LOG" 2>&1; then
        echo "cargo $sub failed for $kind ($profile); last lines of $LOG:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

# One timed rebuild; prints "wall user sys".
timed_rebuild() { # kind profile scenario
    local kind=$1 profile=$2 scenario=$3 dir="$SCRATCH/$1" sub=build tf out
    case "$scenario" in
        proto) touch "$dir/proto/big.proto" ;;
        lib) touch "$dir/src/lib.rs" ;;
        check) touch "$dir/proto/big.proto"; sub=check ;;
        buildrs) touch "$dir/build.rs" ;;
        gen) ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    tf=$(mktemp)
    out=$(mktemp)
    if [[ $scenario == gen ]]; then
        mkdir -p "$SCRATCH/gen-out/$kind"
        if ! { TIMEFORMAT='%R %U %S'; time (cd "$dir" && OUT_DIR="$SCRATCH/gen-out/$kind" \
                "${BUILD_EXE[$kind.$profile]}" >"$out" 2>&1); } 2>"$tf"; then
            cat "$out" >&2
            exit 1
        fi
        tail -n 1 "$tf"
        rm -f "$tf" "$out"
        return
    fi
    # shellcheck disable=SC2046
    if ! { TIMEFORMAT='%R %U %S'; time cargo "$sub" $(profile_flag "$profile") \
            --manifest-path "$dir/Cargo.toml" >"$out" 2>&1; } 2>"$tf"; then
        cat "$out" >&2
        exit 1
    fi
    cat "$out" >>"$LOG"
    if ! grep -q "Compiling bench_$kind\|Checking bench_$kind" "$out"; then
        echo "cargo did not rebuild bench_$kind for scenario $scenario:" >&2
        cat "$out" >&2
        exit 1
    fi
    rm -f "$out"
    tail -n 1 "$tf"
    rm -f "$tf"
}

# Lines of the generated file, split by what produced them: "total msgs clients servers intercept".
gen_lines() { # file
    awk '
        /^pub mod [a-z0-9_]+_client \{/    { sec = "client" }
        /^pub mod [a-z0-9_]+_server \{/    { sec = "server" }
        /^pub mod [a-z0-9_]+_intercept \{/ { sec = "intercept" }
        { n[sec == "" ? "msgs" : sec]++; total++ }
        /^\}/ { sec = "" }
        END { printf "%d %d %d %d %d\n", total, n["msgs"], n["client"], n["server"], n["intercept"] }
    ' "$1"
}

# Sets OUT_DIR_OF and BUILD_EXE[kind.profile] from cargo's JSON messages.
find_outputs() { # kind profile
    local json
    # shellcheck disable=SC2046
    json=$(cargo build $(profile_flag "$2") --manifest-path "$SCRATCH/$1/Cargo.toml" \
        --message-format=json 2>>"$LOG" | grep "bench_$1")
    OUT_DIR_OF=$(grep '"reason":"build-script-executed"' <<<"$json" |
        sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
    BUILD_EXE[$1.$2]=$(grep '"reason":"compiler-artifact"' <<<"$json" |
        grep -o '"[^"]*/build-script-build"' | tr -d '"' | tail -n 1)
    [[ -x ${BUILD_EXE[$1.$2]} ]] || { echo "no build script binary for $1 ($2)" >&2; exit 1; }
}

gen_proto >"$SCRATCH/big.proto"
for k in "${CRATES[@]}"; do make_crate "$k"; done

echo "== machine: $(nproc) cores, $(rustc -V), $(cargo -V)"
echo "== big.proto: $SERVICES services x 10 RPCs, $(wc -l <"$SCRATCH/big.proto") lines; scratch $SCRATCH; target $CARGO_TARGET_DIR"
echo "== reps $REPS, profiles: $PROFILES, scenarios: $SCENARIOS, CARGO_INCREMENTAL=$CARGO_INCREMENTAL"

# ---------------------------------------------------------------- 3. measure
SAMPLES="$SCRATCH/samples.tsv"
printf 'generator\tprofile\tscenario\trep\twall_s\tuser_s\tsys_s\tcpu_s\n' >"$SAMPLES"
declare -A LINES BYTES SPLIT BUILD_EXE

for profile in $PROFILES; do
    for k in "${CRATES[@]}"; do
        echo "-- warming $k ($profile): building dependencies and the crate once"
        start=$SECONDS
        cargo_run "$k" "$profile" build
        cargo_run "$k" "$profile" check # check metadata of the deps, so `check` runs are warm too
        echo "   done in $((SECONDS - start)) s"
        find_outputs "$k" "$profile"
        f="$OUT_DIR_OF/big.v1.rs"
        [[ -f $f ]] || { echo "no generated file at $f" >&2; exit 1; }
        cp "$f" "$SCRATCH/$k.$profile.big.v1.rs"
        LINES[$k]=$(wc -l <"$f")
        BYTES[$k]=$(wc -c <"$f")
        SPLIT[$k]=$(gen_lines "$f")
    done
    for scenario in $SCENARIOS; do
        for ((r = 1; r <= REPS; r++)); do
            for k in "${CRATES[@]}"; do
                read -r wall user sys < <(timed_rebuild "$k" "$profile" "$scenario")
                cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
                printf '%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n' "$k" "$profile" "$scenario" "$r" \
                    "$wall" "$user" "$sys" "$cpu" >>"$SAMPLES"
                printf '   %-9s %-7s %-6s rep %d: cpu %6.2f s  wall %6.2f s\n' \
                    "$k" "$profile" "$scenario" "$r" "$cpu" "$wall"
            done
        done
    done
done

# ---------------------------------------------------------------- 4. report
echo
echo "== generated code (\$OUT_DIR/big.v1.rs; copies in $SCRATCH/<generator>.<profile>.big.v1.rs)"
printf '%-10s %8s %10s %11s %9s %9s %10s\n' generator lines bytes msgs/other clients servers intercept
for k in "${CRATES[@]}"; do
    read -r total msgs cl sv ic <<<"${SPLIT[$k]}"
    printf '%-10s %8d %10d %11d %9d %9d %10d\n' "$k" "$total" "${BYTES[$k]}" "$msgs" "$cl" "$sv" "$ic"
done

echo
echo "== rebuild cost, min of $REPS (CPU = user+sys; wall for information)"
awk -F'\t' -v lp="${LINES[plain]}" -v li="${LINES[intercept]}" -v order="$PROFILES|$SCENARIOS" '
    NR == 1 { next }
    {
        key = $1 SUBSEP $2 SUBSEP $3
        if (!(key in cpu) || $8 + 0 < cpu[key]) cpu[key] = $8 + 0
        if (!(key in wall) || $5 + 0 < wall[key]) wall[key] = $5 + 0
        cnt[key]++
    }
    END {
        split(order, parts, "|")
        np = split(parts[1], profiles, " "); ns = split(parts[2], scenarios, " ")
        lines["plain"] = lp; lines["intercept"] = li
        printf "| %-9s | %-7s | %-8s | %-16s | %-11s | %-15s |\n", "generator", "profile", "scenario", "CPU s (min of N)", "wall s (min)", "generated lines"
        printf "|-----------|---------|----------|------------------|-------------|-----------------|\n"
        for (i = 1; i <= np; i++) for (j = 1; j <= ns; j++) {
            p = profiles[i]; s = scenarios[j]
            for (g = 1; g <= 2; g++) {
                k = (g == 1 ? "plain" : "intercept"); key = k SUBSEP p SUBSEP s
                printf "| %-9s | %-7s | %-8s | %8.2f (N=%d)    | %11.2f | %15d |\n", k, p, s, cpu[key], cnt[key], wall[key], lines[k]
            }
        }
        print ""
        printf "%-7s %-8s %-22s %-22s %s\n", "profile", "scenario", "CPU intercept/plain", "wall intercept/plain", "target <= 1.25"
        for (i = 1; i <= np; i++) for (j = 1; j <= ns; j++) {
            p = profiles[i]; s = scenarios[j]
            kp = "plain" SUBSEP p SUBSEP s; ki = "intercept" SUBSEP p SUBSEP s
            rc = cpu[ki] / cpu[kp]; rw = wall[ki] / wall[kp]
            verdict = (s == "proto" ? (rc <= 1.25 ? "PASS" : "FAIL") : "(diagnostic)")
            printf "%-7s %-8s %-22s %-22s %s\n", p, s, sprintf("%.3f (%+.1f%%)", rc, (rc - 1) * 100), sprintf("%.3f", rw), verdict
        }
        printf "\ngenerated lines intercept/plain: %.3f\n", li / lp
    }
' "$SAMPLES"
echo
echo "raw samples: $SAMPLES   cargo output: $LOG"
