//! Turns each `service` of the schema into an async Rust trait and its RPC glue (used from
//! build scripts).
//!
//! For `service MessageStore { rpc Append(AppendRequest) returns (AppendResponse); }` it emits:
//! - `trait MessageStore` with `async fn append(&self, ctx: &Ctx, req: AppendRequest) ->
//!   Result<AppendResponse, Status>`;
//! - `message_store_names`: the service's full name and method names, as metrics show them;
//! - `MessageStoreGuarded`: wraps any implementation so every call goes through a
//!   [`Guard`](crate::Guard) (deadline check, overload control, metrics);
//! - `MessageStoreTimed`: wraps any implementation so each call's duration is recorded per
//!   method by a [`Timer`](crate::Timer), labelled with what implements it;
//! - `MessageStoreRemote`: implements the trait by calling another process over gRPC;
//! - `message_store_routes`: serves an implementation over gRPC.

use prost_build::{Service, ServiceGenerator};
use std::fmt::Write;

/// Plug into `prost_build::Config::service_generator`.
#[derive(Debug, Default)]
pub struct TraitGenerator {
    /// (`package.Service.Method`, request field): calls of that method are routed by that
    /// field (a user id), so they always reach the same endpoint.
    route_keys: Vec<(String, String)>,
}

impl TraitGenerator {
    /// Routes calls of `method` (`package.Service.Method`) by the request's `field`.
    pub fn route_by(mut self, method: &str, field: &str) -> Self {
        self.route_keys.push((method.to_string(), field.to_string()));
        self
    }
}

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
        guarded(&service, &module, buf);
        timed(&service, &module, buf);
        self.remote(&service, &full_name, buf);
        routes(&service, &full_name, &module, buf);
    }
}

impl TraitGenerator {
    fn remote(&self, service: &Service, full_name: &str, buf: &mut String) {
        let name = &service.name;
        let _ = write!(
            buf,
            "/// `{name}` served by another process, reached over gRPC.
pub struct {name}Remote {{
    client: ::missive_rpc::remote::Client,
}}
impl {name}Remote {{
    pub fn new(client: ::missive_rpc::remote::Client) -> ::std::sync::Arc<Self> {{
        ::std::sync::Arc::new(Self {{ client }})
    }}
}}
#[::async_trait::async_trait]
impl {name} for {name}Remote {{
"
        );
        for method in &service.methods {
            let method_name = format!("{full_name}.{}", method.proto_name);
            let key = self
                .route_keys
                .iter()
                .find(|(m, _)| *m == method_name)
                .map_or("None".to_string(), |(_, field)| format!("Some(req.{field})"));
            let _ = writeln!(
                buf,
                "    async fn {m}(&self, ctx: &::missive_rpc::Ctx, req: {i}) -> ::core::result::Result<{o}, ::missive_rpc::Status> {{
        self.client.unary(ctx, \"/{full_name}/{p}\", {key}, req).await
    }}",
                m = method.name,
                i = method.input_type,
                o = method.output_type,
                p = method.proto_name
            );
        }
        let _ = writeln!(buf, "}}");
    }
}

fn guarded(service: &Service, module: &str, buf: &mut String) {
    let name = &service.name;
    wrapper(
        service,
        buf,
        Wrapper {
            suffix: "Guarded",
            doc: format!(
                "`{name}` behind the RPC framework's guard: deadline check, overload control and
/// per-method metrics for every call, local or remote."
            ),
            field: "guard: ::missive_rpc::Guard",
            new: format!(
                "pub fn new(inner: ::std::sync::Arc<dyn {name}>, config: &::missive_rpc::GuardConfig) -> ::std::sync::Arc<Self> {{
    let guard = ::missive_rpc::Guard::new({module}_names::SERVICE, {module}_names::METHODS, config);
    ::std::sync::Arc::new(Self {{ inner, guard }})
}}"
            ),
            call: "self.guard.call({index}, ctx, {inner})",
        },
    );
}

fn timed(service: &Service, module: &str, buf: &mut String) {
    let name = &service.name;
    wrapper(
        service,
        buf,
        Wrapper {
            suffix: "Timed",
            doc: format!(
                "`{name}` with each call's duration recorded per method, labelled with what
/// implements it (see `missive_rpc::Timer`)."
            ),
            field: "timer: ::missive_rpc::Timer",
            new: format!(
                "pub fn new(inner: ::std::sync::Arc<dyn {name}>, metric: &'static str, labels: &[(&'static str, &'static str)]) -> ::std::sync::Arc<Self> {{
    let timer = ::missive_rpc::Timer::new(metric, labels, {module}_names::METHODS);
    ::std::sync::Arc::new(Self {{ inner, timer }})
}}"
            ),
            call: "self.timer.call({index}, {inner})",
        },
    );
}

/// A struct `<Service><suffix>` that holds an implementation and one more field, and runs each
/// call of the implementation through `call` (with `{index}`, the method's number, and
/// `{inner}`, the call's future).
struct Wrapper {
    suffix: &'static str,
    doc: String,
    field: &'static str,
    new: String,
    call: &'static str,
}

fn wrapper(service: &Service, buf: &mut String, wrapper: Wrapper) {
    let name = format!("{}{}", service.name, wrapper.suffix);
    let _ = write!(
        buf,
        "/// {doc}
pub struct {name} {{
inner: ::std::sync::Arc<dyn {service}>,
{field},
}}
impl {name} {{
{new}
}}
#[::async_trait::async_trait]
impl {service} for {name} {{
",
        doc = wrapper.doc,
        field = wrapper.field,
        new = wrapper.new,
        service = service.name,
    );
    for (index, method) in service.methods.iter().enumerate() {
        let inner = format!("self.inner.{}(ctx, req)", method.name);
        let call = wrapper.call.replace("{index}", &index.to_string()).replace("{inner}", &inner);
        let _ = writeln!(
            buf,
            "    async fn {m}(&self, ctx: &::missive_rpc::Ctx, req: {i}) -> ::core::result::Result<{o}, ::missive_rpc::Status> {{
    {call}.await
}}",
            m = method.name,
            i = method.input_type,
            o = method.output_type
        );
    }
    let _ = writeln!(buf, "}}");
}

fn routes(service: &Service, full_name: &str, module: &str, buf: &mut String) {
    let name = &service.name;
    let _ = writeln!(
        buf,
        "/// Serves `{name}` over gRPC, one route per method.
pub fn {module}_routes(service: ::std::sync::Arc<dyn {name}>) -> ::missive_rpc::remote::Routes {{
::missive_rpc::remote::Routes::default()"
    );
    for method in &service.methods {
        let _ = writeln!(
            buf,
            "        .unary(\"/{full_name}/{p}\", {{
        let service = service.clone();
        move |ctx: ::missive_rpc::Ctx, req: {i}| {{
            let service = service.clone();
            async move {{ service.{m}(&ctx, req).await }}
        }}
    }})",
            m = method.name,
            i = method.input_type,
            p = method.proto_name
        );
    }
    let _ = writeln!(buf, "}}");
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
