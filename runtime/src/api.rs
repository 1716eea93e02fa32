//! The generated gRPC types and services of `proto/berth/v1/berth.proto`.
#![allow(clippy::all)]

tonic::include_proto!("berth.v1");

/// Serialized descriptors of the API, served through gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");
