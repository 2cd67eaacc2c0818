//! The queries of the list endpoints: a page ([`PageQuery`]: `limit`, `page_token`) and the
//! list's filter (`vinfra_types::filter`: `?status=`, `?vm=`, …; all that are given).
//!
//! Each query lists its parameters itself (serde cannot flatten a query string's numbers, nor
//! refuse unknown parameters through a flattened part), so an unknown parameter, a value that
//! is not of its type (a state that is not one) or a name that is not one is a 400 problem
//! before the console is asked. [`split`] hands the handler the page, the filter, and the
//! endpoint's path with the filter's parameters, from which the next page's `Link` is written:
//! a filtered list's pages keep its filter.

use serde::Deserialize;
use utoipa::IntoParams;
use vinfra_types::api::VmFilter;
use vinfra_types::auth::{Role, TokenState};
use vinfra_types::balancing::{RuleKind, RuleStrength};
use vinfra_types::filter::{
    EventFilter, FloatingIpFilter, HostFilter, ListFilter, NetworkFilter, RecommendationFilter,
    RevokedCertificateFilter, RouterFilter, RuleFilter, SecurityGroupFilter, TokenFilter,
};
use vinfra_types::network::NetworkKind;
use vinfra_types::{HostStatus, PowerState};

use super::pages::PageQuery;
use super::problem::ApiError;

/// The query of one list endpoint.
pub trait ListQuery {
    /// What the list can be narrowed to.
    type Filter: ListFilter;
    /// The endpoint's path.
    const PATH: &'static str;
    /// The page and the filter asked for.
    fn parts(self) -> (PageQuery, Self::Filter);
}

/// The page, the filter, and the path with the filter for the next page's link; or why the
/// query is refused (400: a value that must be a name and is not).
pub fn split<Q: ListQuery>(query: Q) -> Result<(PageQuery, Q::Filter, String), ApiError> {
    let (page, filter) = query.parts();
    filter.check()?;
    // The values are names, the API's words and numbers: nothing to escape.
    let mut path = String::from(Q::PATH);
    for (i, (param, value)) in filter.pairs().into_iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(param);
        path.push('=');
        path.push_str(&value);
    }
    Ok((page, filter, path))
}

/// A list query's struct: `limit` and `page_token`, then the filter's parameters, each an
/// `Option` documented for the OpenAPI document; and its [`ListQuery`] implementation.
macro_rules! list_query {
    (
        $(#[$doc:meta])*
        $name:ident, $path:literal, $filter:ident {
            $( $(#[$fdoc:meta])* $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Default, Deserialize, IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// At most this many items (1 to 1000); without it and without `page_token`, every item.
            #[param(minimum = 1, maximum = 1000)]
            pub limit: Option<u32>,
            /// Where to go on: the token of the previous answer's `Link: <…>; rel="next"` header.
            pub page_token: Option<String>,
            $( $(#[$fdoc])* pub $field: Option<$ty>, )*
        }

        impl ListQuery for $name {
            type Filter = $filter;
            const PATH: &'static str = $path;

            fn parts(self) -> (PageQuery, $filter) {
                let page = PageQuery {
                    limit: self.limit,
                    page_token: self.page_token,
                };
                (page, $filter { $( $field: self.$field, )* })
            }
        }
    };
}

list_query! {
    /// `GET /api/v1/vms`: a page of the VMs a filter lets through.
    VmListQuery, "/api/v1/vms", VmFilter {
        /// Only the VMs placed on this host.
        host: String,
        /// Only the VMs in this state, as their hosts last reported it (`running`, `stopped`, …).
        state: PowerState,
        /// Only the VMs with a NIC on this network.
        network: String,
    }
}

list_query! {
    /// `GET /api/v1/hosts`: a page of the hosts a filter lets through.
    HostListQuery, "/api/v1/hosts", HostFilter {
        /// Only the hosts whose agent is in this state, the `status` the list shows
        /// (`connected`, `disconnected`).
        status: HostStatus,
        /// Only the hosts in maintenance (`true`) or out of it (`false`).
        maintenance: bool,
    }
}

list_query! {
    /// `GET /api/v1/tokens`: a page of the API tokens a filter lets through.
    TokenListQuery, "/api/v1/tokens", TokenFilter {
        /// Only the tokens of this role.
        role: Role,
        /// Only the tokens in this state (`active`, `expired`, `revoked`).
        state: TokenState,
    }
}

list_query! {
    /// `GET /api/v1/events`: a page of the events a filter lets through.
    EventListQuery, "/api/v1/events", EventFilter {
        /// Only the events of this kind (`vm`, `host`, `migration`, `drs`, `network`, `router`,
        /// `security-group`, `rule`, `token`, `cluster`, `certificate`).
        kind: String,
        /// Only the events about this VM: of kind `vm`, `migration` or `drs`, the VM their
        /// object.
        vm: String,
        /// Only the events about this host: of kind `host`, the host their object.
        host: String,
    }
}

list_query! {
    /// `GET /api/v1/revoked-certificates`: a page of the revoked certificates a filter lets
    /// through.
    RevokedCertificateListQuery, "/api/v1/revoked-certificates", RevokedCertificateFilter {
        /// Only the certificates issued to this host.
        host: String,
    }
}

list_query! {
    /// `GET /api/v1/rules`: a page of the placement rules a filter lets through.
    RuleListQuery, "/api/v1/rules", RuleFilter {
        /// Only the rules naming this VM.
        vm: String,
        /// Only the rules naming this host (`run_on`, `not_on`).
        host: String,
        /// Only the rules of this kind.
        kind: RuleKind,
        /// Only the rules of this strength.
        strength: RuleStrength,
    }
}

list_query! {
    /// `GET /api/v1/drs/recommendations`: a page of the recommendations a filter lets through.
    RecommendationListQuery, "/api/v1/drs/recommendations", RecommendationFilter {
        /// Only the moves of this VM (the VM moved, or one moving with it).
        vm: String,
        /// Only the moves from or to this host.
        host: String,
    }
}

list_query! {
    /// `GET /api/v1/networks`: a page of the networks a filter lets through.
    NetworkListQuery, "/api/v1/networks", NetworkFilter {
        /// Only the networks of this kind.
        kind: NetworkKind,
        /// Only the networks with a port on this host (a NIC of a VM placed there).
        host: String,
        /// Only the networks with a port of this VM (one of its NICs).
        vm: String,
    }
}

list_query! {
    /// `GET /api/v1/security-groups`: a page of the security groups a filter lets through.
    SecurityGroupListQuery, "/api/v1/security-groups", SecurityGroupFilter {
        /// Only the groups one of this VM's NICs is in.
        vm: String,
        /// Only the groups a NIC on this network is in.
        network: String,
    }
}

list_query! {
    /// `GET /api/v1/routers`: a page of the routers a filter lets through.
    RouterListQuery, "/api/v1/routers", RouterFilter {
        /// Only the routers with an interface on this network, or their uplink on it.
        network: String,
        /// Only the routers whose uplink's edge (the host that translates their north-south
        /// traffic) is this host.
        edge: String,
    }
}

list_query! {
    /// `GET /api/v1/floating-ips`: a page of the floating IPs a filter lets through.
    FloatingIpListQuery, "/api/v1/floating-ips", FloatingIpFilter {
        /// Only this VM's.
        vm: String,
        /// Only those on this router's uplink.
        router: String,
        /// Only those of a NIC on this network (the internal one, attached to the router).
        network: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query `q` parsed as the API parses it, and split.
    fn parsed<Q: ListQuery + serde::de::DeserializeOwned>(
        q: &str,
    ) -> Result<(PageQuery, Q::Filter, String), String> {
        let uri: axum::http::Uri = format!("/x?{q}").parse().map_err(|e| format!("{e}"))?;
        let axum::extract::Query(query) = axum::extract::Query::<Q>::try_from_uri(&uri)
            .map_err(|e| vinfra_types::error::chain(&ApiError::Query(e)))?;
        split(query).map_err(|e| vinfra_types::error::chain(&e))
    }

    #[test]
    fn filters_round_trip_through_their_links() {
        // Every filter given: the link's path parses back into the same filter.
        let (_, f, path) =
            parsed::<RuleListQuery>("strength=should&kind=anti_affinity&host=h1&vm=web&limit=5")
                .unwrap();
        assert_eq!(
            path,
            "/api/v1/rules?vm=web&host=h1&kind=anti_affinity&strength=should"
        );
        let back = parsed::<RuleListQuery>(path.split_once('?').unwrap().1).unwrap();
        assert_eq!(back.1, f);
        let (_, f, path) = parsed::<HostListQuery>("maintenance=false&status=connected").unwrap();
        assert_eq!(path, "/api/v1/hosts?status=connected&maintenance=false");
        assert_eq!(f.maintenance, Some(false));
        let (page, f, path) = parsed::<VmListQuery>("network=blue&host=a&limit=2").unwrap();
        assert_eq!(path, "/api/v1/vms?host=a&network=blue");
        assert_eq!((page.limit, f.state), (Some(2), None));
        // Nothing given: the bare path.
        let (_, f, path) = parsed::<RouterListQuery>("limit=3").unwrap();
        assert!(f.is_empty());
        assert_eq!(path, "/api/v1/routers");
    }

    #[test]
    fn bad_values_and_unknown_parameters_are_refused() {
        for (q, says) in [
            ("vm=Web_1", "filter 'vm': name 'Web_1' has a character"),
            ("network=", "filter 'network': name is empty"),
            ("router=r1&cidr=10", "unknown field `cidr`"),
        ] {
            let e = parsed::<FloatingIpListQuery>(q).unwrap_err();
            assert!(e.contains(says), "{q}: {e}");
        }
        let e = parsed::<HostListQuery>("status=asleep").unwrap_err();
        assert!(e.contains("unknown variant `asleep`"), "{e}");
        let e = parsed::<HostListQuery>("maintenance=on").unwrap_err();
        assert!(e.contains("maintenance"), "{e}");
        let e = parsed::<EventListQuery>("kind=VM").unwrap_err();
        assert!(e.contains("filter 'kind'"), "{e}");
        let e = parsed::<NetworkListQuery>("kind=vxlan").unwrap_err();
        assert!(e.contains("unknown variant `vxlan`"), "{e}");
    }
}
