//! The typed, blocking client of the console's REST API (docs/design.md "REST API",
//! docs/openapi.json).
//!
//! [`Client`] has one method per endpoint, taking and returning the bodies of `vinfra-types`;
//! every path is written once, in [`paths`]. It sends the API token as a bearer token and, over
//! `https://`, trusts only the cluster CA. A refusal with a problem+json body is
//! [`RestError::Problem`] (status and [`Problem`] body); no answer at all is
//! [`RestError::Transport`]. [`Client::raw`] sends any method, path and body, for tests that
//! send malformed requests on purpose.
//!
//! Lists come whole: each list method asks for pages of 1,000 and follows the `Link` header of
//! relation `next` until the last page (docs/design.md "Pages"). Each list has a `*_where`
//! method too (`hosts_where`, `events_where`, …) that takes its filter
//! (`vinfra_types::filter`) and asks for the items it lets through, page after page alike.
//!
//! An operation that answers a task (docs/design.md "Tasks": create, start, stop, reboot,
//! delete, migrate, a migration's cancel, a recommendation applied, a fence) has two methods:
//! `*_task` returns the task as accepted, and the plain one follows the task to its end (long
//! polls of `GET /tasks/{id}?wait_s=30`) and answers what the request answered before tasks
//! existed: the VM, the fence's outcome; a task that failed or was cancelled is the
//! [`RestError::Problem`] its problem stands for, as a refusal. [`Client::migrate_vm`] and
//! [`Client::apply_recommendation`] answer the migration's first progress, as before;
//! [`Client::cancel_migration`] the migration's last progress, however it ended.
//!
//! The `vinfra` command line, the lab, the integration tests and the benchmarks all talk to the
//! console through it.
//!
//! Modules, top to bottom: `tasks` (the methods of the operations that answer a task, and of
//! the tasks themselves); this file ([`Client`] and the other methods); `http` (one exchange:
//! token, status, problem+json, next page); `outcome` (a task's end as an answer or an error,
//! and following a task), `tls` (rustls trusting the CA); `error` ([`RestError`]), `pages`
//! (the `Link` header, pure), [`paths`].
#![deny(unsafe_code)]

mod error;
mod http;
mod outcome;
mod pages;
pub mod paths;
mod tasks;
mod tls;

use serde::de::DeserializeOwned;
use serde::Serialize;
use vinfra_types::api::{
    ClusterSettings, ConsoleLog, Event, JoinTokenResponse, TokenResponse, UpdateNicRequest,
    UpdateVmRequest,
};
use vinfra_types::auth::{CreateTokenRequest, NewToken, TokenSummary};
use vinfra_types::balancing::{DrsStatus, PlacementRule, Recommendation};
use vinfra_types::filter::{
    EventFilter, FloatingIpFilter, HostFilter, NetworkFilter, RecommendationFilter,
    RevokedCertificateFilter, RouterFilter, RuleFilter, SecurityGroupFilter, TokenFilter,
};
use vinfra_types::ha::HaStatus;
use vinfra_types::network::{
    CreateNetworkRequest, HostSwitchCounters, NetworkCounters, NetworkSummary, VmCounters,
};
use vinfra_types::router::{
    AddFloatingIpRequest, AttachNetworkRequest, CreateRouterRequest, FloatingIpSummary,
    RouterAttachment, RouterStaticRoute, RouterSummary, SetUplinkRequest, UplinkSummary,
};
use vinfra_types::security_group::{
    SecurityGroup, SecurityGroupCounters, SecurityGroupSummary, SgRule,
};
use vinfra_types::usage::UsageHistory;
use vinfra_types::{HostSummary, MigrationProgress, VmSummary};

pub use error::RestError;
pub use http::RawBody;
pub use outcome::{task_result, task_succeeded, PREFER_WAIT_MAX, TASK_POLL_MAX};
pub use reqwest::Method;
pub use vinfra_types::Problem;

use http::Transport;

/// Where a console keeps the cluster CA certificate, relative to its data directory: the
/// certificate a client of that console trusts.
pub const CONSOLE_CA_FILE: &str = "pki/ca.pem";

/// A client of one console: its base URL, API token and CA.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
}

impl Client {
    /// A client for `base_url` (e.g. `https://127.0.0.1:7443`) sending `token`; `ca_pem` is the
    /// cluster CA certificate, required for `https://` (`http://` is for a console run with
    /// `--no-tls`).
    pub fn new(base_url: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Self, RestError> {
        Ok(Client {
            transport: Transport::new(base_url, token, ca_pem)?,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.transport.base_url()
    }

    /// Sends `method path` with `body` as it is (no check of any kind); returns the JSON body
    /// of a 2xx answer, `None` when it is empty. For tests that send malformed requests on
    /// purpose: everything else uses the typed methods.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        body: RawBody<'_>,
    ) -> Result<Option<serde_json::Value>, RestError> {
        let text = self.transport.exchange(method.clone(), path, body)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        decode(method, path, &text).map(Some)
    }

    /// `method path` without a body, the answer decoded as `T`.
    fn fetch<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, RestError> {
        let text = self
            .transport
            .exchange(method.clone(), path, RawBody::Empty)?;
        decode(method, path, &text)
    }

    /// `method path` with `body` as JSON, the answer decoded as `T`.
    fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, RestError> {
        self.send_preferring(method, path, body, None)
    }

    /// [`Client::send`] with `Prefer: wait=N` when `wait_s` is given.
    fn send_preferring<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        wait_s: Option<u64>,
    ) -> Result<T, RestError> {
        let value = serde_json::to_value(body).map_err(|source| RestError::Encode {
            method: method.clone(),
            path: path.to_string(),
            source,
        })?;
        let (text, _) = self.transport.exchange_preferring(
            method.clone(),
            path,
            RawBody::Json(&value),
            wait_s,
        )?;
        decode(method, path, &text)
    }

    /// `GET path` of a list, page after page (`?limit=1000`, then each `Link` of relation
    /// `next`): the items of every page, in order.
    fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, RestError> {
        let mut items = Vec::new();
        let mut page = pages::first_page(path);
        let mut asked = std::collections::HashSet::new();
        loop {
            let (text, next) =
                self.transport
                    .exchange_linked(Method::GET, &page, RawBody::Empty)?;
            items.extend(decode::<Vec<T>>(Method::GET, &page, &text)?);
            let Some(link) = next else {
                return Ok(items);
            };
            let refused = |reason| RestError::NextPage {
                path: page.clone(),
                link: link.clone(),
                reason,
            };
            let next = pages::same_console(self.base_url(), &link)
                .ok_or_else(|| refused("outside this console's API"))?;
            if next == page || asked.contains(&next) {
                return Err(refused("already asked for"));
            }
            asked.insert(std::mem::replace(&mut page, next));
        }
    }

    /// `DELETE path`, answered without a body.
    fn delete(&self, path: &str) -> Result<(), RestError> {
        self.transport
            .exchange(Method::DELETE, path, RawBody::Empty)
            .map(drop)
    }

    // Hosts.

    /// `GET /hosts`: every host with its capacity, allocation, usage and status.
    pub fn hosts(&self) -> Result<Vec<HostSummary>, RestError> {
        self.hosts_where(&HostFilter::default())
    }

    /// `GET /hosts?status=…&maintenance=…`: the hosts `filter` lets through.
    pub fn hosts_where(&self, filter: &HostFilter) -> Result<Vec<HostSummary>, RestError> {
        self.list(&paths::filtered(paths::hosts(), filter))
    }

    /// `GET /hosts/{name}`.
    pub fn host(&self, name: &str) -> Result<HostSummary, RestError> {
        self.fetch(Method::GET, &paths::host(name))
    }

    /// `DELETE /hosts/{name}`: forgets a host without VMs.
    pub fn delete_host(&self, name: &str) -> Result<(), RestError> {
        self.delete(&paths::host(name))
    }

    /// `GET /hosts/{name}/switch`: the host's virtual switch counters, read now.
    pub fn host_switch(&self, name: &str) -> Result<HostSwitchCounters, RestError> {
        self.fetch(Method::GET, &paths::host_switch(name))
    }

    // Cluster settings and tokens.

    /// `GET /settings`.
    pub fn settings(&self) -> Result<ClusterSettings, RestError> {
        self.fetch(Method::GET, &paths::settings())
    }

    /// `PUT /settings`: replaces the cluster settings; returns them as stored.
    pub fn put_settings(&self, settings: &ClusterSettings) -> Result<ClusterSettings, RestError> {
        self.send(Method::PUT, &paths::settings(), settings)
    }

    /// `POST /join-tokens`: a one-time token a new host joins with.
    pub fn create_join_token(&self) -> Result<JoinTokenResponse, RestError> {
        self.fetch(Method::POST, &paths::join_tokens())
    }

    /// `POST /token/rotate`: a new secret for this client's token (same name, role and
    /// expiry); the one it sends stops working.
    pub fn rotate_token(&self) -> Result<TokenResponse, RestError> {
        self.fetch(Method::POST, &paths::token_rotate())
    }

    /// `GET /tokens`: every API token, without secrets (admin).
    pub fn tokens(&self) -> Result<Vec<TokenSummary>, RestError> {
        self.tokens_where(&TokenFilter::default())
    }

    /// `GET /tokens?role=…&state=…`: the API tokens `filter` lets through (admin).
    pub fn tokens_where(&self, filter: &TokenFilter) -> Result<Vec<TokenSummary>, RestError> {
        self.list(&paths::filtered(paths::tokens(), filter))
    }

    /// `POST /tokens`: creates an API token; its secret is in the answer, once (admin).
    pub fn create_token(&self, request: &CreateTokenRequest) -> Result<NewToken, RestError> {
        self.send(Method::POST, &paths::tokens(), request)
    }

    /// `DELETE /tokens/{name}`: revokes an API token for good (admin).
    pub fn revoke_token(&self, name: &str) -> Result<(), RestError> {
        self.delete(&paths::token(name))
    }

    // VMs.

    /// `GET /vms`.
    pub fn vms(&self) -> Result<Vec<VmSummary>, RestError> {
        self.list(&paths::vms())
    }

    /// `GET /vms?host=…&state=…&network=…`: the VMs `filter` lets through.
    pub fn vms_where(
        &self,
        filter: &vinfra_types::api::VmFilter,
    ) -> Result<Vec<VmSummary>, RestError> {
        self.list(&paths::vms_where(filter))
    }

    /// `GET /vms/{name}`.
    pub fn vm(&self, name: &str) -> Result<VmSummary, RestError> {
        self.fetch(Method::GET, &paths::vm(name, false))
    }

    /// `PATCH /vms/{name}`: changes the VM's HA policy (only the fields given).
    pub fn update_vm(&self, name: &str, update: &UpdateVmRequest) -> Result<VmSummary, RestError> {
        self.send(Method::PATCH, &paths::vm(name, false), update)
    }

    /// `GET /vms/{name}/console[?bytes=N]`: the tail of the serial console.
    pub fn console_log(&self, name: &str, bytes: Option<u64>) -> Result<ConsoleLog, RestError> {
        self.fetch(Method::GET, &paths::vm_console(name, bytes))
    }

    /// `GET /vms/{name}/console?from=OFFSET`: the serial console from a log offset (the
    /// previous answer's `end`), or its tail without one.
    pub fn console_from(&self, name: &str, from: Option<u64>) -> Result<ConsoleLog, RestError> {
        self.fetch(Method::GET, &paths::vm_console_from(name, None, from))
    }

    /// `POST /vms/{name}/console/input`: types `text` on the serial console.
    pub fn console_input(&self, name: &str, text: &str) -> Result<(), RestError> {
        let body = serde_json::json!({ "text": text });
        self.transport
            .exchange(
                Method::POST,
                &paths::vm_console_input(name),
                RawBody::Json(&body),
            )
            .map(drop)
    }

    // Migration.

    /// `GET /vms/{name}/migration`: progress of the current or last migration.
    pub fn migration(&self, name: &str) -> Result<MigrationProgress, RestError> {
        self.fetch(Method::GET, &paths::vm_migration(name))
    }

    // Events.

    /// `GET /events`: the last 1000 events, oldest first.
    pub fn events(&self) -> Result<Vec<Event>, RestError> {
        self.events_where(&EventFilter::default())
    }

    /// `GET /events?kind=…&vm=…&host=…`: the events `filter` lets through, oldest first.
    pub fn events_where(&self, filter: &EventFilter) -> Result<Vec<Event>, RestError> {
        self.list(&paths::filtered(paths::events(), filter))
    }

    /// `GET /revoked-certificates`: the certificates of removed hosts, until they expire.
    pub fn revoked_certificates(
        &self,
    ) -> Result<Vec<vinfra_types::api::RevokedCertificate>, RestError> {
        self.revoked_certificates_where(&RevokedCertificateFilter::default())
    }

    /// `GET /revoked-certificates?host=…`: the revoked certificates `filter` lets through.
    pub fn revoked_certificates_where(
        &self,
        filter: &RevokedCertificateFilter,
    ) -> Result<Vec<vinfra_types::api::RevokedCertificate>, RestError> {
        self.list(&paths::filtered(paths::revoked_certificates(), filter))
    }

    // Flows.

    /// `GET /flows`: the flows of the last `query.minutes` minutes, grouped, the largest first.
    pub fn flows(
        &self,
        query: &vinfra_types::flows::FlowQuery,
    ) -> Result<vinfra_types::flows::FlowReport, RestError> {
        self.fetch(Method::GET, &paths::flows(query))
    }

    // Placement rules.

    /// `GET /rules`.
    pub fn rules(&self) -> Result<Vec<PlacementRule>, RestError> {
        self.rules_where(&RuleFilter::default())
    }

    /// `GET /rules?vm=…&host=…&kind=…&strength=…`: the rules `filter` lets through.
    pub fn rules_where(&self, filter: &RuleFilter) -> Result<Vec<PlacementRule>, RestError> {
        self.list(&paths::filtered(paths::rules(), filter))
    }

    /// `GET /rules/{name}`.
    pub fn rule(&self, name: &str) -> Result<PlacementRule, RestError> {
        self.fetch(Method::GET, &paths::rule(name))
    }

    /// `POST /rules`: creates a rule (refused when it contradicts the others).
    pub fn create_rule(&self, rule: &PlacementRule) -> Result<PlacementRule, RestError> {
        self.send(Method::POST, &paths::rules(), rule)
    }

    /// `DELETE /rules/{name}`.
    pub fn delete_rule(&self, name: &str) -> Result<(), RestError> {
        self.delete(&paths::rule(name))
    }

    // High availability.

    /// `GET /ha`: HA settings, each host's HA state, the admission reserve.
    pub fn ha(&self) -> Result<HaStatus, RestError> {
        self.fetch(Method::GET, &paths::ha())
    }

    // Balancing.

    /// `GET /drs`: the balancer's settings and last pass.
    pub fn drs(&self) -> Result<DrsStatus, RestError> {
        self.fetch(Method::GET, &paths::drs())
    }

    /// `POST /drs/run`: a balancing pass now; returns the status after it.
    pub fn run_drs(&self) -> Result<DrsStatus, RestError> {
        self.fetch(Method::POST, &paths::drs_run())
    }

    /// `GET /drs/recommendations`: the latest plan's moves (manual mode).
    pub fn recommendations(&self) -> Result<Vec<Recommendation>, RestError> {
        self.recommendations_where(&RecommendationFilter::default())
    }

    /// `GET /drs/recommendations?vm=…&host=…`: the moves `filter` lets through.
    pub fn recommendations_where(
        &self,
        filter: &RecommendationFilter,
    ) -> Result<Vec<Recommendation>, RestError> {
        self.list(&paths::filtered(paths::recommendations(), filter))
    }

    // Networks.

    /// `GET /networks`: every network with its ports.
    pub fn networks(&self) -> Result<Vec<NetworkSummary>, RestError> {
        self.networks_where(&NetworkFilter::default())
    }

    /// `GET /networks?kind=…&host=…&vm=…`: the networks `filter` lets through.
    pub fn networks_where(&self, filter: &NetworkFilter) -> Result<Vec<NetworkSummary>, RestError> {
        self.list(&paths::filtered(paths::networks(), filter))
    }

    /// `GET /networks/{name}`: one network with its ports.
    pub fn network(&self, name: &str) -> Result<NetworkSummary, RestError> {
        self.fetch(Method::GET, &paths::network(name))
    }

    /// `POST /networks`.
    pub fn create_network(
        &self,
        request: &CreateNetworkRequest,
    ) -> Result<NetworkSummary, RestError> {
        self.send(Method::POST, &paths::networks(), request)
    }

    /// `DELETE /networks/{name}` (refused while a VM has a NIC on it).
    pub fn delete_network(&self, name: &str) -> Result<(), RestError> {
        self.delete(&paths::network(name))
    }

    /// `GET /networks/{name}/counters`: the network's traffic per port and per host, read now.
    pub fn network_counters(&self, name: &str) -> Result<NetworkCounters, RestError> {
        self.fetch(Method::GET, &paths::network_counters(name))
    }

    /// `GET /vms/{name}/counters`: the VM's NIC ports on its host's switch, read now.
    pub fn vm_counters(&self, name: &str) -> Result<VmCounters, RestError> {
        self.fetch(Method::GET, &paths::vm_counters(name))
    }

    /// `GET /vms/{name}/usage`: the VM's CPU and memory over the last hour.
    pub fn vm_usage(&self, name: &str) -> Result<UsageHistory, RestError> {
        self.fetch(Method::GET, &paths::vm_usage(name))
    }

    /// `GET /hosts/{name}/usage`: the host's CPU and memory over the last hour.
    pub fn host_usage(&self, name: &str) -> Result<UsageHistory, RestError> {
        self.fetch(Method::GET, &paths::host_usage(name))
    }

    /// `PATCH /vms/{name}/nics/{index}`: a NIC's security groups, port security, allowed
    /// addresses or QoS (only the fields given); returns the VM.
    pub fn update_nic(
        &self,
        name: &str,
        index: usize,
        update: &UpdateNicRequest,
    ) -> Result<VmSummary, RestError> {
        self.send(Method::PATCH, &paths::vm_nic(name, index), update)
    }

    // Security groups.

    /// `GET /security-groups`: every group with its rules and the NICs in it.
    pub fn security_groups(&self) -> Result<Vec<SecurityGroupSummary>, RestError> {
        self.security_groups_where(&SecurityGroupFilter::default())
    }

    /// `GET /security-groups?vm=…&network=…`: the groups `filter` lets through.
    pub fn security_groups_where(
        &self,
        filter: &SecurityGroupFilter,
    ) -> Result<Vec<SecurityGroupSummary>, RestError> {
        self.list(&paths::filtered(paths::security_groups(), filter))
    }

    /// `GET /security-groups/{name}`.
    pub fn security_group(&self, name: &str) -> Result<SecurityGroupSummary, RestError> {
        self.fetch(Method::GET, &paths::security_group(name))
    }

    /// `GET /security-groups/{name}/counters`: the group's rule hits and its NICs'
    /// connections, read now from the switches.
    pub fn security_group_counters(&self, name: &str) -> Result<SecurityGroupCounters, RestError> {
        self.fetch(Method::GET, &paths::security_group_counters(name))
    }

    /// `POST /security-groups`: creates a group with its initial rules (ids assigned).
    pub fn create_security_group(
        &self,
        group: &SecurityGroup,
    ) -> Result<SecurityGroupSummary, RestError> {
        self.send(Method::POST, &paths::security_groups(), group)
    }

    /// `DELETE /security-groups/{name}` (refused while NICs are in it or rules name it).
    pub fn delete_security_group(&self, name: &str) -> Result<(), RestError> {
        self.delete(&paths::security_group(name))
    }

    /// `POST /security-groups/{name}/rules`: adds a rule; returns it with its id.
    pub fn add_security_group_rule(&self, name: &str, rule: &SgRule) -> Result<SgRule, RestError> {
        self.send(Method::POST, &paths::security_group_rules(name), rule)
    }

    /// `DELETE /security-groups/{name}/rules/{id}`.
    pub fn delete_security_group_rule(&self, name: &str, id: u32) -> Result<(), RestError> {
        self.delete(&paths::security_group_rule(name, id))
    }

    // Routers.

    /// `GET /routers`: every router with its interfaces and static routes.
    pub fn routers(&self) -> Result<Vec<RouterSummary>, RestError> {
        self.routers_where(&RouterFilter::default())
    }

    /// `GET /routers?network=…&edge=…`: the routers `filter` lets through.
    pub fn routers_where(&self, filter: &RouterFilter) -> Result<Vec<RouterSummary>, RestError> {
        self.list(&paths::filtered(paths::routers(), filter))
    }

    /// `GET /routers/{name}`.
    pub fn router(&self, name: &str) -> Result<RouterSummary, RestError> {
        self.fetch(Method::GET, &paths::router(name))
    }

    /// `POST /routers`: creates a router without interfaces or routes.
    pub fn create_router(&self, request: &CreateRouterRequest) -> Result<RouterSummary, RestError> {
        self.send(Method::POST, &paths::routers(), request)
    }

    /// `DELETE /routers/{name}` (refused while networks are attached).
    pub fn delete_router(&self, name: &str) -> Result<(), RestError> {
        self.delete(&paths::router(name))
    }

    /// `POST /routers/{name}/interfaces`: attaches a network; returns the router's interface
    /// on it (the network's gateway address and MAC).
    pub fn attach_network(
        &self,
        name: &str,
        request: &AttachNetworkRequest,
    ) -> Result<RouterAttachment, RestError> {
        self.send(Method::POST, &paths::router_interfaces(name), request)
    }

    /// `DELETE /routers/{name}/interfaces/{network}`: detaches a network.
    pub fn detach_network(&self, name: &str, network: &str) -> Result<(), RestError> {
        self.delete(&paths::router_interface(name, network))
    }

    /// `POST /routers/{name}/routes`: adds a static route; returns it as stored.
    pub fn add_route(
        &self,
        name: &str,
        route: &RouterStaticRoute,
    ) -> Result<RouterStaticRoute, RestError> {
        self.send(Method::POST, &paths::router_routes(name), route)
    }

    /// `DELETE /routers/{name}/routes/{addr}/{len}`: deletes the static route to `addr/len`.
    pub fn delete_route(
        &self,
        name: &str,
        addr: std::net::Ipv4Addr,
        len: u8,
    ) -> Result<(), RestError> {
        self.delete(&paths::router_route(name, addr, len))
    }

    /// `PUT /routers/{name}/uplink`: gives the router its uplink; returns it with its edge and
    /// standby.
    pub fn set_uplink(
        &self,
        name: &str,
        request: &SetUplinkRequest,
    ) -> Result<UplinkSummary, RestError> {
        self.send(Method::PUT, &paths::router_uplink(name), request)
    }

    /// `DELETE /routers/{name}/uplink`: removes the router's uplink.
    pub fn remove_uplink(&self, name: &str) -> Result<(), RestError> {
        self.delete(&paths::router_uplink(name))
    }

    /// `GET /floating-ips`: every floating IP.
    pub fn floating_ips(&self) -> Result<Vec<FloatingIpSummary>, RestError> {
        self.floating_ips_where(&FloatingIpFilter::default())
    }

    /// `GET /floating-ips?vm=…&router=…&network=…`: the floating IPs `filter` lets through.
    pub fn floating_ips_where(
        &self,
        filter: &FloatingIpFilter,
    ) -> Result<Vec<FloatingIpSummary>, RestError> {
        self.list(&paths::filtered(paths::floating_ips(), filter))
    }

    /// `POST /vms/{name}/floating-ips`: gives one of the VM's NICs a floating IP.
    pub fn add_floating_ip(
        &self,
        vm: &str,
        request: &AddFloatingIpRequest,
    ) -> Result<FloatingIpSummary, RestError> {
        self.send(Method::POST, &paths::vm_floating_ips(vm), request)
    }

    /// `DELETE /vms/{name}/floating-ips/{ip}`: deletes the VM's floating IP.
    pub fn delete_floating_ip(&self, vm: &str, ip: std::net::Ipv4Addr) -> Result<(), RestError> {
        self.delete(&paths::vm_floating_ip(vm, ip))
    }

    // The API's description.

    /// `GET /api/openapi.json`: the OpenAPI document.
    pub fn openapi(&self) -> Result<serde_json::Value, RestError> {
        self.fetch(Method::GET, paths::OPENAPI)
    }
}

/// Decodes the body of the answer to `method path`.
fn decode<T: DeserializeOwned>(method: Method, path: &str, text: &str) -> Result<T, RestError> {
    serde_json::from_str(text).map_err(|source| RestError::Decode {
        method,
        path: path.to_string(),
        source,
    })
}
