//! Compiles the schema with a pure-Rust protobuf compiler (no `protoc` on the build machine).

fn main() {
    let files = ["proto/client.proto", "proto/admin.proto", "proto/internal.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"]).expect("schema compiles");
    let mut config = prost_build::Config::new();
    // The allocator's state is per user: its calls always meet the node that holds the user.
    let generator = missive_rpc::codegen::TraitGenerator::default()
        .route_by("missive.internal.v1.Seq.Alloc", "user_id")
        // The storage layer: every data-access service (`*Store`), reached as one.
        .bundle("Storage", "Store");
    config.service_generator(Box::new(generator));
    // The client protocol is also spoken as JSON on the short link, the admin API only so.
    for package in [".missive.v1", ".missive.admin.v1"] {
        config.type_attribute(package, "#[derive(serde::Serialize, serde::Deserialize)]");
        config.message_attribute(package, "#[serde(default)]");
    }
    for field in [
        ".missive.v1.SyncRequest.sync_key",
        ".missive.v1.SyncResponse.sync_key",
        ".missive.v1.UploadRequest.data",
        ".missive.v1.DownloadResponse.data",
    ] {
        config.field_attribute(field, "#[serde(with = \"crate::json::base64\")]");
    }
    // An optional field may be absent, but not null (docs/protocol.md §4.3).
    for field in
        [".missive.v1.GroupUpdateRequest.name", ".missive.v1.GroupUpdateRequest.announcement"]
    {
        config.field_attribute(field, "#[serde(deserialize_with = \"crate::json::present\")]");
    }
    config.compile_fds(descriptors).expect("code generation succeeds");
}
