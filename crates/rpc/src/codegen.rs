//! Turns each `service` of the schema into an async Rust trait (used from build scripts).
//!
//! For `service MessageStore { rpc Append(AppendRequest) returns (AppendResponse); }` it emits
//! `trait MessageStore` with `async fn append(&self, ctx: &Ctx, req: AppendRequest) ->
//! Result<AppendResponse, Status>`, and the service's full name and method names as constants
//! so that metrics and remote transports name calls the same way everywhere.

use prost_build::{Service, ServiceGenerator};
use std::fmt::Write;

/// Plug into `prost_build::Config::service_generator`.
#[derive(Debug, Default)]
pub struct TraitGenerator;

impl ServiceGenerator for TraitGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let full_name = format!("{}.{}", service.package, service.proto_name);
        for line in &service.comments.leading {
            let _ = writeln!(buf, "///{line}");
        }
        let _ = writeln!(buf, "#[::async_trait::async_trait]");
        let _ = writeln!(buf, "pub trait {}: Send + Sync + 'static {{", service.name);
        for method in &service.methods {
            assert!(
                !method.client_streaming && !method.server_streaming,
                "{full_name}.{}: streaming methods are not supported",
                method.proto_name
            );
            for line in &method.comments.leading {
                let _ = writeln!(buf, "    ///{line}");
            }
            let _ = writeln!(
                buf,
                "    async fn {}(&self, ctx: &::missive_rpc::Ctx, req: {}) -> \
                 ::core::result::Result<{}, ::missive_rpc::Status>;",
                method.name, method.input_type, method.output_type
            );
        }
        let _ = writeln!(buf, "}}");
        let module = to_snake(&service.name);
        let _ = writeln!(
            buf,
            "/// Names of `{full_name}` and its methods, as metrics and logs show them."
        );
        let _ = writeln!(buf, "pub mod {module}_names {{");
        let _ = writeln!(buf, "    pub const SERVICE: &str = \"{full_name}\";");
        let methods: Vec<String> =
            service.methods.iter().map(|m| format!("\"{}\"", m.proto_name)).collect();
        let _ = writeln!(buf, "    pub const METHODS: &[&str] = &[{}];", methods.join(", "));
        let _ = writeln!(buf, "}}");
    }
}

fn to_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn snake_case_of_service_names() {
        assert_eq!(super::to_snake("MessageStore"), "message_store");
        assert_eq!(super::to_snake("Seq"), "seq");
    }
}
