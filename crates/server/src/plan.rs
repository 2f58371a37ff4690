//! What a process runs, decided from its settings before anything is opened or bound: which
//! tiers run here, how each reaches the tiers it lacks, and where it serves RPC. Every rule
//! that makes a combination of roles and flags unusable is checked here, at once, so a wrong
//! combination is one clear error before a listener is bound or a database opened; `run` then
//! follows the plan one role at a time. (A flag's own value, such as a malformed url, is
//! still checked where it is used.)

use crate::settings::{Role, Settings};
use anyhow::bail;
use missive_proto::internal::Storage;
use std::net::SocketAddr;

/// Where RPC is served when a process runs only some roles and `--rpc` is not given.
pub const RPC_DEFAULT: &str = "127.0.0.1:7400";

/// How a process reaches a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// In this process: a direct call through the guard.
    Here,
    /// On these nodes, over RPC.
    Nodes(Vec<String>),
}

/// How the logic tier's notifies reach the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyVia {
    /// This process's own access role: a direct call.
    Here,
    /// The routing engine, to whichever access node holds each device.
    Redis,
}

#[derive(Debug, PartialEq, Eq)]
pub struct LogicPlan {
    /// Each data-access service, by its field of [`Storage`], in the order of
    /// `Storage::SERVICES`.
    pub stores: Vec<(&'static str, Reach)>,
    /// The version allocator: this node's own, or the nodes of `--seq-rpc`.
    pub seq: Reach,
    pub notify: NotifyVia,
    /// Whether SyncKeys signed here open on other logic nodes too: the secret is in the
    /// store role's data directory, or in a file named for every node.
    pub secret_shared: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct AccessPlan {
    /// The logic tier, which serves the clients' commands.
    pub logic: Reach,
    /// Whether this node keeps its routes in the routing engine, through which other
    /// nodes' notifies reach it.
    pub routes: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// This process opens the storage backend and serves the data-access services.
    pub store: bool,
    pub logic: Option<LogicPlan>,
    pub access: Option<AccessPlan>,
    /// The admin API: where the logic runs, or forwarded to a logic node; none without either.
    pub admin: Option<Reach>,
    /// Where this process serves its services to other processes, if it serves any.
    pub rpc: Option<SocketAddr>,
}

impl Plan {
    pub fn of(settings: &Settings) -> anyhow::Result<Plan> {
        let store = settings.runs(Role::Store);
        let routing = settings.routing_engine()?.is_some();
        let logic = match settings.runs(Role::Logic) {
            true => Some(logic_plan(settings, routing)?),
            false => None,
        };
        let access = match settings.runs(Role::Access) {
            true => Some(access_plan(settings, routing)?),
            false => None,
        };
        let admin = match (&logic, settings.logic_rpc.is_empty()) {
            (Some(_), _) => Some(Reach::Here),
            (None, false) => Some(Reach::Nodes(settings.logic_rpc.clone())),
            (None, true) => None,
        };
        // The store and logic roles serve their services to the tiers in other processes;
        // a process running every role needs no RPC unless asked for it (a split allocator).
        let serves = store || logic.is_some();
        let every_role = [Role::Access, Role::Logic, Role::Store].iter().all(|r| settings.runs(*r));
        let rpc = match settings.rpc {
            Some(address) if serves => Some(address),
            None if serves && !every_role => Some(RPC_DEFAULT.parse().expect("a valid address")),
            _ => None,
        };
        let plan = Plan { store, logic, access, admin, rpc };
        if plan.crosses_processes() && settings.cluster_secret_file.is_none() {
            bail!(
                "a process that serves or calls RPC needs --cluster-secret-file: the nodes of a \
                 deployment sign their calls with it, and serve no one else"
            );
        }
        Ok(plan)
    }
}

impl Plan {
    /// Whether this process serves RPC or calls another over it.
    pub fn crosses_processes(&self) -> bool {
        let remote = |reach: &Reach| matches!(reach, Reach::Nodes(_));
        self.rpc.is_some()
            || self.admin.as_ref().is_some_and(remote)
            || self.access.as_ref().is_some_and(|a| remote(&a.logic))
            || self
                .logic
                .as_ref()
                .is_some_and(|l| remote(&l.seq) || l.stores.iter().any(|(_, reach)| remote(reach)))
    }
}

/// `routing`: whether a routing engine is named (`--redis-url` or `--redis-sentinels`).
fn logic_plan(settings: &Settings, routing: bool) -> anyhow::Result<LogicPlan> {
    let store_here = settings.runs(Role::Store);
    let mut stores = Vec::with_capacity(Storage::SERVICES.len());
    for service in Storage::SERVICES {
        let own = settings.store_rpc_of(service);
        let reach = if !own.is_empty() {
            Reach::Nodes(own.to_vec())
        } else if store_here {
            Reach::Here
        } else if !settings.store_rpc.is_empty() {
            Reach::Nodes(settings.store_rpc.clone())
        } else {
            bail!("the logic role without the store role needs --store-rpc");
        };
        stores.push((*service, reach));
    }
    let notify = match (routing, settings.runs(Role::Access)) {
        (true, _) => NotifyVia::Redis,
        (false, true) => NotifyVia::Here,
        (false, false) => bail!(
            "the logic role without the access role needs --redis-url (or --redis-sentinels): \
             it carries notifies to the access nodes"
        ),
    };
    let seq = match settings.seq_rpc.is_empty() {
        true => Reach::Here,
        false => Reach::Nodes(settings.seq_rpc.clone()),
    };
    let secret_shared = store_here || settings.secret_file.is_some();
    Ok(LogicPlan { stores, seq, notify, secret_shared })
}

fn access_plan(settings: &Settings, routing: bool) -> anyhow::Result<AccessPlan> {
    let logic = match (settings.runs(Role::Logic), settings.logic_rpc.is_empty()) {
        (true, _) => Reach::Here,
        (false, false) => Reach::Nodes(settings.logic_rpc.clone()),
        (false, true) => bail!("the access role without the logic role needs --logic-rpc"),
    };
    if logic != Reach::Here && !routing {
        bail!(
            "the access role without the logic role needs --redis-url (or --redis-sentinels): \
             notifies reach this node through it"
        );
    }
    Ok(AccessPlan { logic, routes: routing })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of `args`, the deployment's secret named (see the test of its absence).
    fn plan(args: &str) -> Result<Plan, String> {
        plan_of(&format!("{args} --cluster-secret-file cluster.secret"))
    }

    fn plan_of(args: &str) -> Result<Plan, String> {
        Plan::of(&crate::settings::parse(args.split_whitespace())).map_err(|e| e.to_string())
    }

    fn every_store(reach: Reach) -> Vec<(&'static str, Reach)> {
        Storage::SERVICES.iter().map(|s| (*s, reach.clone())).collect()
    }

    fn nodes(urls: &[&str]) -> Reach {
        Reach::Nodes(urls.iter().map(|u| u.to_string()).collect())
    }

    const STORE: &str = "http://store:7401";
    const LOGIC: &str = "http://logic:7402";
    const REDIS: &str = "redis://redis:6379";

    #[test]
    fn all_in_one_runs_every_tier_here_and_serves_no_rpc() {
        let here = LogicPlan {
            stores: every_store(Reach::Here),
            seq: Reach::Here,
            notify: NotifyVia::Here,
            secret_shared: true,
        };
        let expected = Plan {
            store: true,
            logic: Some(here),
            access: Some(AccessPlan { logic: Reach::Here, routes: false }),
            admin: Some(Reach::Here),
            rpc: None,
        };
        assert_eq!(plan(""), Ok(expected));
        let asked = plan("--rpc 127.0.0.1:9000").unwrap();
        assert_eq!(asked.rpc, Some("127.0.0.1:9000".parse().unwrap()), "unless asked for");
    }

    #[test]
    fn a_split_deployment_reaches_each_tier_over_rpc() {
        let store = plan("--role store").unwrap();
        assert_eq!((store.store, &store.logic, &store.access), (true, &None, &None));
        assert_eq!((store.admin, store.rpc), (None, Some(RPC_DEFAULT.parse().unwrap())));

        let logic = plan(&format!("--role logic --store-rpc {STORE} --redis-url {REDIS}")).unwrap();
        let expected = LogicPlan {
            stores: every_store(nodes(&[STORE])),
            seq: Reach::Here,
            notify: NotifyVia::Redis,
            secret_shared: false,
        };
        assert_eq!(logic.logic, Some(expected));
        assert_eq!((logic.store, &logic.access, logic.admin), (false, &None, Some(Reach::Here)));

        let access =
            plan(&format!("--role access --logic-rpc {LOGIC} --redis-url {REDIS}")).unwrap();
        let expected = AccessPlan { logic: nodes(&[LOGIC]), routes: true };
        assert_eq!(access.access, Some(expected));
        assert_eq!((access.admin, access.rpc), (Some(nodes(&[LOGIC])), None));
    }

    #[test]
    fn a_service_named_by_its_own_flag_is_reached_there() {
        let args = format!(
            "--role logic,access --store-rpc {STORE} --media-store-rpc http://files:1,http://files:2 \
             --seq-rpc http://seq:1 --secret-file shared.secret"
        );
        let logic = plan(&args).unwrap().logic.unwrap();
        for (service, reach) in &logic.stores {
            let expected = match *service {
                "media_store" => nodes(&["http://files:1", "http://files:2"]),
                _ => nodes(&[STORE]),
            };
            assert_eq!(reach, &expected, "{service}");
        }
        assert_eq!(
            (logic.seq, logic.notify, logic.secret_shared),
            (nodes(&["http://seq:1"]), NotifyVia::Here, true)
        );
        let with_store = plan("--role logic,store,access --message-store-rpc http://m:1").unwrap();
        let stores = with_store.logic.unwrap().stores;
        assert!(
            stores.iter().all(|(s, r)| (*s == "message_store") == (*r != Reach::Here)),
            "{stores:?}"
        );
    }

    #[test]
    fn a_tier_that_cannot_reach_another_is_refused_before_anything_starts() {
        let refused = [
            ("--role logic --redis-url r", "needs --store-rpc"),
            ("--role logic,store", "the logic role without the access role needs --redis-url"),
            ("--role access", "needs --logic-rpc"),
            ("--role access,store", "needs --logic-rpc"),
            (
                &format!("--role access --logic-rpc {LOGIC}"),
                "the access role without the logic role needs --redis-url",
            ),
        ];
        for (args, error) in refused {
            let got = plan(args).unwrap_err();
            assert!(got.contains(error), "{args}: {got}");
        }
        // A store-only process needs nothing of the others.
        assert!(plan("--role store").is_ok());
        assert!(plan(&format!("--role logic,store --redis-url {REDIS}")).is_ok());
    }

    #[test]
    fn the_routing_engine_is_a_url_or_the_master_of_sentinels_never_both() {
        let sentinels = "--redis-sentinels s1:26379,s2:26379 --redis-master-name routing";
        let access = format!("--role access --logic-rpc {LOGIC}");
        let planned = plan(&format!("{access} {sentinels}")).unwrap();
        assert_eq!(planned.access, Some(AccessPlan { logic: nodes(&[LOGIC]), routes: true }));
        let logic = plan(&format!("--role logic,store {sentinels}")).unwrap();
        assert_eq!(logic.logic.unwrap().notify, NotifyVia::Redis);
        let engine = crate::settings::parse(format!("{access} {sentinels}").split_whitespace())
            .routing_engine()
            .unwrap();
        let sentinels_named = vec!["s1:26379".to_string(), "s2:26379".to_string()];
        let expected = missive_route::Engine::Sentinel {
            sentinels: sentinels_named,
            master: "routing".into(),
        };
        assert_eq!(engine, Some(expected));

        let refused = [
            (format!("{access} --redis-url {REDIS} {sentinels}"), "not both"),
            (format!("{access} --redis-url {REDIS} --redis-master-name m"), "not both"),
            (format!("{access} --redis-sentinels s1:26379"), "needs --redis-master-name"),
            (format!("{access} --redis-master-name m"), "needs --redis-sentinels"),
        ];
        for (args, error) in refused {
            let got = plan(&args).unwrap_err();
            assert!(got.contains(error), "{args}: {got}");
        }
    }

    #[test]
    fn only_a_process_that_talks_to_no_other_may_run_without_the_deployments_secret() {
        assert!(plan_of("").is_ok(), "all-in-one serves no RPC");
        let split = [
            "--role store".to_string(),
            format!("--role access --logic-rpc {LOGIC} --redis-url {REDIS}"),
            format!("--role logic,access --store-rpc {STORE}"),
            "--rpc 127.0.0.1:9000".to_string(),
            "--seq-rpc http://seq:1".to_string(),
        ];
        for args in split {
            let refused = plan_of(&args).unwrap_err();
            assert!(refused.contains("--cluster-secret-file"), "{args}: {refused}");
            assert!(plan(&args).is_ok(), "{args} with the secret");
        }
    }
}
