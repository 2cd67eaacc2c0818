//! Each failure's problem kind (and so its HTTP status) and its problem+json body.

use vinfra_placement::RuleError;

use crate::agents::RequestError;

use super::{fit_kind, Error, ErrorKind, Object, RouterRefusal};

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(kind: Object, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// This failure as the problem+json body the API answers it with.
    pub fn problem(&self) -> vinfra_types::Problem {
        let kind = self.kind();
        vinfra_types::Problem {
            kind: format!("/problems/{}", kind.as_str()),
            title: kind.title().to_string(),
            status: kind.status(),
            detail: vinfra_types::error::chain(self),
        }
    }

    /// The problem kind (and so the HTTP status) of this failure.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::BadName { .. }
            | Error::Spec(_)
            | Error::NetworkDefinition(_)
            | Error::Settings { .. }
            | Error::FlowQuery { .. }
            | Error::OutOfRange { .. }
            | Error::RuleNeedsVmsAndHosts { .. }
            | Error::RuleNamesHosts { .. }
            | Error::RuleNeedsTwoVms { .. }
            | Error::NicAddress { .. }
            | Error::NicOutsideSubnet { .. }
            | Error::NicSubnetAddress { .. }
            | Error::NicGateway { .. }
            | Error::NicMac { .. }
            | Error::FixedNicInMany { .. }
            | Error::Ha(_)
            | Error::SecurityGroup(_) => K::InvalidRequest,
            Error::NotFound { .. }
            | Error::NoSuchNic { .. }
            | Error::NoSuchSgRule { .. }
            | Error::UnknownRemoteGroup { .. }
            | Error::UnknownNicGroup { .. } => K::NotFound,
            Error::NameTaken { .. }
            | Error::NameReserved { .. }
            | Error::LastAdminToken { .. }
            | Error::Concurrent { .. }
            | Error::VmBusy { .. }
            | Error::Migrating { .. }
            | Error::NotMigrating { .. }
            | Error::MigrationCancelled { .. }
            | Error::EvacuationCancelled { .. }
            | Error::EvacuationUnfinished { .. }
            | Error::TaskEnded { .. }
            | Error::TaskNotCancellable { .. }
            | Error::WrongState { .. }
            | Error::LiveElsewhere { .. }
            | Error::AlreadyOn { .. }
            | Error::SourceDisconnected { .. }
            | Error::DisksUnreachable { .. }
            | Error::DeleteRunning { .. }
            | Error::HostInUse { .. }
            | Error::MovedMeanwhile { .. }
            | Error::BalancingOff
            | Error::SegmentTaken { .. }
            | Error::NoFreeSegment { .. }
            | Error::NoFreeSwitchId
            | Error::NetworkRaced { .. }
            | Error::NetworkInUse { .. }
            | Error::SecurityGroupInUse { .. }
            | Error::NicAddressTwice { .. }
            | Error::NicAddressTaken { .. }
            | Error::NetworkFull { .. }
            | Error::NicMacTwice { .. }
            | Error::NicMacTaken { .. }
            | Error::NoFreeMac
            | Error::Model(_)
            | Error::NoFenceCommand { .. }
            | Error::FenceConnected { .. }
            | Error::FenceInProgress { .. } => K::Conflict,
            Error::StartAfterUnknown { .. }
            | Error::StartAfterSelf { .. }
            | Error::StartAfterCycle { .. } => K::InvalidStartAfter,
            Error::FenceFailed { .. } | Error::FenceNotRun { .. } => K::FenceFailed,
            Error::Fit(e) => fit_kind(e),
            Error::OneOfMany { source, .. } => source.kind(),
            Error::VmsNotCreated { failed, .. } => {
                failed.first().map_or(K::Internal, |(_, e)| e.kind())
            }
            Error::HaReserve(_) => K::HaReserve,
            Error::Rules(e) => match e {
                RuleError::EmptyRule { .. } | RuleError::UnknownHost { .. } => K::InvalidRule,
                RuleError::DuplicateRule { .. } => K::Conflict,
                _ => K::RuleConflict,
            },
            Error::RuleUnknownHost { .. } => K::InvalidRule,
            Error::Router(r) => match r {
                RouterRefusal::Definition(_) | RouterRefusal::OutsideSubnet { .. } => {
                    K::InvalidRequest
                }
                RouterRefusal::NoInterface { .. }
                | RouterRefusal::NoRoute { .. }
                | RouterRefusal::NoUplink { .. }
                | RouterRefusal::NoFloatingIp { .. } => K::NotFound,
                RouterRefusal::InUse { .. }
                | RouterRefusal::NetworkAttached { .. }
                | RouterRefusal::SubnetOverlap { .. }
                | RouterRefusal::GatewayMismatch { .. }
                | RouterRefusal::GatewayTaken { .. }
                | RouterRefusal::RouteExists { .. }
                | RouterRefusal::ViaUnreachable { .. }
                | RouterRefusal::ViaGateway { .. }
                | RouterRefusal::RoutesVia { .. }
                | RouterRefusal::NoFreeId
                | RouterRefusal::UplinkExists { .. }
                | RouterRefusal::UplinkNotVlan { .. }
                | RouterRefusal::NetworkIsUplink { .. }
                | RouterRefusal::AddressTaken { .. }
                | RouterRefusal::NicAddressReserved { .. }
                | RouterRefusal::UplinkFloatingIps { .. }
                | RouterRefusal::FloatingIpsOn { .. }
                | RouterRefusal::NicNoAddress { .. }
                | RouterRefusal::NicNoUplink { .. }
                | RouterRefusal::NicHasFloatingIp { .. } => K::Conflict,
            },
            Error::Agent(a) => match a {
                RequestError::NotConnected { .. } => K::HostDisconnected,
                RequestError::Timeout { .. } => K::AgentTimeout,
                RequestError::ConnectionLost { .. } => K::AgentConnectionLost,
                RequestError::Agent { .. } => K::AgentError,
            },
            Error::MigrationFailed { .. } => K::AgentError,
            Error::TaskInterrupted { .. } => K::Internal,
            Error::Store(_) | Error::Pki(_) | Error::CorruptNetwork { .. } | Error::Restart(_) => {
                K::Internal
            }
        }
    }
}
