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
//!
//! And for a bundle (`TraitGenerator::bundle`), one struct holding a handle of every service
//! of a package whose name ends in a suffix (`Storage`, of the `*Store` services), which
//! implements each of their traits by calling its handle, and layers, serves or reaches them
//! all at once: the list of those services is the schema's, written nowhere else.
//!
//! The remote items are compiled only with the `remote` feature of the crate that includes the
//! generated code, which must turn on this crate's `remote` feature with it: a crate whose
//! users never cross a process boundary (a client SDK) then builds no server stack.

use prost_build::{Service, ServiceGenerator};
use std::fmt::Write;

/// Plug into `prost_build::Config::service_generator`.
#[derive(Debug, Default)]
pub struct TraitGenerator {
    /// (`package.Service.Method`, request field): calls of that method are routed by that
    /// field (a user id), so they always reach the same endpoint.
    route_keys: Vec<(String, String)>,
    /// (struct name, service-name suffix) of the bundles asked for.
    bundles: Vec<(String, String)>,
    /// (`package.Service`, request package) of the method lists asked for.
    method_lists: Vec<(String, String)>,
    /// The services generated so far that belong to a bundle, by package.
    members: Vec<Member>,
}

/// A service that goes into a bundle: its package, bundle and method signatures.
#[derive(Debug)]
struct Member {
    package: String,
    bundle: String,
    name: String,
    module: String,
    /// (method name, input type, output type).
    methods: Vec<(String, String, String)>,
}

impl TraitGenerator {
    /// Routes calls of `method` (`package.Service.Method`) by the request's `field`.
    pub fn route_by(mut self, method: &str, field: &str) -> Self {
        self.route_keys.push((method.to_string(), field.to_string()));
        self
    }

    /// Generates a macro `<service>_methods!(callback)` that calls `callback! { (Method,
    /// method), ... }` over the methods of `service` (`package.Service`) whose request is a
    /// message of `request_package`: a table that code elsewhere expands (a dispatch `match`)
    /// without naming the methods again.
    pub fn method_list(mut self, service: &str, request_package: &str) -> Self {
        self.method_lists.push((service.to_string(), request_package.to_string()));
        self
    }

    /// Generates, in each package with such services, a struct `name` holding one handle of
    /// every service whose name ends in `suffix`.
    pub fn bundle(mut self, name: &str, suffix: &str) -> Self {
        self.bundles.push((name.to_string(), suffix.to_string()));
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
        let listed = self.method_lists.iter().find(|(name, _)| *name == full_name);
        if let Some((_, package)) = listed {
            method_list(&service, &module, package, buf);
        }
        guarded(&service, &module, buf);
        timed(&service, &module, buf);
        self.remote(&service, &full_name, buf);
        routes(&service, &full_name, &module, buf);
        let bundle =
            self.bundles.iter().find(|(_, suffix)| service.name.ends_with(suffix.as_str()));
        if let Some((bundle, _)) = bundle {
            self.members.push(Member {
                package: service.package.clone(),
                bundle: bundle.clone(),
                name: service.name.clone(),
                module,
                methods: service
                    .methods
                    .iter()
                    .map(|m| (m.name.clone(), m.input_type.clone(), m.output_type.clone()))
                    .collect(),
            });
        }
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        let (here, elsewhere) = std::mem::take(&mut self.members)
            .into_iter()
            .partition::<Vec<Member>, _>(|m| m.package == package);
        self.members = elsewhere;
        for (bundle, _) in &self.bundles {
            let members: Vec<&Member> = here.iter().filter(|m| &m.bundle == bundle).collect();
            if !members.is_empty() {
                emit_bundle(bundle, &members, buf);
            }
        }
    }
}

fn method_list(service: &Service, module: &str, package: &str, buf: &mut String) {
    let prefix = format!(".{package}.");
    let methods: Vec<String> = service
        .methods
        .iter()
        .filter(|m| m.input_proto_type.starts_with(&prefix))
        .map(|m| format!("({}, {})", m.proto_name, m.name))
        .collect();
    let _ = writeln!(
        buf,
        "/// Calls `$callback! {{ (Method, method), ... }}` over the methods of `{name}` whose
/// request is a message of `{package}`.
#[macro_export]
macro_rules! {module}_methods {{
    ($callback:ident) => {{
        $callback! {{ {list} }}
    }};
}}",
        name = service.name,
        list = methods.join(", ")
    );
}

/// The bundle struct, its layering, serving and reaching, and its implementation of every
/// member's trait by delegation.
fn emit_bundle(bundle: &str, members: &[&Member], buf: &mut String) {
    let each = |line: &dyn Fn(&Member) -> String| -> String {
        members.iter().map(|m| line(m)).collect::<Vec<_>>().join("\n")
    };
    let names: Vec<String> = members.iter().map(|m| format!("\"{}\"", m.module)).collect();
    let _ = write!(
        buf,
        "/// Every service of this package named in `{bundle}`'s fields: one handle each, in
/// process or remote. It implements each service's trait by calling that service's handle.
#[derive(Clone)]
pub struct {bundle} {{
{fields}
}}
impl {bundle} {{
    /// The services, by the names of their fields.
    pub const SERVICES: &'static [&'static str] = &[{names}];

    /// Every service behind the RPC framework's guard.
    pub fn guarded(self, config: &::missive_rpc::GuardConfig) -> Self {{
        Self {{
{guarded}
        }}
    }}

    /// Every service with its calls timed under `metric`, labelled by `labels` of the
    /// service's field name.
    pub fn timed(
        self,
        metric: &'static str,
        labels: impl Fn(&'static str) -> ::std::vec::Vec<(&'static str, &'static str)>,
    ) -> Self {{
        Self {{
{timed}
        }}
    }}

    /// Serves every service over gRPC.
    #[cfg(feature = \"remote\")]
    pub fn routes(&self) -> ::missive_rpc::remote::Routes {{
        ::missive_rpc::remote::Routes::default()
{routes}
    }}

    /// Each service from the client `client` gives for its field name, or from `local` when
    /// it gives none (it must then be given a `local`).
    #[cfg(feature = \"remote\")]
    pub fn reach<E>(
        local: ::core::option::Option<&Self>,
        mut client: impl FnMut(
            &'static str,
        ) -> ::core::result::Result<::core::option::Option<::missive_rpc::remote::Client>, E>,
    ) -> ::core::result::Result<Self, E> {{
        ::core::result::Result::Ok(Self {{
{reach}
        }})
    }}
}}
",
        fields = each(&|m| format!("    pub {}: ::std::sync::Arc<dyn {}>,", m.module, m.name)),
        names = names.join(", "),
        guarded = each(&|m| format!(
            "            {f}: {n}Guarded::new(self.{f}, config),",
            f = m.module,
            n = m.name
        )),
        timed = each(&|m| format!(
            "            {f}: {n}Timed::new(self.{f}, metric, &labels(\"{f}\")),",
            f = m.module,
            n = m.name
        )),
        routes =
            each(&|m| format!("            .merge({f}_routes(self.{f}.clone()))", f = m.module)),
        reach = each(&|m| {
            format!(
            "            {f}: match client(\"{f}\")? {{
                ::core::option::Option::Some(c) => {n}Remote::new(c) as ::std::sync::Arc<dyn {n}>,
                ::core::option::Option::None => local.expect(\"a local {f} where no client is given\").{f}.clone(),
            }},",
            f = m.module,
            n = m.name
        )
        }),
    );
    for member in members {
        let _ =
            writeln!(buf, "#[::async_trait::async_trait]\nimpl {} for {bundle} {{", member.name);
        for (method, input, output) in &member.methods {
            let _ = writeln!(
                buf,
                "    async fn {method}(&self, ctx: &::missive_rpc::Ctx, req: {input}) -> ::core::result::Result<{output}, ::missive_rpc::Status> {{
        self.{f}.{method}(ctx, req).await
    }}",
                f = member.module
            );
        }
        let _ = writeln!(buf, "}}");
    }
}

impl TraitGenerator {
    fn remote(&self, service: &Service, full_name: &str, buf: &mut String) {
        let name = &service.name;
        let _ = write!(
            buf,
            "/// `{name}` served by another process, reached over gRPC.
#[cfg(feature = \"remote\")]
pub struct {name}Remote {{
    client: ::missive_rpc::remote::Client,
}}
#[cfg(feature = \"remote\")]
impl {name}Remote {{
    pub fn new(client: ::missive_rpc::remote::Client) -> ::std::sync::Arc<Self> {{
        ::std::sync::Arc::new(Self {{ client }})
    }}
}}
#[cfg(feature = \"remote\")]
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
#[cfg(feature = \"remote\")]
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
