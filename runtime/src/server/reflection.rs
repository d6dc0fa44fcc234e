//! gRPC server reflection, v1 and v1alpha, from encoded descriptor sets.

use tonic_reflection::server::{Builder, Error, v1, v1alpha};

/// The encoded `FileDescriptorSet` of `grpc.health.v1`: pass it to [`reflection`] with
/// your own so reflection clients can call the health service too.
pub const HEALTH_FILE_DESCRIPTOR_SET: &[u8] = tonic_health::pb::FILE_DESCRIPTOR_SET;

/// The server reflection services, v1 (`grpc.reflection.v1.ServerReflection`) and
/// v1alpha (`grpc.reflection.v1alpha.ServerReflection`), over `encoded_sets`: add both,
/// since clients differ in the one they ask (grpcurl, Postman, grpcui).
///
/// Each set is an encoded `google.protobuf.FileDescriptorSet`, as tonic-intercept-build
/// writes it for the compiled `.proto` files (`tonic::include_file_descriptor_set!`).
/// Every service of every set is listed, and the reflection service itself.
///
/// Reflection is a tonic service of its own, outside every `#[intercept]` policy: anyone
/// who can reach the server can read the whole API, including RPCs they may not call.
/// Whether to serve it is your choice: serve it on internal listeners only, or not at
/// all in production, if the schema is not public. With the library's
/// [`Server`](crate::server::Server) it is one line, `.with_reflection(&[..])?`, off
/// unless called.
///
/// ```
/// use tonic_intercept::server::{HEALTH_FILE_DESCRIPTOR_SET, reflection};
///
/// # fn run() -> Result<(), tonic_intercept::tonic_reflection::server::Error> {
/// // In your crate: tonic::include_file_descriptor_set!("file_descriptor_set").
/// # const FILE_DESCRIPTOR_SET: &[u8] = HEALTH_FILE_DESCRIPTOR_SET;
/// let (v1, v1alpha) = reflection(&[FILE_DESCRIPTOR_SET, HEALTH_FILE_DESCRIPTOR_SET])?;
/// let router = tonic::transport::Server::builder()
///     .add_service(v1)
///     .add_service(v1alpha);
/// # drop(router);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// When a set cannot be decoded, or its files are inconsistent (a missing dependency, a
/// type defined twice).
#[allow(clippy::type_complexity)]
pub fn reflection(
    encoded_sets: &[&'static [u8]],
) -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    Error,
> {
    reflection_of(encoded_sets, None)
}

/// `grpc.health.v1.Health`, as reflection lists it.
pub(crate) const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";

/// [`reflection`], listing only the services named in `served` (and each reflection
/// service itself) when given; every file of the sets stays resolvable.
#[allow(clippy::type_complexity)]
pub(crate) fn reflection_of(
    encoded_sets: &[&'static [u8]],
    served: Option<&[&'static str]>,
) -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    Error,
> {
    let builder = |own: &str| {
        let builder = encoded_sets
            .iter()
            .fold(Builder::configure(), |builder, set| {
                builder.register_encoded_file_descriptor_set(set)
            });
        match served {
            Some(names) => names
                .iter()
                .chain([&own])
                .fold(builder, |builder, name| builder.with_service_name(*name)),
            None => builder,
        }
    };
    Ok((
        builder(V1_NAME).build_v1()?,
        builder(V1ALPHA_NAME).build_v1alpha()?,
    ))
}

const V1_NAME: &str = "grpc.reflection.v1.ServerReflection";
const V1ALPHA_NAME: &str = "grpc.reflection.v1alpha.ServerReflection";
