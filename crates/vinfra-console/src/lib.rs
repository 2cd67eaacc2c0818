//! Console library: REST API, desired-state store, controllers, placement, agent connections.
