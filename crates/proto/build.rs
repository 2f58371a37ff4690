//! Compiles the schema with a pure-Rust protobuf compiler (no `protoc` on the build machine).

fn main() {
    let files = ["proto/client.proto", "proto/admin.proto", "proto/internal.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"]).expect("schema compiles");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let command = descriptors
        .file
        .iter()
        .filter(|file| file.package() == "missive.v1")
        .flat_map(|file| &file.enum_type)
        .find(|e| e.name() == "Command")
        .expect("the schema has missive.v1.Command");
    let commands: Vec<(&str, i32)> =
        command.value.iter().map(|v| (v.name(), v.number())).filter(|(_, n)| *n != 0).collect();
    std::fs::write(out.join("command.rs"), command_table(&commands)).expect("writing command.rs");
    let mut config = prost_build::Config::new();
    // The allocator's state is per user: its calls always meet the node that holds the user.
    let generator = missive_rpc::codegen::TraitGenerator::default()
        .route_by("missive.internal.v1.Seq.Alloc", "user_id")
        // The client commands that the logic layer serves, for the access layer's dispatch.
        .method_list("missive.internal.v1.ClientApi", "missive.v1")
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
        ".missive.v1.UploadPartRequest.data",
        ".missive.v1.DownloadResponse.data",
    ] {
        config.field_attribute(field, "#[serde(with = \"crate::json::base64\")]");
    }
    // A sync item is a message most of the time: boxing it would cost an allocation for each
    // one to save bytes on the rarer profiles and contacts.
    config.enum_attribute(".missive.v1.SyncItem.body", "#[allow(clippy::large_enum_variant)]");
    // An optional field may be absent, but not null (docs/protocol.md §4.3).
    for field in
        [".missive.v1.GroupUpdateRequest.name", ".missive.v1.GroupUpdateRequest.announcement"]
    {
        config.field_attribute(field, "#[serde(deserialize_with = \"crate::json::present\")]");
    }
    config.compile_fds(descriptors).expect("code generation succeeds");
}

/// One value of the schema's `Command` enum, as the frame's command type names it.
struct CommandName {
    /// `MarkRead`: the Rust variant.
    variant: String,
    /// `mark_read`: the short-link path segment.
    path: String,
    number: u16,
}

/// The frame's command type from the schema's `Command` enum (`COMMAND_MARK_READ = 33` is
/// `Command::MarkRead`, number 33, short-link name `mark_read`).
fn command_table(values: &[(&str, i32)]) -> String {
    let commands: Vec<CommandName> = values
        .iter()
        .map(|(name, number)| {
            let path = name.strip_prefix("COMMAND_").expect("COMMAND_ prefix").to_lowercase();
            let variant =
                path.split('_').map(|word| word[..1].to_uppercase() + &word[1..]).collect();
            let number = u16::try_from(*number).expect("command numbers fit the frame header");
            CommandName { variant, path, number }
        })
        .collect();
    let lines = |line: &dyn Fn(usize, &CommandName) -> String| -> String {
        commands.iter().enumerate().map(|(i, c)| line(i, c)).collect::<Vec<_>>().join("\n")
    };
    format!(
        "/// Every client command, as the schema's `missive.v1.Command` numbers them. The numbers
/// are part of the wire protocol: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Command {{
{variants}
}}

impl Command {{
    pub const ALL: [Command; {count}] = [
{all}
    ];

    /// The command's place in [`Command::ALL`], which numbers per-command tables.
    pub fn index(self) -> usize {{
        match self {{
{index}
        }}
    }}

    /// The path segment of the short link: `POST /v1/<name>`.
    pub fn name(self) -> &'static str {{
        match self {{
{name}
        }}
    }}
}}
",
        count = commands.len(),
        variants = lines(&|_, c| format!("    {} = {},", c.variant, c.number)),
        all = lines(&|_, c| format!("        Command::{},", c.variant)),
        index = lines(&|i, c| format!("            Command::{} => {i},", c.variant)),
        name = lines(&|_, c| format!("            Command::{} => \"{}\",", c.variant, c.path)),
    )
}
